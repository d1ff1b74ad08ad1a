"""REST API of the catalog (``<prefix>api/...``), authorised with custom scopes.

| scope                           | may                                            |
|---------------------------------|------------------------------------------------|
| custom:labspace-catalog:read    | list and read the apps open to their groups    |
| custom:labspace-catalog:launch  | launch, stop, share them, list their launches  |
| custom:labspace-catalog:admin   | see every app; create, update, disable, delete |

An app outside the caller's groups is invisible: 404, as for an unknown one.
Bad input is a 4xx ``{"status", "message"}``: a body that is not a JSON object
(400) or larger than 1 MiB (413), a method the path does not have (405, with
``Allow``), a launch id that cannot exist (404).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tornado import web

from labspace.services.kit import web as kit

from .hubapi import HubError
from .openapi import document
from .store import CatalogError, app_model, version_model

SCOPE = "custom:labspace-catalog:"
READ, LAUNCH, ADMIN = SCOPE + "read", SCOPE + "launch", SCOPE + "admin"
# what the custom scopes' subscopes say (config.hub_parts): admin > launch > read
SCOPE_IMPLIES = {READ: [LAUNCH, ADMIN], LAUNCH: [ADMIN]}
MAX_LAUNCH_ID = 2**31 - 1  # launch ids are 32-bit integers in every database
MAX_LOG_LINES = 1000


def whole_number(text: str, default: int) -> int:
    """``text`` as a whole number (ASCII digits, at most 18), else ``default``."""
    if text.isascii() and text.isdigit() and len(text) <= 18:
        return int(text)
    return default


@contextmanager
def refusals() -> Iterator[None]:
    """The catalog's and the hub's refusals as the HTTP errors they are."""
    try:
        yield
    except (CatalogError, HubError) as e:
        raise web.HTTPError(e.status, e.message.replace("%", "%%")) from None


class APIHandler(kit.APIHandler):
    """The catalog's API: ``kit.web.APIHandler`` (JSON, signed-in callers,
    bodies of at most 1 MiB) with the catalog and the launcher at hand."""

    signin_message = "Not signed in: send a hub token with the catalog's scopes"
    log = logging.getLogger("labspace.catalog")

    @property
    def catalog(self):
        return self.settings["catalog"]

    @property
    def launcher(self):
        return self.settings["launcher"]

    @property
    def group_set(self) -> set[str]:
        return set(self.groups)

    def visible_groups(self) -> set[str] | None:
        """None (every app) for catalog admins, else the caller's groups."""
        return None if self.can(ADMIN) else self.group_set

    def flag(self, name: str) -> bool:
        """A boolean query parameter: true/1, false/0, or absent (false)."""
        value = self.get_argument(name, "false").lower()
        if value not in ("true", "1", "false", "0"):
            raise web.HTTPError(400, f"{name} must be true or false")
        return value in ("true", "1")


class AppsHandler(APIHandler):
    async def get(self):
        self.need(READ)
        show_all = self.flag("all") and self.can(ADMIN)
        groups = None if show_all else self.group_set
        apps = await self.catalog.list_apps(groups, disabled=show_all)
        category = self.get_argument("category", "")
        query = self.get_argument("q", "").lower()
        if category:
            apps = [a for a in apps if a["category"] == category]
        if query:
            apps = [
                a for a in apps if query in f"{a['title']} {a['description']} {a['id']}".lower()
            ]
        self.write_json({"apps": apps})

    async def post(self):
        self.need(ADMIN)
        with refusals():
            app = await self.catalog.create(self.json_value(), self.user["name"])
        self.log.info("%s created app %s %s", self.user["name"], app["id"], app["version"])
        self.write_json(app, 201)


class AppHandler(APIHandler):
    async def _app(self, app_id: str):
        self.need(READ)
        with refusals():
            return await self.catalog.get(app_id, self.visible_groups(), disabled=self.can(ADMIN))

    async def get(self, app_id):
        self.write_json(app_model(await self._app(app_id)))

    async def patch(self, app_id):
        self.need(ADMIN)
        with refusals():
            app = await self.catalog.update(app_id, self.json_value(), self.user["name"])
        self.log.info("%s updated app %s to %s", self.user["name"], app_id, app["version"])
        self.write_json(app)

    async def delete(self, app_id):
        self.need(ADMIN)
        with refusals():
            await self.catalog.delete(app_id)
        self.log.info("%s deleted app %s", self.user["name"], app_id)
        self.set_status(204)
        self.finish()


class VersionsHandler(AppHandler):
    async def get(self, app_id):
        app = await self._app(app_id)
        versions = [version_model(v) for v in reversed(app.versions)]
        self.write_json({"id": app.id, "versions": versions})


