"""The catalog service: a tornado application managed by the hub.

Run as ``python -m labspace.services.catalog``. The hub passes its usual
``JUPYTERHUB_*`` variables and ``LABSPACE_CATALOG_CONFIG``, a JSON object:
``db_url_file`` (a 0600 file holding the database URL, which may carry a
password; ``db_url`` itself is read too, for tests), ``data_dir`` (the cookie
secret is kept in its ``secrets/``), ``apps`` (catalog.apps of labspace.yaml),
``bundled``, ``base_dir`` (icons are relative to it), ``profiles`` (slugs),
``shared_loopback`` (workspaces share 127.0.0.1: apps on a TCP port are refused),
``proxy_url`` (the proxy on loopback, to reach workspaces) and ``base_url``.
At start it migrates the database, seeds the settings' and bundled apps, and
listens on the port of ``JUPYTERHUB_SERVICE_URL``. Its access log masks the
OAuth ``code`` and ``state``.
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jupyterhub.services.auth import HubOAuth, HubOAuthCallbackHandler
from tornado import web

from . import apps as appdefs
from . import handlers as h
from . import internal
from .hubapi import Hub
from .iconsafe import clean_icon
from .launcher import Launcher
from .store import Catalog

HERE = Path(__file__).resolve().parent
log = logging.getLogger("labspace.catalog")


HARD_BODY_LIMIT = 4 * 1024 * 1024  # the connection is cut beyond (API: 413 beyond 1 MiB)
access_log = logging.getLogger("tornado.access")


@dataclass
class ServiceConfig:
    db_url: str = ""
    db_url_file: str = ""
    data_dir: str = ""
    apps: list[dict[str, Any]] = field(default_factory=list)
    bundled: bool = True
    base_dir: str = ""
    profiles: list[str] | None = None
    shared_loopback: bool = False
    proxy_url: str = ""
    base_url: str = "/"

    @classmethod
    def from_env(cls) -> ServiceConfig:
        config = cls(**json.loads(os.environ.get("LABSPACE_CATALOG_CONFIG") or "{}"))
        if config.db_url_file:
            config.db_url = Path(config.db_url_file).read_text().strip()
        return config

    def cookie_secret(self) -> bytes:
        """Kept in ``data_dir/secrets`` (0600), so a restart keeps every session."""
        if not self.data_dir:
            return os.urandom(32)
        from labspace.state import ensure_secret

        return ensure_secret(Path(self.data_dir) / "secrets" / "catalog-cookie-secret").encode()


def log_request(handler: web.RequestHandler) -> None:
    """Tornado's access line, without secrets from the query."""
    status = handler.get_status()
    level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
    ms = 1000.0 * handler.request.request_time()
    access_log.log(level, "%d %s %.2fms", status, h.request_summary(handler.request), ms)


def seed(catalog: Catalog, config: ServiceConfig) -> None:
    """Bundled and settings-defined apps; a changed definition is a new version."""
    if config.bundled:
        # an app of the settings with a bundled id re-describes that app (groups, title...)
        mine = {a.get("id") for a in config.apps}
        bundled = [d for d in appdefs.bundled_definitions() if d["id"] not in mine]
        catalog.seed(bundled, "bundled")
    base = Path(config.base_dir) if config.base_dir else Path.cwd()
    defs = []
    for raw in config.apps:
        defn = dict(raw)
        try:
            defn["icon"] = clean_icon(appdefs.icon_data(defn.get("icon", ""), base))
        except (OSError, ValueError) as e:
            log.warning("catalog.apps %s: %s; no icon", defn.get("id"), e)
            defn["icon"] = ""
        defs.append(defn)
    changed = catalog.seed(defs, "settings")
    if changed:
        log.info("New versions from the settings: %s", ", ".join(changed))


def nav_links(base_url: str, admin: bool) -> list[dict[str, str]]:
    """The hub's links of every service (``LABSPACE_NAV``, set by the hub)."""
    links = json.loads(os.environ.get("LABSPACE_NAV") or "[]") or [
        {"title": "Apps", "url": "/services/catalog/", "admin": False}
    ]
    return [
        {"title": x["title"], "url": base_url + x["url"].lstrip("/")}
        for x in links
        if admin or not x.get("admin")
    ]


