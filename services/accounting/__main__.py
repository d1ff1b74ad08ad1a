"""``python -m labspace.services.accounting``: run the service (the hub starts it).

Environment: ``LABSPACE_ACCOUNTING_CONFIG`` (JSON: the ``accounting`` section,
the profiles, ``data_dir``), ``LABSPACE_ACCOUNTING_DB_URL_FILE`` (the file that
keeps the database URL; default: SQLite under ``data_dir``),
``LABSPACE_ACCOUNTING_DELIVERER_SECRET_FILE`` (the deliverer's secret) and the
hub's ``JUPYTERHUB_API_TOKEN``,
``JUPYTERHUB_API_URL``, ``JUPYTERHUB_SERVICE_URL``, ``JUPYTERHUB_SERVICE_PREFIX``;
optionally ``LABSPACE_ACCOUNTING_DB_BUSY_TIMEOUT`` (seconds a write waits for
SQLite's lock before the answer is a 503; default 3).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path
from urllib.parse import urlsplit

from . import usage
from .app import make_app
from .clock import now
from .config import read_secret_file
from .db import BUSY_TIMEOUT, Database
from .loops import HubClient
from .service import Service
from .web import make_server

log = logging.getLogger("labspace.accounting")


def load_config() -> dict:
    text = os.environ.get("LABSPACE_ACCOUNTING_CONFIG")
    if not text:
        sys.exit("LABSPACE_ACCOUNTING_CONFIG is not set (the hub sets it; see config.hub_parts)")
    return json.loads(text)


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


async def serve(config: dict) -> None:
    token = os.environ["JUPYTERHUB_API_TOKEN"]
    db_url = (
        read_secret_file("LABSPACE_ACCOUNTING_DB_URL_FILE")
        or config.get("db_url")
        or f"sqlite:///{Path(config['data_dir']) / 'accounting.sqlite'}"
    )
    busy = float(os.environ.get("LABSPACE_ACCOUNTING_DB_BUSY_TIMEOUT") or BUSY_TIMEOUT)
    service = Service(
        config,
        Database(db_url, busy_timeout=busy),
        token,
        HubClient(os.environ["JUPYTERHUB_API_URL"], token),
        deliverer_secret=read_secret_file("LABSPACE_ACCOUNTING_DELIVERER_SECRET_FILE"),
    )
    await asyncio.to_thread(prepare, service)
    if not os.environ.get("JUPYTERHUB_COOKIE_SECRET") and config.get("data_dir"):
        from labspace.state import ensure_secret

        secret = ensure_secret(Path(config["data_dir"]) / "secrets" / "accounting-cookie-secret")
        os.environ["JUPYTERHUB_COOKIE_SECRET"] = secret
    app = make_app(service)
    url = urlsplit(os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:8010"))
    server = make_server(app)
    server.listen(url.port or 8010, url.hostname or "127.0.0.1")
    log.info("Accounting service on %s (prefix %s)", url.geturl(), app.settings["prefix"])
    service.loops.start()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    log.info("Stopping the accounting service")
    server.stop()
    await service.loops.stop()
    service.db.close()


def main() -> None:
    from labspace.state import private_umask  # what it writes is the owner's only

    private_umask()
    logging.basicConfig(
        level=logging.INFO, format="[%(levelname)1.1s %(asctime)s accounting] %(message)s"
    )
    asyncio.run(serve(load_config()))


if __name__ == "__main__":
    main()
