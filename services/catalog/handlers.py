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

import json
import logging
import math
from typing import Any
from urllib.parse import unquote_plus

from jupyterhub.services.auth import HubOAuthenticated, UserNotAllowed
from tornado import web

from .hubapi import HubError
from .openapi import document
from .store import CatalogError, app_model, version_model

SCOPE = "custom:labspace-catalog:"
READ, LAUNCH, ADMIN = SCOPE + "read", SCOPE + "launch", SCOPE + "admin"
MAX_BODY = 1024 * 1024  # bytes of a request body
MAX_LAUNCH_ID = 2**31 - 1  # launch ids are 32-bit integers in every database
MAX_LOG_LINES = 1000


SECRET_PARAMS = {"code", "state", "token", "_xsrf"}


def masked_uri(uri: str) -> str:
    """``uri`` with the values of OAuth ``code``/``state`` (and tokens) hidden."""
    path, sep, query = uri.partition("?")
    if not sep:
        return uri
    pairs = []
    for pair in query.split("&"):
        name, eq, _ = pair.partition("=")
        secret = unquote_plus(name) in SECRET_PARAMS and eq
        pairs.append(f"{name}=[secret]" if secret else pair)
    return f"{path}?{'&'.join(pairs)}"


def request_summary(request) -> str:
    return f"{request.method} {masked_uri(request.uri or '')} ({request.remote_ip})"


class MaskedLog:
    """Tornado's log lines about a request (its warnings too) without secrets."""

    def _request_summary(self) -> str:
        return request_summary(self.request)


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is not a finite number")
    return value


def whole_number(text: str, default: int) -> int:
    """``text`` as a whole number (ASCII digits, at most 18), else ``default``."""
    if text.isascii() and text.isdigit() and len(text) <= 18:
        return int(text)
    return default


class JSONErrors(MaskedLog):
    """Errors as ``{"status", "message"}``; a 405 says which methods the path has."""

    def allowed_methods(self) -> list[str]:
        return [
            m
            for m in ("GET", "POST", "PATCH", "DELETE")
            if getattr(type(self), m.lower()) is not getattr(web.RequestHandler, m.lower())
        ]

    def write_error(self, status_code: int, **kwargs):
        message = self._reason
        exc = kwargs.get("exc_info", (None, None))[1]
        if isinstance(exc, web.HTTPError) and exc.log_message:
            message = exc.log_message % exc.args if exc.args else exc.log_message
        if status_code == 405:
            allowed = ", ".join(self.allowed_methods())
            self.set_header("Allow", allowed)
            message = f"{self.request.method} is not allowed here (allowed: {allowed})"
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"status": status_code, "message": message}))


class BaseHandler(MaskedLog, HubOAuthenticated, web.RequestHandler):
    """Hub OAuth for pages and tokens; JSON errors on API paths."""

    def initialize(self):
        self.hub_auth = self.settings["hub_auth"]

    async def prepare(self):
        """Ask the hub who this is without blocking the loop (HubAuth's sync
        ``get_current_user`` would wait on a thread)."""
        if hasattr(self, "_hub_auth_user_cache"):
            return
        model = await self.hub_auth.get_user(self, sync=False)
        try:
            self._hub_auth_user_cache = self.check_hub_user(model) if model else None
        except UserNotAllowed:
            self._hub_auth_user_cache = None
        if self._xsrf_deferred and not getattr(self, "_token_authenticated", False):
            self.hub_auth.check_xsrf_cookie(self)

    _xsrf_deferred = False

    def check_xsrf_cookie(self):
        """Tornado checks XSRF before ``prepare`` identifies the caller: a request
        with a token is checked after, when it is known whether the token was used."""
        if self.request.headers.get("Authorization", "").startswith(("token ", "bearer ")):
            self._xsrf_deferred = True
            return
        self.hub_auth.check_xsrf_cookie(self)

    log = logging.getLogger("labspace.catalog")

    @property
    def catalog(self):
        return self.settings["catalog"]

    @property
    def launcher(self):
        return self.settings["launcher"]

    @property
    def user(self) -> dict[str, Any]:
        return self.current_user

    @property
    def scopes(self) -> set[str]:
        return set(self.user.get("scopes") or [])

    @property
    def groups(self) -> set[str]:
        return set(self.user.get("groups") or [])

    def has(self, scope: str) -> bool:
        """``scope`` held unfiltered (custom scopes are granted unfiltered)."""
        return scope in self.scopes

    def need(self, scope: str) -> None:
        if not self.has(scope):
            verb = scope.rsplit(":", 1)[-1]
            raise web.HTTPError(403, f"Your token lacks the scope {scope} (needed to {verb})")

    def visible_groups(self) -> set[str] | None:
        """None (every app) for catalog admins, else the caller's groups."""
        return None if self.has(ADMIN) else self.groups


