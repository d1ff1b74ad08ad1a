"""What the catalog section means for settings checks and for the hub.

- ``problems(values)``: rules the schema cannot say, one line each (duplicate
  ids, a command without ``{port}``, a standalone profile that does not exist...);
- ``hub_parts(settings, state)``: the managed catalog service (its database
  URL in a 0600 file under ``data_dir/secrets``, never in its environment), its
  role with the least scopes, the custom scopes, what users and admins get, the
  spawner hook that asks the service to check ``{"app", "version"}`` and which
  catalog apps workspaces get (over HTTP with the service's token: the hub never
  opens the catalog's database), and the "Apps" link (builds dicts and that
  file, starts nothing).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from labspace import rules
from labspace.services import hub_side_url, managed_service, service_role
from labspace.state import keep_secret

from . import apps as appdefs

NAME = "catalog"
SCOPE = "custom:labspace-catalog"
READ, LAUNCH, ADMIN = f"{SCOPE}:read", f"{SCOPE}:launch", f"{SCOPE}:admin"
# What the service may do in the hub (jupyterhub/scopes.py), each for a reason:
# - ``servers``: start and stop users' servers and read their models (launches,
#   their state and progress; includes ``read:servers``);
# - ``shares``: share a standalone app's server and revoke it. The hub lets only
#   a holder of what a share grants make it, so this includes ``access:servers``;
#   that is why this token never leaves the service (see hubapi.py);
# - ``read:users:name`` / ``read:groups:name``: the hub asks for them to share
#   with a user or a group by name;
# - ``tokens``: mint, for a call to a workspace's lifecycle API (an app's log, a
#   proxied app's stop), a short-lived token of that user for that one server
#   (``access:servers!server=<user>/<server>``): the workspace is the user's code
#   and sees nothing worth more than that server. The hub lets the holder of
#   ``tokens`` mint any scope the user holds; the service only asks for that one.
# Users' groups come with the caller's own token, so no ``read:users:groups``.
SERVICE_SCOPES = [
    "servers",
    "shares",
    "read:users:name",
    "read:groups:name",
    "tokens",
]
OPTION_KEYS = {
    "app": "Catalog app to run in this named server (standalone apps)",
    "version": "Version of that catalog app (default: its current version)",
}


def problems(values: dict[str, Any]) -> list[str]:
    """Semantic problems of ``values["catalog"]`` (full settings, defaults filled)."""
    section = values.get("catalog") or {}
    if not isinstance(section, dict):
        return []
    out = appdefs.problems(values)
    out += rules.database_url_problems("catalog.db_url", section.get("db_url"))
    out += rules.port_clashes(values, prefix="catalog.")
    return out


def service_environment(settings, state) -> dict[str, str]:
    """What the service process needs (its ``ServiceContext.config``, see
    ``app``). The database URL may hold a password: it is kept in
    ``data_dir/secrets/catalog-db-url`` and the environment names that file
    (``db_url_file``), never the URL."""
    secrets_dir = Path(state.data_dir) / "secrets"
    db_url_file = secrets_dir / f"{NAME}-db-url"
    keep_secret(db_url_file, state.service_db_url(NAME))
    config = {
        "db_url_file": str(db_url_file),
        "data_dir": str(state.data_dir),
        "apps": settings.get("catalog.apps"),
        "bundled": settings.get("catalog.bundled"),
        "base_dir": str(settings.base_dir),
        "profiles": appdefs.profile_slugs(settings.values),
        "shared_loopback": appdefs.loopback_shared(settings.values),
        "proxy_url": settings.local_url(),  # ends with hub.base_url
        "base_url": settings.get("hub.base_url"),
    }
    return {"LABSPACE_CATALOG_CONFIG": json.dumps(config), "PYTHONUNBUFFERED": "1"}


def hub_parts(settings, state) -> dict[str, Any]:
    """The catalog pieces of the hub's configuration (empty when disabled)."""
    if not settings.get("catalog.enabled"):
        return {}
    from .hubside import CatalogOptions

    service = managed_service(
        NAME,
        settings,
        state,
        description="Interactive apps: launch them next to your notebooks",
        scopes=[READ, LAUNCH, ADMIN],
        environment=service_environment(settings, state),
    )
    hook = CatalogOptions(
        hub_side_url(settings, NAME),
        service["api_token"],
        settings.get("catalog.on_unreachable"),
    )
    return {
        "services": [service],
        "roles": [
            service_role(
                NAME,
                "What the catalog may do: start, stop and share users' servers",
                SERVICE_SCOPES,
            )
        ],
        "custom_scopes": {
            READ: {"description": "See the catalog apps open to your groups."},
            LAUNCH: {
                "description": "Launch, stop and share catalog apps open to your groups.",
                "subscopes": [READ],
            },
            ADMIN: {
                "description": "See every catalog app; add, update, disable and delete apps.",
                "subscopes": [LAUNCH],
            },
        },
        "user_scopes": [f"access:services!service={NAME}", READ, LAUNCH],
        "admin_scopes": [f"access:services!service={NAME}", ADMIN],
        "spawner": {"option_keys": dict(OPTION_KEYS), "check_options": [hook]},
        "nav": [{"title": "Apps", "url": f"/services/{NAME}/", "admin": False}],
    }
