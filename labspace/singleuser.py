"""``python -m labspace.singleuser``: JupyterHub's ``jupyterhub-singleuser``,
run from Labspace's package, whose import (first, as the parent package)
leaves out jsonschema's IRI grammar (see ``labspace/__init__.py``): about 2
CPU-seconds less at every workspace start. The local backend runs it."""

from jupyterhub.singleuser import main

if __name__ == "__main__":
    main()
