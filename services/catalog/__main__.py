"""``python -m labspace.services.catalog``: the catalog service (see app.py)."""

from .app import main

main()
