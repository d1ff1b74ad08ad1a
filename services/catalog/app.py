"""The catalog service: a tornado application on the shared kit, managed by the hub.

Run as ``python -m labspace.services.catalog`` (``kit.run.run_service``: it
answers 503 at once while it starts, stops within 2 s of SIGTERM, and keeps
its cookie secret under ``data_dir/secrets``). ``LABSPACE_CATALOG_CONFIG``
(``ServiceContext.config``) holds ``db_url_file`` (a 0600 file holding the
database URL, which may carry a password; ``db_url`` itself is read too, for
tests), ``data_dir``, ``apps`` (catalog.apps of labspace.yaml), ``bundled``,
``base_dir`` (icons are relative to it), ``profiles`` (slugs),
``shared_loopback`` (workspaces share 127.0.0.1: apps on a TCP port are
refused), ``proxy_url`` (the proxy on loopback, to reach workspaces) and
``base_url``. ``start(ctx)`` migrates the database and seeds the settings' and
bundled apps on the database's threads, then serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import threading
from pathlib import Path
from typing import Any

from tornado import web

from labspace.extensions.appspec import ID_ROUTE
from labspace.services.kit import metrics as kit_metrics
from labspace.services.kit import web as kit
from labspace.services.kit.db import Database
from labspace.services.kit.run import ServiceContext, Started

from . import apps as appdefs
from . import handlers as h
from . import internal
from .hubapi import Hub
from .iconsafe import clean_icon
from .launcher import Launcher
from .metrics import MetricsHandler
from .store import MIGRATIONS, Catalog

HERE = Path(__file__).resolve().parent
log = logging.getLogger("labspace.catalog")
DEFAULT_NAV = [{"title": "Apps", "url": "/services/catalog/", "admin": False}]


def seed(catalog: Catalog, config: dict[str, Any]) -> None:
    """Bundled and settings-defined apps; a changed definition is a new version."""
    apps = config.get("apps") or []
    if config.get("bundled", True):
        # an app of the settings with a bundled id re-describes that app (groups, title...)
        mine = {a.get("id") for a in apps}
        bundled = [d for d in appdefs.bundled_definitions() if d["id"] not in mine]
        catalog.seed(bundled, "bundled")
    base = Path(config["base_dir"]) if config.get("base_dir") else Path.cwd()
    defs = []
    for raw in apps:
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


class PageHandler(kit.ServiceHandler):
    def page(self, template: str, **kw) -> None:
        base_url = self.settings["base_url"]
        admin = bool(self.user.get("admin")) or self.can(h.ADMIN)
        links = self.settings["nav"] or DEFAULT_NAV
        nav = [
            {"title": x["title"], "url": base_url + x["url"].lstrip("/")}
            for x in links
            if admin or not x.get("admin")
        ]
        self.render(
            template,
            prefix=self.settings["prefix"],
            hub_prefix=self.settings["hub_prefix"],
            base_url=base_url,
            user_name=self.user["name"],
            is_admin=self.can(h.ADMIN),
            nav=nav,
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


def make_app(ctx: ServiceContext, catalog: Catalog, launcher: Launcher, hub_auth=None):
    prefix = ctx.prefix
    api = prefix + "api/"
    routes = [
        (prefix, CatalogPage),
        (prefix + "admin", AdminPage),
        (api + "openapi.json", h.OpenAPIHandler),
        (api + "apps", h.AppsHandler),
        (api + "apps/" + ID_ROUTE, h.AppHandler),
        (api + "apps/" + ID_ROUTE + "/versions", h.VersionsHandler),
        (api + "apps/" + ID_ROUTE + "/(disable|enable)", h.DisableHandler),
        (api + "apps/" + ID_ROUTE + "/launch", h.LaunchAppHandler),
        (api + "launches", h.LaunchesHandler),
        (api + r"launches/(\d+)", h.LaunchHandler),
        (api + r"launches/(\d+)/stop", h.StopHandler),
        (api + r"launches/(\d+)/logs", h.LogsHandler),
        (api + r"launches/(\d+)/shares", h.SharesHandler),
        *internal.routes(prefix),
        *kit_metrics.routes(prefix, MetricsHandler),
        (api + ".*", h.NotFoundHandler),
    ]
    return kit.make_app(
        ctx,
        routes,
        hub_auth=hub_auth,
        catalog=catalog,
        launcher=launcher,
        scope_implies=h.SCOPE_IMPLIES,
        template_path=str(HERE / "templates"),
        static_path=str(HERE / "static"),
        static_url_prefix=prefix + "static/",
    )


def warm_up(loop: asyncio.AbstractEventLoop) -> asyncio.Future:
    """Import jsonschema (an app's check needs it; seconds on a busy machine) on a
    daemon thread while the service already serves: the hub waits for the
    service's start, and a stop does not wait for the import."""
    done = loop.create_future()

    def work() -> None:
        try:
            importlib.import_module("jsonschema")
        finally:
            with contextlib.suppress(RuntimeError):  # the loop is gone: stopped meanwhile
                loop.call_soon_threadsafe(done.set_result, None)

    threading.Thread(target=work, name="catalog-warm-up", daemon=True).start()
    return done


async def start(ctx: ServiceContext) -> Started:
    """The service's factory (``kit.run``): migrate, seed, serve."""
    config = ctx.config
    db = Database(ctx.db_url, MIGRATIONS, name="catalog")
    catalog = Catalog(db, config.get("profiles"), bool(config.get("shared_loopback")))
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(db.pool, db.upgrade)
    await loop.run_in_executor(db.pool, seed, catalog, config)
    catalog.warm = warm_up(loop)
    hub = Hub(ctx.hub(timeout=30), config.get("proxy_url") or "")
    launcher = Launcher(catalog, hub, config.get("base_url") or ctx.base_url)

    async def stop() -> None:
        await launcher.stop_following()
        await loop.run_in_executor(None, db.close)

    return Started(make_app(ctx, catalog, launcher), stop)
