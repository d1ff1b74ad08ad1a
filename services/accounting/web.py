"""The accounting service's handler plumbing: one error shape, hub identification,
XSRF for token requests, the internal endpoints' token check, the access log.

Users are identified by ``HubOAuth`` (cookie or ``Authorization: token``) and
authorised by the custom scopes in their token (``custom:labspace-accounting:
read`` for their own data, ``read-all``, ``admin``), never by an admin flag.
"""

from __future__ import annotations

import hmac
import json
import logging
from datetime import datetime
from decimal import Decimal
from http.client import responses
from typing import Any
from urllib.parse import parse_qsl, urlencode

from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated, UserNotAllowed
from tornado import web
from tornado.httpserver import HTTPServer

from .config import ADMIN, READ, READ_ALL
from .db import Database, DatabaseBusy
from .policy import Policy
from .service import Service


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON: {type(value).__name__}")


METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(handler: web.RequestHandler) -> list[str]:
    """The methods ``handler``'s class answers (for a 405's ``Allow``)."""
    base = web.RequestHandler
    return [m for m in METHODS if getattr(type(handler), m.lower()) is not getattr(base, m.lower())]


MAX_BODY = 1024 * 1024  # bytes of a request body (a 413 beyond)
HARD_MAX_BODY = 4 * MAX_BODY  # beyond this tornado closes the connection unread


def _has_nul(value: Any) -> bool:
    """Whether a NUL character hides in a JSON value (PostgreSQL refuses them)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


class ServiceErrors:
    """One error shape for every handler: a busy database is a 503, a 405 says
    what is allowed, HTTPError messages are formatted once; every request gets
    the same checks of its size and path first (``check_request``)."""

    def check_request(self) -> None:
        if len(self.request.body or b"") > MAX_BODY:
            raise web.HTTPError(413, f"The request body is larger than {MAX_BODY} bytes (1 MiB)")
        if "\x00" in "".join(self.path_args or ()):
            raise web.HTTPError(400, "The path must not contain NUL characters")

    def _handle_request_exception(self, e: BaseException) -> None:
        if isinstance(e, DatabaseBusy):
            try:
                raise web.HTTPError(503, str(e)) from e
            except web.HTTPError as busy:
                return super()._handle_request_exception(busy)
        return super()._handle_request_exception(e)

    def error_message(self, status_code: int, kwargs: dict[str, Any]) -> str:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if status_code == 405:
            self.set_header("Allow", ", ".join(allowed_methods(self)))
        if status_code == 503:
            self.set_header("Retry-After", "1")
        if not isinstance(exc, web.HTTPError):
            if status_code >= 500:
                return "Internal error in the accounting service (see its log)"
            return responses.get(status_code, "Error")
        message = exc.log_message or exc.reason or responses.get(status_code, "Error")
        if exc.log_message and exc.args:
            message = message % exc.args
        return message


class BaseHandler(ServiceErrors, HubOAuthenticated, web.RequestHandler):
    """Shared by every handler: the service, JSON helpers, one error format."""

    @property
    def service(self) -> Service:
        return self.settings["service"]

    @property
    def hub_auth(self):
        return self.settings["hub_auth"]

    @property
    def db(self) -> Database:
        return self.service.db

    @property
    def policy(self) -> Policy:
        return self.service.policy

    @property
    def is_api(self) -> bool:
        return self.request.path.startswith(self.settings["prefix"] + "api/")

    async def prepare(self):
        """Ask the hub who this is without blocking the loop. HubAuth's
        synchronous ``get_current_user`` waits on its one-thread pool; called from
        the XSRF check of a request with a bogus token and a cookie, it would wait
        on itself for good (the cookie path runs the XSRF check again)."""
        self.check_request()
        if hasattr(self, "_hub_auth_user_cache"):
            return
        await identify(self)
        if self._xsrf_deferred and not getattr(self, "_token_authenticated", False):
            self.hub_auth.check_xsrf_cookie(self)  # a bad token: the cookie needs XSRF

    _xsrf_deferred = False

    def check_xsrf_cookie(self):
        """Tornado checks XSRF before ``prepare`` identifies the caller: a request
        with a token is checked after, when it is known whether the token was used."""
        if self.request.headers.get("Authorization"):
            self._xsrf_deferred = True
            return
        self.hub_auth.check_xsrf_cookie(self)

    def get_current_user(self):
        """Who ``prepare`` identified; never a blocking call to the hub."""
        return getattr(self, "_hub_auth_user_cache", None)

    def write_json(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps(data, default=_json_default))

    def json_body(self) -> dict[str, Any]:
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError:
            raise web.HTTPError(400, "The body is not valid JSON") from None
        if not isinstance(body, dict):
            raise web.HTTPError(400, "The body must be a JSON object")
        if _has_nul(body):
            raise web.HTTPError(400, "The body must not contain NUL characters (\\u0000)")
        return body

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        message = self.error_message(status_code, kwargs)
        if self.is_api or self.request.path.endswith("/metrics"):
            self.set_header("Content-Type", "application/json; charset=utf-8")
            self.finish(json.dumps({"status": status_code, "message": message}))
            return
        self.render("error.html", status=status_code, message=message, **self.page_vars())

    # -- who may do what -------------------------------------------------------

    @property
    def user(self) -> dict[str, Any]:
        user = self.current_user
        if not user:
            raise web.HTTPError(403, "Sign in to the hub to use accounting")
        return user

    @property
    def scopes(self) -> set[str]:
        return set(self.user.get("scopes") or [])

    def can(self, scope: str) -> bool:
        # read-all implies read, admin implies read-all (custom scope subscopes)
        implied = {READ: {READ, READ_ALL, ADMIN}, READ_ALL: {READ_ALL, ADMIN}, ADMIN: {ADMIN}}
        return bool(self.scopes & implied[scope])

    def need(self, scope: str) -> None:
        if not self.can(scope):
            raise web.HTTPError(403, f"This needs the scope {scope}")

    def groups(self) -> list[str]:
        return list(self.user.get("groups") or [])

    def my_projects(self) -> list[str]:
        return self.policy.projects_of(self.groups())

    def may_read_user(self, name: str) -> bool:
        return self.can(READ_ALL) or (name == self.user["name"] and self.can(READ))

    def may_read_project(self, project: str, members: bool = False) -> bool:
        """Members read a project's totals; leads (and read-all) its members' usage."""
        if self.can(READ_ALL):
            return True
        if not self.can(READ):
            return False
        if members:
            return self.user["name"] in self.policy.leads_of(project)
        return project in self.my_projects() or self.user["name"] in self.policy.leads_of(project)

    def page_vars(self) -> dict[str, Any]:
        user = self.current_user or {}
        prefix = self.settings["prefix"]
        privileged = bool(user) and self.can(READ_ALL)
        nav = [
            (item["title"], self.settings["base_url"].rstrip("/") + item["url"])
            for item in self.settings["nav"]
            if privileged or not item.get("admin")
        ]
        return {
            "nav": nav,
            "prefix": prefix,
            "hub_prefix": self.settings["hub_prefix"],
            "user": user,
            "currency": self.policy.currency,
            "is_admin": bool(user) and self.can(ADMIN),
            "can_read_all": bool(user) and self.can(READ_ALL),
        }


class InternalHandler(ServiceErrors, web.RequestHandler):
    """The hub side's endpoints: ``Authorization: token <service token>`` (the
    spawner hooks, in the hub's process); where ``deliverer_may``, also the
    deliverer's own secret."""

    deliverer_may = False

    @property
    def service(self) -> Service:
        return self.settings["service"]

    def check_xsrf_cookie(self):
        return  # token-authenticated; no cookies are read here

    def prepare(self):
        self.check_request()
        header = self.request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        sent = token.strip().encode()
        if scheme.lower() == "token" and hmac.compare_digest(sent, self.service.token.encode()):
            return
        secret = self.service.deliverer_secret
        if (
            self.deliverer_may
            and secret
            and scheme.lower() == "token"
            and hmac.compare_digest(sent, secret.encode())
        ):
            return
        raise web.HTTPError(403, "Internal endpoints need the accounting service's token")

    write_json = BaseHandler.write_json
    json_body = BaseHandler.json_body

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        message = self.error_message(status_code, kwargs)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps({"status": status_code, "message": message}))


