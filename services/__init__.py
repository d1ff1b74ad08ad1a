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
        "environment": with_hub_address(name, environment, settings),
        "oauth_client_allowed_scopes": scopes,
        "oauth_no_confirm": True,
        "display": False,
        "info": {"description": description},
    }


def with_hub_address(name: str, environment: dict[str, str], settings) -> dict[str, str]:
    """``environment`` with, in the service's ``LABSPACE_<NAME>_CONFIG``,
    ``bind_ip`` (``hub.hub_ip``, read by ``ServiceContext.bind_ip``) and, when
    the hub is reached by ``hub.connect_host``, ``hub_api_url``: the hub's API
    on this machine (``ServiceContext.api_url``). JupyterHub gives every service
    the connect URL, which from the hub's own pod goes out and back through the
    hub's Service."""
    key = "LABSPACE_" + name.upper().replace("-", "_") + "_CONFIG"
    config = {**json.loads(environment.get(key) or "{}"), "bind_ip": settings.get("hub.hub_ip")}
    if settings.get("hub.connect_host"):
        config["hub_api_url"] = settings.hub_local_url() + "api"
    return {**environment, key: json.dumps(config)}


def hub_side_url(settings, name: str) -> str:
    """The API root of service ``name`` as the hub's own process calls it (its
    hooks, the accounting deliverer): straight to the port it listens on here,
    never through the proxy nor, on Kubernetes, back through the hub's own
    Service (a hop some network plugins refuse a pod)."""
    base = settings.get("hub.base_url") or "/"
    base = base if base.endswith("/") else base + "/"
    return f"{rules.service_local_url(settings.values, name)}{base}services/{name}/"


def service_role(name: str, description: str, scopes: list[str]) -> dict[str, Any]:
    """The least-privilege role of service ``name`` in the hub."""
    return {
        "name": f"labspace-{name}-service",
        "description": description,
        "scopes": scopes,
        "services": [name],
    }
