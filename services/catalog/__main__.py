"""``python -m labspace.services.catalog``: the catalog service (see app.py)."""

from labspace.state import private_umask

from .app import main

private_umask()  # what it writes is the owner's only
main()