class NotFoundHandler(BaseHandler):
    """Any other path under the prefix: a 404 in the service's error shape."""

    async def prepare(self):
        raise web.HTTPError(404, "No such page or API path in the accounting service")


async def identify(handler: HubOAuthenticated) -> None:
    """Who sent this request, asked of the hub without blocking the loop; kept
    where HubAuth's ``get_current_user`` looks first."""
    model = await handler.hub_auth.get_user(handler, sync=False)
    try:
        handler._hub_auth_user_cache = handler.check_hub_user(model) if model else None
    except UserNotAllowed:
        handler._hub_auth_user_cache = None


class OAuthCallbackHandler(ServiceErrors, HubOAuthCallbackHandler):
    """The OAuth callback, with the application's one ``HubOAuth`` (it keeps the
    OAuth state and PKCE verifier of the login it completes). A code the hub
    refuses is the caller's mistake (400), not the service's (HubAuth says 500)."""

    @property
    def hub_auth(self):
        return self.settings["hub_auth"]

    async def prepare(self):
        await identify(self)

    async def get(self):
        try:
            await super().get()
        except web.HTTPError as e:
            if e.status_code == 500 and (e.log_message or "").startswith(
                "Failed to check authorization"
            ):
                raise web.HTTPError(
                    400, "The hub did not accept this sign-in's code: sign in again"
                ) from None
            raise

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        message = self.error_message(status_code, kwargs)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(f"{status_code}: {message}\n")


access_log = logging.getLogger("tornado.access")


SECRET_ARGUMENTS = {"code", "state", "token", "_xsrf"}  # masked in the access log


def masked_uri(uri: str) -> str:
    """``uri`` with the values of OAuth's ``code``/``state`` (and any token) hidden."""
    path, sep, query = uri.partition("?")
    if not sep:
        return uri
    pairs = parse_qsl(query, keep_blank_values=True)
    return (
        path
        + "?"
        + urlencode([(k, "[secret]" if k.lower() in SECRET_ARGUMENTS else v) for k, v in pairs])
    )


def log_request(handler: web.RequestHandler) -> None:
    """Tornado's access log, with the hub side's routine internal calls at DEBUG
    (the deliverer reports every few seconds) and no OAuth code or state."""
    status = handler.get_status()
    internal = "/api/internal/" in handler.request.path
    if status < 400:
        level = logging.DEBUG if internal else logging.INFO
    else:
        level = logging.WARNING if status < 500 else logging.ERROR
    ms = 1000.0 * handler.request.request_time()
    request = handler.request
    summary = f"{request.method} {masked_uri(request.uri or '')} ({request.remote_ip})"
    access_log.log(level, "%d %s %.2fms", status, summary, ms)


def make_server(app: web.Application) -> HTTPServer:
    """The HTTP server of ``app``: bodies beyond ``HARD_MAX_BODY`` are not even read
    (the handlers answer 413 from ``MAX_BODY`` on)."""
    return HTTPServer(app, xheaders=True, max_body_size=HARD_MAX_BODY)
