"""Endpoints for the catalog's hub side (``api/internal/``), service token only.

``POST api/internal/spawn-options`` answers the spawner hook of ``hubside``:
the hub sends ``{"user", "server", "groups", "options"}`` (the start's
``app``/``version``/``profile``), the service answers what the workspace gets,
``{"apps": [workspace entries], "app", "version", "default_url"}`` (the last
three only for a standalone app), or a 400 saying why nothing may start. The
hub process never opens the catalog's database.
"""

from __future__ import annotations

from typing import Any

from tornado import web

from labspace.services.kit.web import InternalHandler

from . import apps as appdefs
from .hubside import check_app_options
from .store import Catalog, CatalogError

MAX_NAME = 255


def _name(body: dict, key: str, empty: bool = False) -> str:
    value = body.get(key)
    if not isinstance(value, str) or (not value and not empty) or len(value) > MAX_NAME:
        raise web.HTTPError(400, f"{key!r} must be a string of at most {MAX_NAME} characters")
    return value


def check_request(body: dict[str, Any]) -> tuple[str, str, set[str], dict[str, Any]]:
    """``(user, server, groups, options)`` of a spawn-options body, or 400."""
    groups = body.get("groups")
    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        raise web.HTTPError(400, "'groups' must be a list of group names")
    options = body.get("options")
    if not isinstance(options, dict):
        raise web.HTTPError(400, "'options' must be an object (the start's user options)")
    check_app_options(options)
    return _name(body, "user"), _name(body, "server", empty=True), set(groups), options


async def spawn_options(catalog: Catalog, body: dict[str, Any]) -> dict[str, Any]:
    """What the workspace of this start gets, or ``HTTPError(400)`` saying why
    it may not start."""
    user, server, groups, options = check_request(body)
    app_id = options.get("app")
    if app_id is None:
        apps = await catalog.proxied_for(groups)
        return {"apps": [appdefs.workspace_entry(d) for d in apps]}
    try:
        app = await catalog.get(app_id, groups)
        defn = catalog.version(app, options.get("version")).definition
    except CatalogError as e:
        # unknown, disabled or outside the groups: the same answer
        raise web.HTTPError(400, e.message.replace("%", "%%")) from None
    if defn["kind"] != "standalone":
        raise web.HTTPError(
            400,
            f"{app_id} runs inside your workspace at /user/{user}/{app_id}/, "
            "not as a server of its own",
        )
    if server != app_id:
        raise web.HTTPError(400, f"App {app_id} runs in the named server {app_id!r}")
    wanted = defn["launch"].get("profile") or ""
    if wanted and options.get("profile") != wanted:
        raise web.HTTPError(400, f"App {app_id} runs on profile {wanted!r} (send it too)")
    bundled = defn["launch"].get("bundled", False)
    return {
        "apps": [] if bundled else [appdefs.workspace_entry(defn)],
        "app": app_id,
        "version": defn["version"],
        "default_url": f"/{app_id}/",
    }


class SpawnOptionsHandler(InternalHandler):
    async def post(self):
        answer = await spawn_options(self.settings["catalog"], self.json_body())
        self.write_json(answer)


class MineHandler(InternalHandler):
    """``GET api/internal/mine?user=<name>&groups=<a,b>``: the apps open to
    those groups, for the hub's home page (``{"apps": [{id, title,
    description, category, kind, icon}]}``)."""

    async def get(self):
        user = self.get_query_argument("user", "")
        if not user or len(user) > MAX_NAME:
            raise web.HTTPError(400, f"'user' must be a name of at most {MAX_NAME} characters")
        groups = {g for g in self.get_query_argument("groups", "").split(",") if g}
        apps = await self.settings["catalog"].list_apps(groups)
        keep = ("id", "title", "description", "category", "kind", "icon")
        self.write_json({"apps": [{k: a.get(k) for k in keep} for a in apps]})


def routes(prefix: str) -> list[tuple[str, type]]:
    return [
        (prefix + "api/internal/spawn-options", SpawnOptionsHandler),
        (prefix + "api/internal/mine", MineHandler),
    ]
