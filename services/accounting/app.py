"""The accounting service: a tornado application authenticated by the hub, run
by the kit (``__main__``: ``run_service("accounting", "...app:factory", 8010)``).

``make_app(ctx, service)`` builds the routes under the service prefix:

- ``api/...``: the REST API (``api.py``), OpenAPI at ``api/openapi.json``;
- ``api/internal/...``: the hub side's endpoints, service token only (``internal.py``);
- ``/``, ``projects``, ``admin``: the pages (``pages.py``); ``metrics``: Prometheus;
- ``oauth_callback`` (the kit's): the hub's OAuth redirect.

The handlers' base is ``web.py``; the read models that the API and the pages
share are ``views.py``. ``factory(ctx)`` is the service's start: migrations,
the settings' prices and this month's allowances, the charger and reconciler;
its stop ends the loops and closes the database.

Environment (besides the hub's ``JUPYTERHUB_*``): ``LABSPACE_ACCOUNTING_CONFIG``
(JSON: the ``accounting`` section, the profiles, ``data_dir``,
``db_url_file`` (the file that keeps the database URL; default: SQLite under
``data_dir``) and ``deliverer_secret_file`` (the deliverer's secret)) and
optionally ``LABSPACE_ACCOUNTING_DB_BUSY_TIMEOUT``
(seconds a write waits for SQLite's lock before the answer is a 503; default 3).
"""

from __future__ import annotations

import asyncio
import logging
import os

from jupyterhub.services.auth import HubOAuth
from tornado import web

from labspace.services.kit import web as kit
from labspace.services.kit.db import BUSY_TIMEOUT
from labspace.services.kit.run import ServiceContext, Started

from . import api, internal, pages, usage
from .clock import now
from .config import scope_implies
from .db import open_database
from .loops import Hub
from .service import Service
from .views import health
from .web import NotFoundHandler

log = logging.getLogger("labspace.accounting")
NAV = [  # when the hub gives no links (LABSPACE_NAV)
    {"title": "My usage", "url": "/services/accounting/", "admin": False},
    {"title": "Projects", "url": "/services/accounting/projects", "admin": False},
    {"title": "Accounting admin", "url": "/services/accounting/admin", "admin": True},
]


def make_app(
    ctx: ServiceContext, service: Service, hub_auth: HubOAuth | None = None
) -> web.Application:
    prefix = ctx.prefix
    routes = [*api.routes(prefix), *internal.routes(prefix), *pages.routes(prefix)]
    return kit.make_app(
        ctx,
        routes,
        service=service,
        hub_auth=hub_auth or ctx.hub_auth(cache_max_age=60),
        nav=ctx.nav or NAV,
        scope_implies=scope_implies(),
        template_path=os.path.join(os.path.dirname(__file__), "templates"),
        default_handler_class=NotFoundHandler,
        health_detail=lambda: health(service),  # the kit's api/internal/health
    )


def prepare(service: Service) -> None:
    """Migrations, then the settings' prices and this month's allowances."""
    service.db.upgrade()
    at = now()
    added = service.db.work(usage.sync_prices, service.policy, at)
    renewed = service.db.work(usage.renew_all, service.policy, at)
    log.info(
        "Database ready (%s): %d price points added, %d allowances granted",
        service.db.dialect,
        added,
        renewed,
    )


async def factory(ctx: ServiceContext) -> Started:
    """The accounting service's start (the kit already answers 503 meanwhile)."""
    busy = float(ctx.env.get("LABSPACE_ACCOUNTING_DB_BUSY_TIMEOUT") or BUSY_TIMEOUT)
    db = open_database(ctx.db_url, busy_timeout=busy)
    service = Service(
        ctx.config,
        db,
        Hub(ctx.api_url, ctx.api_token),
        deliverer_secret=ctx.secret("deliverer_secret"),
    )
    await asyncio.to_thread(prepare, service)
    app = make_app(ctx, service)
    service.loops.start()

    async def stop() -> None:
        await service.loops.stop()
        await asyncio.to_thread(db.close)

    return Started(app, stop)
