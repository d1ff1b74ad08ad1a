"""The handlers every service builds on, and its tornado application.

- ``ServiceHandler``: a page or API handler authenticated by the hub
  (``HubOAuth``: cookie or ``Authorization: token``), authorised by scopes
  (``need(scope)``), with one error shape: ``{"status", "message"}`` on API
  paths, ``error_page`` elsewhere;
- ``APIHandler``: JSON only, for signed-in callers;
- ``InternalHandler``: the service's hub side (spawner hooks in the hub
  process), authenticated by the service's own hub token;
- ``OAuthCallbackHandler``, ``NotFoundHandler``, ``log_request`` (the access
  log, with OAuth's ``code`` and ``state`` masked) and ``make_app``.

Every request is checked before its handler runs: a body over ``MAX_BODY`` is a
413 (the server does not even read one over ``HARD_MAX_BODY``), a NUL in the
path a 400. The caller is identified in ``prepare`` without blocking the loop:
HubAuth's synchronous ``get_current_user`` waits on its one-thread pool, and
called from the XSRF check of a request with a bogus token and a cookie it
would wait on itself for good.
"""

from __future__ import annotations

import hmac
import html
import json
import logging
import math
from datetime import date, datetime
from decimal import Decimal
from http.client import responses
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

from jupyterhub.services.auth import (
    HubOAuthCallbackHandler,
    HubOAuthenticated,
    UserNotAllowed,
)
from tornado import web
from tornado.httpserver import HTTPServer

from . import HARD_MAX_BODY, MAX_BODY
from .db import DatabaseBusy

if TYPE_CHECKING:
    from .run import ServiceContext

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
SECRET_ARGUMENTS = {"code", "state", "token", "_xsrf"}  # masked in the access log
access_log = logging.getLogger("tornado.access")


def json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"not JSON: {type(value).__name__}")


def has_nul(value: Any) -> bool:
    """Whether a NUL character hides in a JSON value (PostgreSQL refuses them)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(has_nul(k) or has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(has_nul(v) for v in value)
    return False


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is not a finite number")
    return value


def parse_json(body: bytes | str, finite: bool = True) -> Any:
    """A JSON value, or a 400: no NUL characters, and (``finite``) no NaN or
    infinities (a service that checks its numbers key by key, to name the key
    in its message, passes ``finite=False``)."""
    strict = {"parse_constant": _no_constant, "parse_float": _finite} if finite else {}
    try:
        value = json.loads(body or b"{}", **strict)
    except ValueError:
        raise web.HTTPError(400, "The body is not valid JSON") from None
    if has_nul(value):
        raise web.HTTPError(400, "The body must not contain NUL characters (\\u0000)")
    return value


def masked_uri(uri: str) -> str:
    """``uri`` with the values of OAuth's ``code``/``state`` (and any token)
    hidden; every other pair stays as it was sent."""
    path, sep, query = uri.partition("?")
    if not sep:
        return uri
    pairs = []
    for pair in query.split("&"):
        name, eq, _ = pair.partition("=")
        secret = eq and unquote_plus(name).lower() in SECRET_ARGUMENTS
        pairs.append(f"{name}=[secret]" if secret else pair)
    return f"{path}?{'&'.join(pairs)}"


def request_summary(request) -> str:
    return f"{request.method} {masked_uri(request.uri or '')} ({request.remote_ip})"


def log_request(handler: web.RequestHandler) -> None:
    """Tornado's access log without secrets; the hub side's routine internal
    calls at DEBUG."""
    status = handler.get_status()
    if status < 400:
        internal = "/api/internal/" in handler.request.path
        level = logging.DEBUG if internal else logging.INFO
    else:
        level = logging.WARNING if status < 500 else logging.ERROR
    ms = 1000.0 * handler.request.request_time()
    access_log.log(level, "%d %s %.2fms", status, request_summary(handler.request), ms)


class ErrorShape:
    """One error shape for every handler of every service: a busy database is a
    503, a 405 says what is allowed, HTTPError messages are formatted once, and
    tornado's own log lines about a request never show a secret."""

    def _request_summary(self) -> str:
        return request_summary(self.request)

    def check_request(self) -> None:
        if len(self.request.body or b"") > MAX_BODY:
            raise web.HTTPError(413, f"The body is larger than {MAX_BODY} bytes")
        if "\x00" in "".join(self.path_args or ()):
            raise web.HTTPError(400, "The path must not contain NUL characters")

    def allowed_methods(self) -> list[str]:
        """The methods this handler's class answers (a 405's ``Allow``)."""
        mine, base = type(self), web.RequestHandler
        return [m for m in METHODS if getattr(mine, m.lower()) is not getattr(base, m.lower())]

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
            allowed = ", ".join(self.allowed_methods())
            self.set_header("Allow", allowed)
            return f"{self.request.method} is not allowed here (allowed: {allowed})"
        if status_code == 503:
            self.set_header("Retry-After", "1")
        if not isinstance(exc, web.HTTPError):
            if status_code >= 500:
                name = self.settings.get("service_name", "hub")
                return f"Internal error in the {name} service (see its log)"
            return responses.get(status_code, "Error")
        message = exc.log_message or exc.reason or responses.get(status_code, "Error")
        if exc.log_message and exc.args:
            message = message % exc.args
        return message

    def write_json(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps(data, default=json_default))

    finite_numbers = True  # NaN and infinities are "not valid JSON" (see parse_json)

    def json_value(self) -> Any:
        """The body as any JSON value (400 if it is not JSON)."""
        return parse_json(self.request.body, self.finite_numbers)

    def json_body(self) -> dict[str, Any]:
        """The body as a JSON object (400 otherwise)."""
        body = self.json_value()
        if not isinstance(body, dict):
            raise web.HTTPError(400, "The body must be a JSON object")
        return body

    def write_json_error(self, status_code: int, message: str) -> None:
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps({"status": status_code, "message": message}))


