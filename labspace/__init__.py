"""Labspace: a JupyterHub distribution for research workspaces."""

import sys
from importlib.metadata import PackageNotFoundError, version

# jsonschema (imported by JupyterHub and jupyter-server through jupyter_events,
# and by Labspace's settings) builds a grammar for its "iri" format check at
# import when rfc3987_syntax is installed: about 2 CPU-seconds in every hub,
# service and workspace start. No schema Labspace or Jupyter validates uses that
# format; without the module jsonschema leaves that one format unchecked.
sys.modules.setdefault("rfc3987_syntax", None)

try:
    __version__ = version("labspace")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
