"""Labspace hub services (``labspace.services``): accounting, catalog and data.

Each service package has ``config.py`` with ``problems(values)`` and
``hub_parts(settings, state)`` (see ``labspace.hubconfig._services``); the parts
every service shares are built here.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from labspace import rules


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
    hub starts (``python -m labspace.services.<name>``) listening on
    ``hub.hub_ip`` port ``<name>.port`` (``bind_ip`` in its config, read by the
    kit's runner), its URL on ``hub.connect_host`` (where the proxy reaches it;
    loopback by default), with its own kept token, and OAuth for the custom
    ``scopes``. The hub's navigation bar links its pages, so the "Services" menu
    does not."""
    return {
        "name": name,
        "url": rules.service_url(settings.values, name),
        "command": [sys.executable, "-m", f"labspace.services.{name}"],
        "api_token": state.service_token(name),
        "environment": with_bind_ip(name, environment, settings.get("hub.hub_ip")),
        "oauth_client_allowed_scopes": scopes,
        "oauth_no_confirm": True,
        "display": False,
        "info": {"description": description},
    }


def with_bind_ip(name: str, environment: dict[str, str], ip: str) -> dict[str, str]:
    """``environment`` with ``bind_ip`` added to the service's
    ``LABSPACE_<NAME>_CONFIG`` (``ServiceContext.bind_ip`` reads it)."""
    key = "LABSPACE_" + name.upper().replace("-", "_") + "_CONFIG"
    config = json.loads(environment.get(key) or "{}")
    return {**environment, key: json.dumps({**config, "bind_ip": ip})}


def service_role(name: str, description: str, scopes: list[str]) -> dict[str, Any]:
    """The least-privilege role of service ``name`` in the hub."""
    return {
        "name": f"labspace-{name}-service",
        "description": description,
        "scopes": scopes,
        "services": [name],
    }
