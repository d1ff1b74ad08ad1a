"""``python -m labspace.services.catalog``: the catalog service (see app.py)."""

from labspace.services.kit.run import run_service

run_service("catalog", "labspace.services.catalog.app:start", 8011)