class PageHandler(h.BaseHandler):
    def page(self, template: str, **kw) -> None:
        prefix = self.settings["prefix"]
        admin = bool(self.user.get("admin")) or self.has(h.ADMIN)
        self.render(
            template,
            prefix=prefix,
            hub_prefix=self.settings["hub_prefix"],
            base_url=self.settings["base_url"],
            user_name=self.user["name"],
            is_admin=self.has(h.ADMIN),
            nav=nav_links(self.settings["base_url"], admin),
            here=self.request.path,
            xsrf=self.xsrf_token.decode()
            if isinstance(self.xsrf_token, bytes)
            else self.xsrf_token,
            **kw,
        )


class CatalogPage(PageHandler):
    @web.authenticated
    def get(self):
        self.need(h.READ)
        self.page("catalog.html", page="catalog")


class AdminPage(PageHandler):
    @web.authenticated
    def get(self):
        self.need(h.ADMIN)
        self.page("admin.html", page="admin")


class CallbackHandler(h.MaskedLog, HubOAuthCallbackHandler):
    """The OAuth callback. A code the hub refuses is the caller's mistake (400),
    not the service's (HubAuth says 500); errors are a short page."""

    def initialize(self):
        self.hub_auth = self.settings["hub_auth"]

    async def get(self):
        try:
            await super().get()
        except web.HTTPError as e:
            if e.status_code == 500 and (e.log_message or "").startswith("Failed to check"):
                raise web.HTTPError(
                    400, "The hub did not accept this sign-in: sign in again"
                ) from e
            raise

    def write_error(self, status_code: int, **kwargs):
        exc = kwargs.get("exc_info", (None, None))[1]
        message = getattr(exc, "log_message", None) or self._reason
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(
            f"<!doctype html><title>{status_code}</title><p>{html.escape(message)}</p>"
            f'<p><a href="{html.escape(self.settings["prefix"])}">Back to the catalog</a></p>'
        )


def make_app(config: ServiceConfig, hub_auth: HubOAuth | None = None) -> web.Application:
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/catalog/")
    hub_auth = hub_auth or HubOAuth(cache_max_age=10)
    catalog = Catalog.open(config.db_url, config.profiles, config.shared_loopback)
    seed(catalog, config)
    hub = Hub(hub_auth.api_url, hub_auth.api_token, config.proxy_url)
    launcher = Launcher(catalog, hub, config.base_url)
    api = prefix + "api/"
    routes = [
        (prefix, CatalogPage),
        (prefix + "admin", AdminPage),
        (prefix + "oauth_callback", CallbackHandler),
        (api + "openapi.json", h.OpenAPIHandler),
        (api + "apps", h.AppsHandler),
        (api + r"apps/([a-z0-9-]+)", h.AppHandler),
        (api + r"apps/([a-z0-9-]+)/versions", h.VersionsHandler),
        (api + r"apps/([a-z0-9-]+)/(disable|enable)", h.DisableHandler),
        (api + r"apps/([a-z0-9-]+)/launch", h.LaunchAppHandler),
        (api + "launches", h.LaunchesHandler),
        (api + r"launches/(\d+)", h.LaunchHandler),
        (api + r"launches/(\d+)/stop", h.StopHandler),
        (api + r"launches/(\d+)/logs", h.LogsHandler),
        (api + r"launches/(\d+)/shares", h.SharesHandler),
        *internal.routes(prefix),
        (api + ".*", h.NotFoundHandler),
    ]
    return web.Application(
        routes,
        hub_auth=hub_auth,
        catalog=catalog,
        launcher=launcher,
        prefix=prefix,
        hub_prefix=hub_auth.hub_prefix,
        base_url=config.base_url,
        cookie_secret=config.cookie_secret(),
        xsrf_cookies=True,
        log_function=log_request,
        template_path=str(HERE / "templates"),
        static_path=str(HERE / "static"),
        static_url_prefix=prefix + "static/",
        login_url=hub_auth.login_url,
    )


def main() -> None:
    logging.basicConfig(
        level=logging.INFO, format="[%(levelname)1.1s %(asctime)s catalog] %(message)s"
    )
    config = ServiceConfig.from_env()
    url = urlsplit(os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:8011"))

    async def run():
        app = make_app(config)
        app.listen(
            url.port or 8011,
            address=url.hostname or "127.0.0.1",
            xheaders=True,
            max_body_size=HARD_BODY_LIMIT,
        )
        log.info("Catalog service listening on %s", url.geturl())
        await asyncio.Event().wait()

    asyncio.run(run())
