"""Request handlers: the proxy to each app, and the lifecycle API.

- :class:`AppProxyHandler` is jupyter-server-proxy's ``SuperviseAndProxyHandler``
  with the process left to :class:`~labspace.extensions.runtime.AppRuntime`
  (readiness by path and status, log lines) and a failure page that says what
  failed and shows the app's last log lines instead of a bare error.
- ``<base>/labspace-apps/api/apps[/<id>[/stop|/restart|/logs]]``: list, stop,
  restart and read the logs of the apps, authenticated and authorised like the
  rest of the server (cookie + XSRF, or a token).
- :class:`InsideAppHandler`: ``/<app>/`` of an app the Jupyter server serves
  itself (Dashboards: Voilà's server extension) redirects to its own path.
- :class:`ProxyOffHandler`: ``/proxy/...`` where the loopback is shared (see
  apps.py), a 404 that says why.
- :class:`StripCdnLinks`: Voilà's pages without their CDN stylesheet links.
"""

from __future__ import annotations

import html
import json
import re

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.utils import url_path_join as ujoin
from jupyter_server_proxy.handlers import AddSlashHandler, ProxyHandler, SuperviseAndProxyHandler
from tornado import web

from .appspec import NAME_ROUTE
from .runtime import AppRuntime, AppStartError

AUTH_RESOURCE = "servers"  # jupyter-server's permission for server-level actions
MAX_LOG_LINES = 1000
FAILURE_LINES = 30


def refuse_api_clients_without_credentials(handler) -> None:
    """jupyter-server sends a GET without credentials to the login page: right for a
    browser (it asks for HTML); an API client, a script or a websocket gets 403."""
    if handler.current_user:
        return
    websocket = handler.request.headers.get("Upgrade", "").lower() == "websocket"
    if websocket or "text/html" not in handler.request.headers.get("Accept", ""):
        raise web.HTTPError(403, "Authentication required")


class AppAddSlashHandler(AddSlashHandler):
    """``/<app>`` -> ``/<app>/``, with the same answer as the app to a client
    without credentials."""

    async def prepare(self, *args, **kwargs):
        prepared = super().prepare(*args, **kwargs)
        if prepared is not None:
            await prepared
        refuse_api_clients_without_credentials(self)


class AppProxyHandler(SuperviseAndProxyHandler):
    """Proxies one app; starts it on the first request and waits until it is ready."""

    def initialize(self, runtime: AppRuntime, attributes: dict):
        self.runtime = runtime
        self.state = {}
        for key, value in attributes.items():
            setattr(self, key, value)

    @property
    def port(self):
        return self.runtime.port

    @property
    def unix_socket(self):
        return self.runtime.unix_socket

    async def prepare(self, *args, **kwargs):
        """Every request must be authenticated; without credentials a browser is
        sent to sign in, anything else gets 403 (see above)."""
        prepared = super(ProxyHandler, self).prepare(*args, **kwargs)
        if prepared is not None:
            await prepared
        refuse_api_clients_without_credentials(self)
        web.authenticated(lambda handler: None)(self)

    def get_client_uri(self, protocol, host, port, proxied_path):
        # the app listens on 127.0.0.1: no name lookup (in a thread) per request
        if host == "localhost" and not self.runtime.unix_socket:
            host = "127.0.0.1"
        return super().get_client_uri(protocol, host, port, proxied_path)

    def get_request_headers_override(self):
        return self._realize_rendered_template(self.request_headers_override)

    async def ensure_process(self):
        try:
            await self.runtime.ensure_started()
        except AppStartError as e:
            raise web.HTTPError(503, str(e)) from e

    def write_error(self, status_code, **kwargs):
        """A failed start: what failed and the app's last log lines (HTML for a
        browser, JSON for an API client); anything else as jupyter-server does."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if status_code != 503 or not isinstance(exc, web.HTTPError):
            return super().write_error(status_code, **kwargs)
        message = exc.log_message or "The app did not start"
        tail = self.runtime.tail(FAILURE_LINES)
        if "text/html" not in self.request.headers.get("Accept", ""):
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps({"status": 503, "message": message, "log": tail}))
            return
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(
            "<!doctype html><html><head><title>App failed to start</title></head>"
            "<body style='font-family:sans-serif;max-width:60em;margin:2em auto'>"
            f"<h1>{html.escape(self.runtime.config.title)} did not start</h1>"
            f"<p>{html.escape(message)}</p><p>Reload the page to try again. Its last log lines:</p>"
            f"<pre style='background:#f4f4f4;padding:1em;overflow:auto'>"
            f"{html.escape(chr(10).join(tail))}</pre></body></html>"
        )


class InsideAppHandler(JupyterHandler):
    """``/<app>/<rest>`` -> ``/<path><rest>`` (``/<path><home>`` for the app's
    front page) for an app that lives inside the Jupyter server, behind its login;
    old links such as ``/dashboards/voila/render/x.ipynb`` keep working."""

    def initialize(self, path: str, home: str):
        self.inside_path, self.inside_home = path, home

    async def prepare(self, *args, **kwargs):
        prepared = super().prepare(*args, **kwargs)
        if prepared is not None:
            await prepared
        refuse_api_clients_without_credentials(self)

    @web.authenticated
    def get(self, rest: str = ""):
        rest = rest.lstrip("/")
        if rest.startswith(self.inside_path):
            rest = rest[len(self.inside_path) :]
        target = ujoin(self.base_url, self.inside_path, rest or self.inside_home)
        query = self.request.query
        self.redirect(target + (f"?{query}" if query else ""))


class ProxyOffHandler(web.RequestHandler):
    """jupyter-server-proxy's ``/proxy/<port>`` where the loopback is shared: it
    would reach other users' ports, so it is off, and says so."""

    MESSAGE = (
        "/proxy/<port> is off: this workspace shares 127.0.0.1 with other users' "
        "workspaces. Open your apps from the launcher or the catalog instead."
    )

    def prepare(self):
        raise web.HTTPError(404, self.MESSAGE)

    def write_error(self, status_code, **kwargs):
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"status": status_code, "message": self.MESSAGE}))


