"""Idle culling (``hub.culling``): jupyterhub-idle-culler as the hub's managed
service ``idle-culler``, with no culling logic of Labspace's own.

- ``hub_parts(settings, state)``: the service and its role (the least scopes
  the culler's README lists for the options in use), pure;
- ``command(settings)``: the culler's command line;
- ``problems(values)``: the settings rules the schema cannot say;
- ``Arbiter``: the culler's ``cull_arbiter_hook``, which gives each server the
  idle timeout of its profile (``profiles[].idle_timeout``); the culler's
  own ``--timeout`` is the shortest of them, so it looks often enough, and the
  arbiter keeps the servers of longer-lived profiles;
- ``cull_now(hub_api_url, api_token, settings)``: one pass of the culler's own
  ``cull_idle`` with the same options, for the operations page.

Why an arbiter and not one culler per profile: the culler filters nothing by
profile, so several would each see every server; one pass with a per-server
limit is what ``cull_arbiter_hook`` exists for. The arbiter reads the profile
from the server model's ``user_options`` (``read:servers``; the spawner mixin
puts the resolved profile there), not from the spawner state, which would need
``admin:server_state``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

NAME = "idle-culler"
ENV = "LABSPACE_CULLING"  # the arbiter's table, JSON, in the service's environment
CONFIG_FILE = Path(__file__).resolve().parent / "idle_culler_config.py"
SCOPES = ["list:users", "read:users:activity", "read:servers", "delete:servers"]
USER_SCOPES = ["admin:users"]  # only to delete users (hub.culling.users)
log = logging.getLogger("labspace.culling")


def scopes(culling: dict[str, Any]) -> list[str]:
    """The culler's scopes for ``hub.culling`` (its README's list: stopping and
    removing named servers is ``delete:servers``; ``admin:users`` only to
    delete users)."""
    return SCOPES + (USER_SCOPES if culling["users"] else [])


def timeouts(values: dict[str, Any]) -> dict[str, Any]:
    """The arbiter's table: the default timeout, each profile's own, and the
    slug that a server whose options name no profile got."""
    from .profiles import all_profiles, default_profile

    culling = values["hub"]["culling"]
    profiles = all_profiles(values.get("profiles") or [], values.get("backend") or {})
    own = {p["slug"]: p["idle_timeout"] for p in profiles if p.get("idle_timeout")}
    return {
        "timeout": culling["timeout"],
        "profiles": own,
        "default_profile": default_profile(profiles)["slug"],
    }


def shortest(table: dict[str, Any]) -> int:
    return min([table["timeout"], *table["profiles"].values()])


def _flag(value: bool) -> str:
    return "True" if value else "False"


def options(settings) -> dict[str, Any]:
    """``hub.culling`` as the keyword arguments of the culler's ``cull_idle``
    (without ``url``, ``api_token``, ``logger`` and ``cull_arbiter``)."""
    culling = settings.get("hub.culling")
    return {
        "inactive_limit": shortest(timeouts(settings.values)),
        "cull_users": culling["users"],
        "remove_named_servers": culling["remove_named_servers"],
        "max_age": culling["max_age"],
        "concurrency": culling["concurrency"],
        "cull_admin_users": culling["admin_users"],
        "cull_default_servers": True,
        "cull_named_servers": culling["named_servers"],
    }


def command(settings) -> list[str]:
    """``python -m jupyterhub_idle_culler`` with ``hub.culling``'s options, the
    hub's API on this machine (in the chart, the hub's own pod) and the
    shipped config file that sets the arbiter."""
    opts = options(settings)
    return [
        sys.executable,
        "-m",
        "jupyterhub_idle_culler",
        f"--url={settings.hub_local_url()}api",
        f"--timeout={opts['inactive_limit']}",
        f"--cull-every={settings.get('hub.culling.every')}",
        f"--max-age={opts['max_age']}",
        f"--concurrency={opts['concurrency']}",
        f"--cull-users={_flag(opts['cull_users'])}",
        f"--cull-admin-users={_flag(opts['cull_admin_users'])}",
        f"--cull-named-servers={_flag(opts['cull_named_servers'])}",
        f"--remove-named-servers={_flag(opts['remove_named_servers'])}",
        f"--config={CONFIG_FILE}",
    ]


def hub_parts(settings, state) -> dict[str, Any]:
    """The ``idle-culler`` service (no URL: it only calls the hub) with its kept
    token, and its role; nothing when ``hub.culling.enabled`` is off."""
    culling = settings.get("hub.culling")
    if not culling["enabled"]:
        return {}
    service = {
        "name": NAME,
        "command": command(settings),
        "api_token": state.service_token(NAME),
        "environment": {ENV: json.dumps(timeouts(settings.values), sort_keys=True)},
        "display": False,
        "info": {"description": "Stops idle servers (jupyterhub-idle-culler)"},
    }
    role = {
        "name": NAME,
        "description": "Stops idle servers",
        "scopes": scopes(culling),
        "services": [NAME],
    }
    return {"services": [service], "roles": [role]}


def problems(values: dict[str, Any]) -> list[str]:
    """``profiles[i].idle_timeout`` set while culling is off."""
    hub = values.get("hub")
    culling = hub.get("culling") if isinstance(hub, dict) else None
    if not isinstance(culling, dict) or culling.get("enabled", True):
        return []
    out = []
    for i, profile in enumerate(values.get("profiles") or []):
        if isinstance(profile, dict) and profile.get("idle_timeout"):
            out.append(
                f"profiles[{i}].idle_timeout: set, but hub.culling.enabled is false, so no "
                "server is culled (turn hub.culling.enabled on, or drop idle_timeout)"
            )
    return out


class Arbiter:
    """The culler's ``cull_arbiter_hook``: a server is culled once it has been
    idle for its profile's timeout (``profiles[].idle_timeout``, else
    ``hub.culling.timeout``)."""

    def __init__(self, table: dict[str, Any]):
        self.table = table

    @classmethod
    def from_environment(cls, environ=os.environ) -> Arbiter:
        return cls(json.loads(environ[ENV]))

    def limit(self, server: dict[str, Any]) -> int:
        """The idle timeout of ``server`` (a server model of the hub API)."""
        options = server.get("user_options")
        slug = options.get("profile") if isinstance(options, dict) else None
        if not isinstance(slug, str):
            slug = self.table["default_profile"]
        return self.table["profiles"].get(slug, self.table["timeout"])

    def __call__(self, *, inactive: timedelta, inactive_limit: int, server, **kwargs) -> bool:
        return inactive.total_seconds() >= self.limit(server)


CULLING = "Culling server "


class _Recorder(logging.LoggerAdapter):
    """The culler's logger for one pass: logs as ``log`` and keeps the servers
    the culler stopped (its "Culling server <user>[/<name>]" lines), less the
    users whose pass failed ("Error processing <user>")."""

    def __init__(self, logger: logging.Logger):
        super().__init__(logger, {})
        self.culled: list[str] = []
        self.failed: set[str] = set()

    def log(self, level, msg, *args, **kwargs):
        if isinstance(msg, str) and msg.startswith(CULLING):
            self.culled.append(args[0] if args else msg[len(CULLING) :].rsplit(" (", 1)[0])
        elif isinstance(msg, str) and msg.startswith("Error processing "):
            self.failed.add(msg[len("Error processing ") :])
        super().log(level, msg, *args, **kwargs)

    def result(self) -> list[str]:
        return [n for n in self.culled if n.split("/", 1)[0] not in self.failed]


async def cull_now(hub_api_url: str, api_token: str, settings) -> list[str]:
    """One pass of jupyterhub-idle-culler's ``cull_idle`` with ``hub.culling``'s
    options and the profiles' timeouts: the servers it stopped, as
    ``user`` or ``user/name``. With culling off: nothing, and no request.

    ``api_token`` needs the culler's scopes (the ``idle-culler`` service's
    kept token, ``State.service_token("idle-culler")``)."""
    from jupyterhub_idle_culler import cull_idle
    from tornado.httpclient import AsyncHTTPClient

    if not settings.get("hub.culling.enabled"):
        return []
    recorder = _Recorder(log)
    # cull_idle configures tornado's AsyncHTTPClient for the process: the hub's stays
    saved = AsyncHTTPClient._save_configuration()
    try:
        await cull_idle(
            url=hub_api_url.rstrip("/"),
            api_token=api_token,
            logger=recorder,
            cull_arbiter=Arbiter(timeouts(settings.values)),
            **options(settings),
        )
    finally:
        AsyncHTTPClient._restore_configuration(saved)
    return recorder.result()
