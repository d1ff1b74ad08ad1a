"""The data service's hub side endpoint (``api/internal/``), service token only.

``POST api/internal/start`` answers the ``before_start`` hook of ``hubside``:
the hub sends ``{"user", "server", "groups", "backend"}`` (the groups as the hub
knows them after the sign-in's refresh), the service answers
``{"datasets": [...]}``: each dataset the person holds a grant for (strongest
grant wins) with its level, mount path for that backend, source, and for s3
the credential of its level (a write grant without a write credential gets the
read one, as read). The start is recorded in the audit (user, server, datasets
and levels; never a secret). The hub process never opens the database, and it
checks every host path again before it mounts anything.
"""

from __future__ import annotations

import logging
from typing import Any

from tornado import web

from labspace.services.kit.web import InternalHandler

from .store import DataStore, Who

MAX_NAME = 255
MAX_GROUPS = 10_000
BACKENDS = ("local", "docker", "kubernetes")
log = logging.getLogger("labspace.data")


def _name(body: dict, key: str, empty: bool = False) -> str:
    value = body.get(key)
    if not isinstance(value, str) or (not value and not empty) or len(value) > MAX_NAME:
        raise web.HTTPError(400, f"{key}: must be a string of at most {MAX_NAME} characters")
    return value


def check_start(body: dict[str, Any]) -> tuple[Who, str, str]:
    """``(who, server, backend)`` of a start body, or 400 naming the field."""
    unknown = sorted(set(body) - {"user", "server", "groups", "backend"})
    if unknown:
        raise web.HTTPError(400, f"{unknown[0]}: unknown key (send user, server, groups, backend)")
    groups = body.get("groups", [])
    if (
        not isinstance(groups, list)
        or len(groups) > MAX_GROUPS
        or not all(isinstance(g, str) and 0 < len(g) <= MAX_NAME for g in groups)
    ):
        raise web.HTTPError(400, "groups: must be a list of group names")
    backend = body.get("backend", "")
    if backend not in ("", *BACKENDS):
        raise web.HTTPError(400, f"backend: must be one of {', '.join(BACKENDS)}")
    user = _name(body, "user")
    server = _name(body, "server", empty=True)
    return Who(user, frozenset(groups)), server, backend


class StartHandler(InternalHandler):
    def prepare(self):
        if self.request.method not in self.allowed_methods():
            raise web.HTTPError(405)  # before the token: the document says so, publicly
        super().prepare()

    async def post(self):
        who, server, backend = check_start(self.json_body())
        store: DataStore = self.settings["store"]
        datasets = await store.start(who, server, backend)
        self.settings["metrics"].started(datasets)
        log.info(
            "Start of %s/%s: %s",
            who.user,
            server,
            ", ".join(f"{d['id']} ({d['level']})" for d in datasets) or "no datasets",
        )
        self.write_json({"datasets": datasets})


class MineHandler(InternalHandler):
    """``GET api/internal/mine?user=<name>&groups=<a,b>``: the datasets that
    person holds a grant for, as their own My data lists them (no credential),
    for the hub's home page: ``{"datasets": [...]}``."""

    def prepare(self):
        if self.request.method not in self.allowed_methods():
            raise web.HTTPError(405)  # before the token: the document says so, publicly
        super().prepare()

    async def get(self):
        user = self.get_query_argument("user", "")
        if not user or len(user) > MAX_NAME:
            raise web.HTTPError(400, f"user: must be a name of at most {MAX_NAME} characters")
        groups = frozenset(g for g in self.get_query_argument("groups", "").split(",") if g)
        store: DataStore = self.settings["store"]
        self.write_json({"datasets": await store.mine(Who(user, groups))})


def routes(prefix: str) -> list[tuple[str, type]]:
    return [
        (prefix + "api/internal/start", StartHandler),
        (prefix + "api/internal/mine", MineHandler),
    ]