CDN_LINK = re.compile(rb"<link[^>]+href=\"https://cdn\.jsdelivr\.net/[^\"]*\"[^>]*>\s*")


class StripCdnLinks(web.OutputTransform):
    """Voilà's templates link icon fonts from a CDN; without internet the browser
    waits on them. The pages work without: drop the links from its HTML pages
    (requests under ``prefix``; see :func:`strip_cdn_links_under`)."""

    prefix = "/voila/"

    def __init__(self, request):
        self.active = request.path.startswith(self.prefix)

    def transform_first_chunk(self, status_code, headers, chunk, finishing):
        html_page = headers.get("Content-Type", "").startswith("text/html")
        # a length set before the last chunk cannot be corrected: leave such a page
        self.active = self.active and html_page and (finishing or "Content-Length" not in headers)
        if self.active:
            chunk = CDN_LINK.sub(b"", chunk)
            if "Content-Length" in headers:
                headers["Content-Length"] = str(len(chunk))
        return status_code, headers, chunk

    def transform_chunk(self, chunk, finishing):
        return CDN_LINK.sub(b"", chunk) if self.active else chunk


def strip_cdn_links_under(prefix: str) -> type[StripCdnLinks]:
    return type("StripCdnLinks", (StripCdnLinks,), {"prefix": prefix})


class AppsAPIHandler(APIHandler):
    """Base of the lifecycle API: one JSON error shape, the app registry."""

    auth_resource = AUTH_RESOURCE

    def initialize(self, runtimes: dict[str, AppRuntime]):
        self.runtimes = runtimes

    def runtime(self, app_id: str) -> AppRuntime:
        if app_id not in self.runtimes:
            raise web.HTTPError(404, f"No such app: {app_id}")
        return self.runtimes[app_id]

    def write_error(self, status_code, **kwargs):
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = getattr(exc, "log_message", None) or self._reason
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"status": status_code, "message": message}))


class AppListHandler(AppsAPIHandler):
    @web.authenticated
    @authorized
    def get(self):
        # a page elsewhere on this origin (the catalog at /services/catalog/) cannot read
        # the workspace's _xsrf cookie (its path is the workspace's); it reads the token
        # here and sends it back as X-XSRFToken with POST. Other origins cannot read it.
        self.set_header("X-XSRFToken", self.xsrf_token.decode())
        self.finish(json.dumps([rt.state() for rt in self.runtimes.values()]))


class AppActionHandler(AppsAPIHandler):
    @web.authenticated
    @authorized
    async def post(self, app_id: str, action: str):
        runtime = self.runtime(app_id)
        if action == "stop":
            await runtime.stop()
        else:
            try:
                await runtime.restart()
            except AppStartError as e:
                raise web.HTTPError(503, str(e)) from e
        self.finish(json.dumps(runtime.state()))


class AppLogsHandler(AppsAPIHandler):
    @web.authenticated
    @authorized
    def get(self, app_id: str):
        runtime = self.runtime(app_id)
        try:
            lines = int(self.get_argument("lines", "100"))
        except ValueError as e:
            raise web.HTTPError(400, "lines must be a whole number") from e
        lines = max(0, min(lines, MAX_LOG_LINES))
        self.finish(json.dumps({"id": app_id, "lines": runtime.tail(lines)}))


def api_handlers(base_url: str, runtimes: dict[str, AppRuntime]) -> list[tuple]:
    prefix = ujoin(base_url, "labspace-apps/api/apps")
    kwargs = {"runtimes": runtimes}
    # any app the workspace serves (the operator's may have any name): one that
    # is not served is a JSON 404 "No such app" (AppsAPIHandler.runtime)
    app = NAME_ROUTE
    return [
        (prefix, AppListHandler, kwargs),
        (f"{prefix}/{app}/(stop|restart)", AppActionHandler, kwargs),
        (f"{prefix}/{app}/logs", AppLogsHandler, kwargs),
    ]
