"""The data service: a tornado application on the shared kit, managed by the hub.

Run as ``python -m labspace.services.data`` (``kit.run.run_service``: it answers
503 at once while it starts, stops within 2 s of SIGTERM, and keeps its cookie
secret under ``data_dir/secrets``). ``LABSPACE_DATA_CONFIG``
(``ServiceContext.config``, built by ``config.service_environment``) holds
``db_url_file`` (a 0600 file holding the database URL; ``db_url`` itself is read
too, for tests), ``data_dir``, ``base_url``, ``backend`` (local, docker or
kubernetes: where datasets appear), ``roots`` (host datasets lie under one of
them), ``datasets`` (data.datasets of labspace.yaml, without credentials) and
``credentials_file`` (a 0600 file the hub wrote with the credentials the
settings name, or ""). ``start(ctx)`` migrates the database and seeds the
settings on the database's threads, then serves (host datasets without a size
are measured in the background: ``measure``).
"""

from __future__ import annotations

import asyncio
import logging

from labspace.services.kit import metrics as kit_metrics
from labspace.services.kit import web as kit
from labspace.services.kit.db import Database
from labspace.services.kit.run import ServiceContext, Started

from . import handlers as h
from . import internal, pages
from .crypto import Vault
from .holders import Holders
from .measure import Measurer
from .metrics import DataMetrics
from .seed import read_credentials, seed
from .store import MIGRATIONS, DataStore

log = logging.getLogger("labspace.data")
BACKENDS = ("local", "docker", "kubernetes")


def make_app(
    ctx: ServiceContext, store: DataStore, holders: Holders, measurer: Measurer, hub_auth=None
):
    prefix = ctx.prefix
    routes = [
        *pages.routes(prefix),
        *h.routes(prefix),
        *internal.routes(prefix),
        *kit_metrics.routes(prefix),
        (prefix + "api/.*", h.NotFoundHandler),
    ]
    return kit.make_app(
        ctx,
        routes,
        hub_auth=hub_auth,
        store=store,
        holders=holders,
        measurer=measurer,
        metrics=DataMetrics(store.db),
        data_backend=store.backend,
        scope_implies=h.SCOPE_IMPLIES,
    )


def backend_of(config: dict) -> str:
    backend = config.get("backend") or "local"
    if backend not in BACKENDS:
        raise SystemExit(f"LABSPACE_DATA_CONFIG backend {backend!r}: one of {', '.join(BACKENDS)}")
    return backend


async def start(ctx: ServiceContext) -> Started:
    """The service's factory (``kit.run``): migrate, seed, serve."""
    config = ctx.config
    if ctx.data_dir is None:
        raise SystemExit("LABSPACE_DATA_CONFIG names no data_dir (the credentials key lives there)")
    loop = asyncio.get_running_loop()
    db = Database(ctx.db_url, MIGRATIONS, name="data")
    vault = await loop.run_in_executor(db.pool, Vault.for_data_dir, ctx.data_dir)
    store = DataStore(db, vault, list(config.get("roots") or []), backend_of(config))
    await loop.run_in_executor(db.pool, db.upgrade)
    credentials = await loop.run_in_executor(
        db.pool, read_credentials, config.get("credentials_file") or ""
    )
    # no "datasets" key at all (not the same as an empty list): leave them alone
    await loop.run_in_executor(db.pool, seed, store, config.get("datasets"), credentials)
    del credentials
    holders = Holders(store, ctx.hub(timeout=10))
    measurer = Measurer(db)
    measurer.soon()  # host datasets given without a size, in the background

    async def stop() -> None:
        await measurer.stop()
        await loop.run_in_executor(None, db.close)

    return Started(make_app(ctx, store, holders, measurer), stop)
