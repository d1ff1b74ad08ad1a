"""``python -m labspace.services.data``: the data service (see app.py)."""

from labspace.services.kit.run import run_service

run_service("data", "labspace.services.data.app:start", 8012)