class ServiceHandler(ErrorShape, HubOAuthenticated, web.RequestHandler):
    """A page or API handler of a service (see the module's docstring)."""

    signin_message = "Sign in to the hub to use this service"

    @property
    def hub_auth(self):
        return self.settings["hub_auth"]

    @property
    def is_api(self) -> bool:
        return self.request.path.startswith(self.settings["prefix"] + "api/")

    async def prepare(self):
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

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        message = self.error_message(status_code, kwargs)
        if self.is_api or self.request.path.endswith("/metrics"):
            self.write_json_error(status_code, message)
        else:
            self.error_page(status_code, message)

    def error_page(self, status_code: int, message: str) -> None:
        """A short page; services override it to render their own template."""
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(
            f"<!doctype html><title>{status_code}</title><p>{html.escape(message)}</p>"
            f'<p><a href="{html.escape(self.settings["prefix"])}">Back</a></p>'
        )

    # -- who may do what -----------------------------------------------------

    @property
    def user(self) -> dict[str, Any]:
        user = self.current_user
        if not user:
            raise web.HTTPError(403, self.signin_message)
        return user

    @property
    def scopes(self) -> set[str]:
        return set(self.user.get("scopes") or [])

    @property
    def groups(self) -> list[str]:
        return list(self.user.get("groups") or [])

    def can(self, scope: str) -> bool:
        """``scope`` held, or a scope that implies it (the application's
        ``scope_implies``: admin implies read, as the custom scopes declare)."""
        granting = {scope, *self.settings.get("scope_implies", {}).get(scope, ())}
        return bool(self.scopes & granting)

    def need(self, scope: str) -> None:
        if not self.can(scope):
            raise web.HTTPError(403, f"This needs the scope {scope}")


class APIHandler(ServiceHandler):
    """JSON in and out, for signed-in callers only. Every answer comes after the
    whole body is read, so the connection stays usable for the hub's proxy."""

    signin_message = "Not signed in: send a hub token with this service's scopes"

    @property
    def is_api(self) -> bool:
        return True

    def set_default_headers(self):
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")

    async def prepare(self):
        await super().prepare()
        if self.current_user is None:
            raise web.HTTPError(403, self.signin_message)


class InternalHandler(ErrorShape, web.RequestHandler):
    """The hub side's endpoints: ``Authorization: token <the service's own hub
    token>``, or one of ``other_tokens()``. No cookie is read, so no XSRF."""

    def other_tokens(self) -> list[str]:
        return []

    def check_xsrf_cookie(self):
        return

    def prepare(self):
        self.check_request()
        scheme, _, sent = self.request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "token" and sent.strip():
            for token in (self.settings["hub_auth"].api_token, *self.other_tokens()):
                if token and hmac.compare_digest(sent.strip().encode(), token.encode()):
                    return
        name = self.settings.get("service_name", "this")
        raise web.HTTPError(403, f"Internal endpoints need the {name} service's token")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.write_json_error(status_code, self.error_message(status_code, kwargs))


class HealthHandler(InternalHandler):
    """``api/internal/health``: the service's health for the hub (``kit.health``)."""

    async def get(self):
        from .health import report

        name = self.settings.get("service_name", "")
        self.write_json(await report(name, self.settings.get("health_detail")))


class NotFoundHandler(ServiceHandler):
    """Any other path under the prefix: a 404 in the service's error shape."""

    async def prepare(self):
        name = self.settings.get("service_name", "this")
        raise web.HTTPError(404, f"No such page or API path in the {name} service")


async def identify(handler: HubOAuthenticated) -> None:
    """Who sent this request, asked of the hub without blocking the loop; kept
    where HubAuth's ``get_current_user`` looks first."""
    model = await handler.hub_auth.get_user(handler, sync=False)
    try:
        handler._hub_auth_user_cache = handler.check_hub_user(model) if model else None
    except UserNotAllowed:
        handler._hub_auth_user_cache = None


class OAuthCallbackHandler(ErrorShape, HubOAuthCallbackHandler):
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


def make_server(app: web.Application) -> HTTPServer:
    """The HTTP server of ``app``: bodies beyond ``HARD_MAX_BODY`` are not even
    read (the handlers answer 413 from ``MAX_BODY`` on)."""
    return HTTPServer(app, xheaders=True, max_body_size=HARD_MAX_BODY)


def make_app(ctx: ServiceContext, routes: list, **settings: Any) -> web.Application:
    """The service's application: ``routes`` (paths under ``ctx.prefix``), the
    OAuth callback, a 404 in the error shape for any other path, XSRF on, the
    kept cookie secret, the masked access log. ``settings`` add to (or replace)
    the application settings: ``scope_implies``, ``template_path``,
    ``health_detail`` (see ``kit.health``: every service answers
    ``api/internal/health``), ..."""
    hub_auth = settings.pop("hub_auth", None) or ctx.hub_auth()
    return web.Application(
        [  # the kit's first: a service's catch-all under api/internal/ must not hide them
            (ctx.prefix + "api/internal/health", HealthHandler),
            (ctx.prefix + "oauth_callback", OAuthCallbackHandler),
            *routes,
        ],
        **{
            "service_name": ctx.name,
            "hub_auth": hub_auth,
            "prefix": ctx.prefix,
            "hub_prefix": ctx.hub_prefix,
            "base_url": ctx.base_url,
            "nav": ctx.nav,
            "cookie_secret": ctx.cookie_secret(),
            "xsrf_cookies": True,
            "login_url": hub_auth.login_url,
            "log_function": log_request,
            "default_handler_class": NotFoundHandler,
            **settings,
        },
    )