class DisableHandler(APIHandler):
    async def post(self, app_id, verb):
        self.need(ADMIN)
        with refusals():
            app = await self.catalog.set_disabled(app_id, verb == "disable")
        self.log.info("%s: %s app %s", self.user["name"], verb, app_id)
        self.write_json(app)


class LaunchAppHandler(APIHandler):
    async def post(self, app_id):
        self.need(LAUNCH)
        version = self.json_body().get("version")
        if version is not None and not isinstance(version, str):
            raise web.HTTPError(400, "version must be a string (or null: the current one)")
        with refusals():
            launch = await self.launcher.launch(self.user["name"], self.group_set, app_id, version)
        self.write_json(launch, 202 if launch["state"] == "starting" else 200)


class LaunchesHandler(APIHandler):
    async def get(self):
        self.need(LAUNCH)
        active = self.flag("active")
        launches = await self.catalog.launches(self.user["name"], active=active)
        self.write_json({"launches": [self.launcher.with_url(x) for x in launches]})


class LaunchBase(APIHandler):
    async def mine(self, launch_id: str) -> dict[str, Any]:
        self.need(LAUNCH)
        number = whole_number(launch_id, 0)
        launch = await self.catalog.launch(number) if 0 < number <= MAX_LAUNCH_ID else None
        if launch is None or launch["user"] != self.user["name"]:
            raise web.HTTPError(404, f"No such launch: {launch_id}")
        return launch


class LaunchHandler(LaunchBase):
    async def get(self, launch_id):
        await self.mine(launch_id)
        with refusals():
            self.write_json(await self.launcher.refresh(int(launch_id)))


class StopHandler(LaunchBase):
    async def post(self, launch_id):
        launch = await self.mine(launch_id)
        with refusals():
            self.write_json(await self.launcher.stop(launch))


class LogsHandler(LaunchBase):
    async def get(self, launch_id):
        launch = await self.mine(launch_id)
        lines = whole_number(self.get_argument("lines", "50"), 0)
        if not 1 <= lines <= MAX_LOG_LINES:
            raise web.HTTPError(400, f"lines must be a whole number from 1 to {MAX_LOG_LINES}")
        lines = await self.launcher.logs(launch, lines)
        self.write_json({"launch": launch["id"], "lines": lines})


class SharesHandler(LaunchBase):
    """Share a running standalone app with users or groups (JupyterHub's sharing API)."""

    def target(self) -> dict[str, str]:
        body = self.json_body()
        if len(body) != 1 or not ({"user", "group"} & set(body)):
            raise web.HTTPError(400, 'Send {"user": name} or {"group": name}')
        value = next(iter(body.values()))
        if not isinstance(value, str) or not value:
            raise web.HTTPError(400, "The user or group name must be a non-empty string")
        return body

    async def standalone(self, launch_id) -> dict[str, Any]:
        launch = await self.mine(launch_id)
        if launch["kind"] != "standalone":
            raise web.HTTPError(
                400, "Only standalone apps can be shared (proxied ones run in your workspace)"
            )
        return launch

    async def get(self, launch_id):
        launch = await self.standalone(launch_id)
        with refusals():
            items = await self.launcher.hub.shares(launch["user"], launch["server_name"])
        shares = [
            {
                "user": (s.get("user") or {}).get("name"),
                "group": (s.get("group") or {}).get("name"),
                "scopes": s.get("scopes", []),
            }
            for s in items
        ]
        self.write_json({"shares": shares})

    async def post(self, launch_id):
        launch = await self.standalone(launch_id)
        target = self.target()
        with refusals():
            await self.launcher.hub.share(launch["user"], launch["server_name"], target)
        self.log.info("%s shared %s with %s", launch["user"], launch["server_name"], target)
        self.write_json({"shared": target}, 201)

    async def delete(self, launch_id):
        launch = await self.standalone(launch_id)
        target = self.target()
        with refusals():
            await self.launcher.hub.revoke(launch["user"], launch["server_name"], target)
        self.log.info("%s revoked %s from %s", launch["user"], launch["server_name"], target)
        self.set_status(204)
        self.finish()


class OpenAPIHandler(kit.ServiceHandler):
    """The OpenAPI document: public (any other method is a 405)."""

    is_api = True

    def check_xsrf_cookie(self):
        """A public document: nothing to protect."""

    def get(self):
        catalog = self.settings["catalog"]
        doc = document(self.settings["prefix"], catalog.profiles, catalog.shared_loopback)
        self.write_json(doc)


class NotFoundHandler(APIHandler):
    async def prepare(self):
        raise web.HTTPError(404, f"No such endpoint: {self.request.path}")
