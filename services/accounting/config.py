"""What the accounting section means for settings checks and for the hub.

- ``problems(values)``: rules the schema cannot say, one line each;
- ``hub_parts(settings, state)``: the managed services (the accounting service
  and its outbox deliverer), the service's role, the custom scopes, what every
  user and every admin gets, the spawner hooks, the navigation links and the
  banner's alerts (pure: builds dicts, starts nothing).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from labspace import rules
from labspace.services import managed_service, service_role
from labspace.state import SECRETS_DIR, keep_secret

from . import hubside
from .hubside import deliverer_secret_file
from .policy import Policy
from .pricing import parse_time

NAME = "accounting"
SCOPE = "custom:labspace-accounting"
METRICS = "custom:labspace-metrics:read"  # services.kit.metrics.SCOPE
READ, READ_ALL, ADMIN = f"{SCOPE}:read", f"{SCOPE}:read-all", f"{SCOPE}:admin"
# what the service itself may do in the hub: list servers, read groups, stop servers
SERVICE_SCOPES = [
    "list:users",
    "read:users:name",
    "read:users:groups",
    "read:servers",
    "delete:servers",
    "list:groups",
    "read:groups",
]
DB_URL = "accounting-db-url"
CUSTOM_SCOPES = {  # the hub's custom scopes; a scope's subscopes are what it implies
    READ: {"description": "Read your own usage, your projects' balances and prices."},
    READ_ALL: {
        "description": "Read everyone's usage and every project's balance.",
        "subscopes": [READ],
    },
    ADMIN: {"description": "Top up, assign, move and reverse budgets.", "subscopes": [READ_ALL]},
}


def scope_implies(scopes: dict[str, dict[str, Any]] = CUSTOM_SCOPES) -> dict[str, list[str]]:
    """For each scope, the scopes that also grant it (through subscopes, at any
    depth): the service's ``scope_implies``, from the same table the hub gets."""
    out: dict[str, list[str]] = {}
    for scope in scopes:
        granting, todo = set(), [scope]
        while todo:
            below = todo.pop()
            for other, spec in scopes.items():
                if below in spec.get("subscopes", []) and other not in granting:
                    granting.add(other)
                    todo.append(other)
        out[scope] = sorted(granting)
    # the Prometheus scrape scope (the kit's); read-all has always read the metrics
    out[METRICS] = [READ_ALL, ADMIN]
    return out


PROFILE_KEYS = ("slug", "display_name", "cpu", "memory", "gpus", "groups")


def _profiles(values: dict[str, Any]) -> list[dict[str, Any]]:
    from labspace.profiles import all_profiles

    return [
        {k: p[k] for k in PROFILE_KEYS if k in p}
        for p in all_profiles(values.get("profiles") or [], values.get("backend") or {})
    ]


def _time_problem(where: str, text: str) -> list[str]:
    try:
        parse_time(text)
    except ValueError:
        return [f"{where}: {text!r} is not a time (ISO 8601, e.g. 2026-01-01T00:00:00Z)"]
    return []


def _price_problems(prices: dict[str, Any], slugs: set[str]) -> list[str]:
    out = []
    known = ", ".join(sorted(slugs))
    blocks = [("accounting.prices", prices)] + [
        (f"accounting.prices.scheduled[{i}]", c) for i, c in enumerate(prices.get("scheduled", []))
    ]
    for where, block in blocks:
        for slug in block.get("profiles") or {}:
            if slug not in slugs:
                out.append(f"{where}.profiles.{slug}: no such profile (profiles: {known})")
        if block.get("effective_from"):
            out += _time_problem(f"{where}.effective_from", block["effective_from"])
    return out