class APIHandler(JSONErrors, BaseHandler):
    """JSON in and out, bodies of at most ``MAX_BODY`` bytes (413 beyond). Every
    answer comes after the whole body is read (the server cuts bodies over its
    hard limit), so the connection stays usable for the hub's proxy."""

    def set_default_headers(self):
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")

    async def prepare(self):
        if len(self.request.body) > MAX_BODY:
            raise web.HTTPError(413, f"The body is larger than {MAX_BODY} bytes")
        await super().prepare()
        if self.current_user is None:
            raise web.HTTPError(403, "Not signed in: send a hub token with the catalog's scopes")

    def body(self) -> Any:
        try:
            return json.loads(
                self.request.body or b"{}", parse_constant=_no_constant, parse_float=_finite
            )
        except ValueError:
            raise web.HTTPError(400, "The body is not valid JSON") from None

    def body_object(self) -> dict[str, Any]:
        body = self.body()
        if not isinstance(body, dict):
            raise web.HTTPError(400, "The body must be a JSON object")
        return body

    def flag(self, name: str) -> bool:
        """A boolean query parameter: true/1, false/0, or absent (false)."""
        value = self.get_argument(name, "false").lower()
        if value not in ("true", "1", "false", "0"):
            raise web.HTTPError(400, f"{name} must be true or false")
        return value in ("true", "1")

    def send(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(data))


def fail(e: CatalogError | HubError) -> web.HTTPError:
    return web.HTTPError(e.status, e.message.replace("%", "%%"))


class AppsHandler(APIHandler):
    def get(self):
        self.need(READ)
        show_all = self.flag("all") and self.has(ADMIN)
        groups = None if show_all else self.groups
        apps = self.catalog.list_apps(groups, disabled=show_all)
        category = self.get_argument("category", "")
        query = self.get_argument("q", "").lower()
        if category:
            apps = [a for a in apps if a["category"] == category]
        if query:
            apps = [
                a for a in apps if query in f"{a['title']} {a['description']} {a['id']}".lower()
            ]
        self.send({"apps": apps})

    def post(self):
        self.need(ADMIN)
        try:
            app = self.catalog.create(self.body(), self.user["name"])
        except CatalogError as e:
            raise fail(e) from None
        self.log.info("%s created app %s %s", self.user["name"], app["id"], app["version"])
        self.send(app, 201)


class AppHandler(APIHandler):
    def _app(self, app_id: str):
        self.need(READ)
        admin = self.has(ADMIN)
        try:
            return self.catalog.get(app_id, self.visible_groups(), disabled=admin)
        except CatalogError as e:
            raise fail(e) from None

    def get(self, app_id):
        self.send(app_model(self._app(app_id)))

    def patch(self, app_id):
        self.need(ADMIN)
        try:
            app = self.catalog.update(app_id, self.body(), self.user["name"])
        except CatalogError as e:
            raise fail(e) from None
        self.log.info("%s updated app %s to %s", self.user["name"], app_id, app["version"])
        self.send(app)

    def delete(self, app_id):
        self.need(ADMIN)
        try:
            self.catalog.delete(app_id)
        except CatalogError as e:
            raise fail(e) from None
        self.log.info("%s deleted app %s", self.user["name"], app_id)
        self.set_status(204)
        self.finish()


class VersionsHandler(AppHandler):
    def get(self, app_id):
        app = self._app(app_id)
        self.send({"id": app.id, "versions": [version_model(v) for v in reversed(app.versions)]})


class DisableHandler(APIHandler):
    def post(self, app_id, verb):
        self.need(ADMIN)
        try:
            app = self.catalog.set_disabled(app_id, verb == "disable")
        except CatalogError as e:
            raise fail(e) from None
        self.log.info("%s: %s app %s", self.user["name"], verb, app_id)
        self.send(app)


class LaunchAppHandler(APIHandler):
    async def post(self, app_id):
        self.need(LAUNCH)
        version = self.body_object().get("version")
        if version is not None and not isinstance(version, str):
            raise web.HTTPError(400, "version must be a string (or null: the current one)")
        try:
            launch = await self.launcher.launch(self.user["name"], self.groups, app_id, version)
        except (CatalogError, HubError) as e:
            raise fail(e) from None
        self.send(launch, 202 if launch["state"] == "starting" else 200)


