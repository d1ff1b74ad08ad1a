"""Labspace hub services (``labspace.services``): accounting, catalog and data.

Each service package has ``config.py`` with ``problems(values)`` and
``hub_parts(settings, state)`` (see ``labspace.hubconfig._services``); the parts
every service shares are built here.
"""

from __future__ import annotations

import sys
from typing import Any


def managed_service(
    name: str,
    settings,
    state,
    *,
    description: str,
    scopes: list[str],
    environment: dict[str, str],
) -> dict[str, Any]:
    """The JupyterHub service dict of Labspace's service ``name``: a process the
    hub starts (``python -m labspace.services.<name>``) on ``<name>.port`` of the
    loopback, with its own kept token, and OAuth for the custom ``scopes``. The
    hub's navigation bar links its pages, so the "Services" menu does not."""
    return {
        "name": name,
        "url": f"http://127.0.0.1:{settings.get(f'{name}.port')}",
        "command": [sys.executable, "-m", f"labspace.services.{name}"],
        "api_token": state.service_token(name),
        "environment": environment,
        "oauth_client_allowed_scopes": scopes,
        "oauth_no_confirm": True,
        "display": False,
        "info": {"description": description},
    }


def service_role(name: str, description: str, scopes: list[str]) -> dict[str, Any]:
    """The least-privilege role of service ``name`` in the hub."""
    return {
        "name": f"labspace-{name}-service",
        "description": description,
        "scopes": scopes,
        "services": [name],
    }