def _project_problems(policy: Policy) -> list[str]:
    out = []
    projects = policy.projects
    if not projects.get("groups") and not projects.get("prefix") and policy.refuse_without_project:
        out.append(
            "accounting.no_project: refuse, but no group is a project, so nobody could start "
            "(set accounting.projects.groups or accounting.projects.prefix)"
        )
    where_names = [
        ("accounting.projects.parents", list(projects.get("parents") or {})),
        ("accounting.projects.parents", list((projects.get("parents") or {}).values())),
        ("accounting.projects.leads", list(projects.get("leads") or {})),
        ("accounting.monthly_allowance", list(policy.monthly_allowance)),
    ]
    for where, names in where_names:
        for name in names:
            if not policy.is_project(name):
                out.append(
                    f"{where}: {name!r} is not a project "
                    "(add it to accounting.projects.groups or match accounting.projects.prefix)"
                )
    for child in projects.get("parents") or {}:
        seen, node = {child}, policy.parent_of(child)
        while node is not None:
            if node in seen:
                out.append(
                    f"accounting.projects.parents.{child}: the parents form a cycle "
                    "(a project cannot be above itself)"
                )
                break
            seen.add(node)
            node = policy.parent_of(node)
    return out


def problems(values: dict[str, Any]) -> list[str]:
    """Semantic problems of ``values["accounting"]`` (the full settings, defaults filled)."""
    section = values.get("accounting") or {}
    if not isinstance(section, dict) or not section.get("enabled", True):
        return []
    policy = Policy(section)
    slugs = {p["slug"] for p in _profiles(values)}
    out = _price_problems(section.get("prices") or {}, slugs)
    out += _project_problems(policy)
    out += rules.database_url_problems("accounting.db_url", section.get("db_url"))
    out += rules.port_clashes(values, prefix="accounting.")
    return out


def secrets_dir(state) -> Path:
    return Path(state.data_dir) / SECRETS_DIR


def service_environment(settings, state) -> dict[str, str]:
    """``LABSPACE_ACCOUNTING_CONFIG``: its section, the profiles, and where its
    secrets are kept. No secret travels in the environment (JupyterHub keeps a
    service's environment in its database): the database URL, which may carry a
    password, and the deliverer's secret are files under ``secrets/``, named in
    the config as ``db_url_file`` and ``deliverer_secret_file`` (read with
    ``ServiceContext.secret``)."""
    section = {k: v for k, v in (settings.get("accounting") or {}).items() if k != "db_url"}
    db_url = keep_secret(secrets_dir(state) / DB_URL, state.service_db_url(NAME))
    config = {
        "accounting": section,
        "profiles": _profiles(settings.values),
        "data_dir": str(state.data_dir),
        "admin_users": list(settings.get("hub.admin_users") or []),
        "db_url_file": str(db_url),
        "deliverer_secret_file": str(deliverer_secret_file(state)),
    }
    return {"LABSPACE_ACCOUNTING_CONFIG": json.dumps(config), "PYTHONUNBUFFERED": "1"}


def hub_parts(settings, state) -> dict[str, Any]:
    """The accounting pieces of the hub's configuration (empty when disabled)."""
    if not settings.get("accounting.enabled"):
        return {}
    hub = hubside.HubSide.from_settings(settings, state)  # the hub's one HubSide
    service = managed_service(
        NAME,
        settings,
        state,
        description="Prices, budgets and usage",
        scopes=[READ, READ_ALL, ADMIN],
        environment=service_environment(settings, state),
    )
    return {
        "services": [service, hubside.deliverer_service(settings, state)],
        "roles": [
            service_role(
                NAME, "What the accounting service may do: see servers, stop them", SERVICE_SCOPES
            )
        ],
        "custom_scopes": CUSTOM_SCOPES,
        "user_scopes": [f"access:services!service={NAME}", READ],
        "admin_scopes": [f"access:services!service={NAME}", READ_ALL, ADMIN],
        "spawner": hubside.spawner_traits(hub),
        "nav": [
            {"title": "My usage", "url": f"/services/{NAME}/", "admin": False},
            {"title": "Project", "url": f"/services/{NAME}/projects", "admin": False},
            {"title": "Accounting admin", "url": f"/services/{NAME}/admin", "admin": True},
        ],
        "template_vars": hubside.template_vars(hub),
    }