class LaunchesHandler(APIHandler):
    def get(self):
        self.need(LAUNCH)
        active = self.flag("active")
        launches = self.catalog.launches(self.user["name"], active=active)
        self.send({"launches": [self.launcher.with_url(x) for x in launches]})


class LaunchBase(APIHandler):
    def mine(self, launch_id: str) -> dict[str, Any]:
        self.need(LAUNCH)
        number = whole_number(launch_id, 0)
        launch = self.catalog.launch(number) if 0 < number <= MAX_LAUNCH_ID else None
        if launch is None or launch["user"] != self.user["name"]:
            raise web.HTTPError(404, f"No such launch: {launch_id}")
        return launch


class LaunchHandler(LaunchBase):
    async def get(self, launch_id):
        self.mine(launch_id)
        try:
            self.send(await self.launcher.refresh(int(launch_id)))
        except HubError as e:
            raise fail(e) from None


class StopHandler(LaunchBase):
    async def post(self, launch_id):
        launch = self.mine(launch_id)
        try:
            self.send(await self.launcher.stop(launch))
        except (CatalogError, HubError) as e:
            raise fail(e) from None


class LogsHandler(LaunchBase):
    async def get(self, launch_id):
        launch = self.mine(launch_id)
        lines = whole_number(self.get_argument("lines", "50"), 0)
        if not 1 <= lines <= MAX_LOG_LINES:
            raise web.HTTPError(400, f"lines must be a whole number from 1 to {MAX_LOG_LINES}")
        self.send({"launch": launch["id"], "lines": await self.launcher.logs(launch, lines)})


class SharesHandler(LaunchBase):
    """Share a running standalone app with users or groups (JupyterHub's sharing API)."""

    def target(self) -> dict[str, str]:
        body = self.body_object()
        if len(body) != 1 or not ({"user", "group"} & set(body)):
            raise web.HTTPError(400, 'Send {"user": name} or {"group": name}')
        value = next(iter(body.values()))
        if not isinstance(value, str) or not value:
            raise web.HTTPError(400, "The user or group name must be a non-empty string")
        return body

    def standalone(self, launch_id) -> dict[str, Any]:
        launch = self.mine(launch_id)
        if launch["kind"] != "standalone":
            raise web.HTTPError(
                400, "Only standalone apps can be shared (proxied ones run in your workspace)"
            )
        return launch

    async def get(self, launch_id):
        launch = self.standalone(launch_id)
        hub = self.launcher.hub
        try:
            items = await hub.shares(launch["user"], launch["server_name"])
        except HubError as e:
            raise fail(e) from None
        shares = [
            {
                "user": (s.get("user") or {}).get("name"),
                "group": (s.get("group") or {}).get("name"),
                "scopes": s.get("scopes", []),
            }
            for s in items
        ]
        self.send({"shares": shares})

    async def post(self, launch_id):
        launch = self.standalone(launch_id)
        target = self.target()
        try:
            await self.launcher.hub.share(launch["user"], launch["server_name"], target)
        except HubError as e:
            raise fail(e) from None
        self.log.info("%s shared %s with %s", launch["user"], launch["server_name"], target)
        self.send({"shared": target}, 201)

    async def delete(self, launch_id):
        launch = self.standalone(launch_id)
        target = self.target()
        try:
            await self.launcher.hub.revoke(launch["user"], launch["server_name"], target)
        except HubError as e:
            raise fail(e) from None
        self.log.info("%s revoked %s from %s", launch["user"], launch["server_name"], target)
        self.set_status(204)
        self.finish()


class OpenAPIHandler(JSONErrors, web.RequestHandler):
    def check_xsrf_cookie(self):
        """A public document: nothing to protect (other methods get a 405)."""

    def prepare(self):
        if self.request.method != "GET":
            raise web.HTTPError(405, f"{self.request.method} is not allowed here")

    def get(self):
        self.set_header("Content-Type", "application/json")
        catalog = self.settings["catalog"]
        doc = document(self.settings["prefix"], catalog.profiles, catalog.shared_loopback)
        self.finish(json.dumps(doc))


class NotFoundHandler(APIHandler):
    async def prepare(self):
        raise web.HTTPError(404, f"No such endpoint: {self.request.path}")
