"""A service's whole ``main()``: ``run_service(name, "module:factory", port)``.

1. Files it writes are its owner's only (``private_umask``); logs carry its name.
2. It binds its port at once and, while it starts, answers 503 (``Retry-After:
   1``) to everything but its own page, which is a "starting" page that reloads
   itself. JupyterHub starts managed services one after the other and asks each
   for that page (any answer but a 5xx will do) before it adds the proxy's
   routes, so a service that imported SQLAlchemy and migrated its database first
   would hold up the whole hub.
3. It imports ``module`` and awaits ``factory(ctx)``: migrations, seeding, the
   application (``Started(app, stop)``). The port then serves that application.
4. SIGTERM or SIGINT (handled even when the parent ignored SIGINT, as a shell
   script or a service wrapper does) stops it: no new connections, ``stop()``
   bounded to ``STOP_GRACE`` seconds, open connections closed; it is gone
   within 2 s (a watchdog thread ends it at ``STOP_DEADLINE`` if something
   blocks the event loop).

``ServiceContext`` is what the hub tells a service: ``LABSPACE_<NAME>_CONFIG``
(JSON; secrets are never in it, only the paths of files holding them) and
JupyterHub's ``JUPYTERHUB_*`` variables.

Only the standard library and tornado are imported here, so step 2 is quick.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import ipaddress
import json
import logging
import os
import secrets
import signal
import sys
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tornado import httputil, web
from tornado.httpserver import HTTPServer

from . import HARD_MAX_BODY

log = logging.getLogger("labspace.kit")
STOP_GRACE = 1.5  # seconds a service's own stop() may take
CLOSE_GRACE = 0.3  # ... and closing its open connections
STOP_DEADLINE = 1.9  # seconds after the signal the process is gone, whatever blocks


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _exit_now(name: str) -> None:
    log.warning("%s service: still stopping %.1f s after the signal; leaving", name, STOP_DEADLINE)
    logging.shutdown()
    os._exit(0)


class ServiceContext:
    """What the hub tells the service ``name`` through its environment."""

    def __init__(self, name: str, environ: dict[str, str] | None = None):
        self.name = name
        self.env = dict(os.environ if environ is None else environ)
        self.key = "LABSPACE_" + name.upper().replace("-", "_")

    @cached_property
    def config(self) -> dict[str, Any]:
        text = self.env.get(self.key + "_CONFIG") or "{}"
        try:
            value = json.loads(text)
        except ValueError:
            raise SystemExit(f"{self.key}_CONFIG is not JSON (the hub sets it)") from None
        if not isinstance(value, dict):
            raise SystemExit(f"{self.key}_CONFIG must be a JSON object (the hub sets it)")
        return value

    @property
    def data_dir(self) -> Path | None:
        value = self.config.get("data_dir")
        return Path(value) if value else None

    def secret(self, key: str) -> str:
        """The secret kept in the file named by ``config["<key>_file"]``; "" when
        the config names none."""
        path = self.config.get(f"{key}_file")
        if not path:
            return ""
        try:
            return Path(path).read_text().strip()
        except OSError as e:
            raise SystemExit(f"{path}: cannot read the {self.name} {key}: {e.strerror}") from None

    @cached_property
    def db_url(self) -> str:
        """The database URL: from its file, else ``config["db_url"]``, else
        SQLite ``<data_dir>/<name>.sqlite``."""
        from labspace.rules import SettingValueError, database_url

        url = self.secret("db_url") or self.config.get("db_url") or ""
        if not url and self.data_dir is None:
            raise SystemExit(f"{self.key}_CONFIG names no database and no data_dir")
        sqlite = (self.data_dir or Path()) / f"{self.name}.sqlite"
        try:
            return database_url(url, sqlite, key=f"{self.name}.db_url")
        except SettingValueError as e:
            raise SystemExit(str(e)) from None

    @property
    def api_token(self) -> str:
        return self.env.get("JUPYTERHUB_API_TOKEN", "")

    @property
    def api_url(self) -> str:
        """The hub's API: ``config["hub_api_url"]`` (the hub on this machine, when
        JupyterHub's URL names the hub's Service), else ``JUPYTERHUB_API_URL``."""
        given = self.config.get("hub_api_url") or ""
        return given or self.env.get("JUPYTERHUB_API_URL", "http://127.0.0.1:8081/hub/api")

    @property
    def url(self) -> str:
        return self.env.get("JUPYTERHUB_SERVICE_URL", "")

    @property
    def bind_ip(self) -> str:
        """The address to listen on: ``config["bind_ip"]`` (the hub's
        ``hub.hub_ip``), else the host of the service's URL when it is an IP
        address, else loopback. Not the URL's host name: on Kubernetes that is
        the hub's Service, which names no address of this pod."""
        given = self.config.get("bind_ip") or ""
        if given:
            return given
        host = urlsplit(self.url).hostname or ""
        return host if _is_ip(host) else "127.0.0.1"

    @property
    def prefix(self) -> str:
        return self.env.get("JUPYTERHUB_SERVICE_PREFIX", f"/services/{self.name}/")

    @property
    def base_url(self) -> str:
        return self.env.get("JUPYTERHUB_BASE_URL", "/")

    @property
    def hub_prefix(self) -> str:
        return self.base_url.rstrip("/") + "/hub/"

    @cached_property
    def nav(self) -> list[dict[str, Any]]:
        """The hub's links of every service (``LABSPACE_NAV``, set by the hub)."""
        try:
            links = json.loads(self.env.get("LABSPACE_NAV") or "[]")
        except ValueError:
            return []
        return links if isinstance(links, list) else []

    def cookie_secret(self) -> bytes:
        """``JUPYTERHUB_COOKIE_SECRET``, else one kept in
        ``data_dir/secrets/<name>-cookie-secret`` (0600), so a restart of the
        service keeps everyone signed in; random only without a data_dir."""
        given = self.env.get("JUPYTERHUB_COOKIE_SECRET", "")
        if given:
            return given.encode()
        if self.data_dir is None:
            return secrets.token_bytes(32)
        from labspace.state import ensure_secret

        return ensure_secret(self.data_dir / "secrets" / f"{self.name}-cookie-secret").encode()

    def hub_auth(self, cache_max_age: int = 10):
        """The service's one ``HubOAuth`` (it keeps each login's OAuth state)."""
        from jupyterhub.services.auth import HubOAuth

        return HubOAuth(api_token=self.api_token, api_url=self.api_url, cache_max_age=cache_max_age)

    def hub(self, timeout: float = 10.0):
        """A ``HubClient`` for the hub API with the service's token."""
        from .hub import HubClient

        return HubClient(self.api_url, self.api_token, timeout=timeout)


@dataclass
class Started:
    """What a service's factory gives back: its application, and what to do at
    stop (an async callable: finish background work, close the database)."""

    app: web.Application
    stop: Callable[[], Awaitable[None]] | None = None


class Starting(web.RequestHandler):
    """Every request while the service starts. The service's own page answers
    200 with a page that reloads itself: JupyterHub asks exactly that URL to see
    whether a service is up, takes any 5xx for "not yet", and holds the proxy's
    routes (the whole hub) until it gets something else. Everything else, the
    API and the hub side's internal calls included, is a 503 JSON error."""

    def prepare(self):
        name = self.settings["service_name"]
        message = f"The {name} service is starting; try again in a moment"
        self.set_header("Retry-After", "1")
        self.set_header("Cache-Control", "no-store")
        if self.request.method in ("GET", "HEAD") and self.request.path == self.settings["root"]:
            self.set_header("Refresh", "2")
            self.set_header("Content-Type", "text/html; charset=utf-8")
            self.finish(f"<!doctype html><title>{name}</title><p>{message}.</p>")
            return
        self.set_status(503)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps({"status": 503, "message": message}))


class Switch(httputil.HTTPServerConnectionDelegate):
    """The listener's application, swapped once the service has started."""

    def __init__(self, target: httputil.HTTPServerConnectionDelegate):
        self.target = target

    def start_request(self, server_conn, request_conn):
        return self.target.start_request(server_conn, request_conn)

    def on_close(self, server_conn):
        self.target.on_close(server_conn)


def load(factory: str) -> Callable[[ServiceContext], Awaitable[Started]]:
    module, _, name = factory.partition(":")
    return getattr(importlib.import_module(module), name)


def _ignore_more_stops(loop: asyncio.AbstractEventLoop) -> None:
    """Once stopping, further SIGTERM/SIGINT are ignored (the watchdog bounds the
    stop). A stop often brings two, the launcher's and the hub's; one landing
    while ``asyncio.run`` closes the loop, after its self-pipe and before its
    handlers, printed "Exception ignored ... Bad file descriptor"."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.remove_signal_handler(sig)
        signal.signal(sig, signal.SIG_IGN)


async def serve(ctx: ServiceContext, factory: str, default_port: int) -> int:
    """Listen at once, start the service, serve until a stop signal; the exit status."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    url = urlsplit(ctx.url or f"http://127.0.0.1:{default_port}")
    starting_app = web.Application([(r".*", Starting)], service_name=ctx.name, root=ctx.prefix)
    switch = Switch(starting_app)
    server = HTTPServer(switch, xheaders=True, max_body_size=HARD_MAX_BODY)
    server.listen(url.port or default_port, ctx.bind_ip)
    log.info("%s service on %s:%s: starting", ctx.name, ctx.bind_ip, url.port or default_port)
    from labspace.state import private_umask  # (imports the settings: after listening)

    private_umask()  # what it writes is the owner's only
    starting = asyncio.ensure_future(load(factory)(ctx))
    stop_wait = asyncio.ensure_future(stopping.wait())
    await asyncio.wait([starting, stop_wait], return_when=asyncio.FIRST_COMPLETED)
    if not starting.done():
        _ignore_more_stops(loop)
        starting.cancel()
        server.stop()
        log.info("%s service stopped while starting", ctx.name)
        return 0
    stop_wait.cancel()
    if starting.exception() is not None:
        log.error("%s service could not start", ctx.name, exc_info=starting.exception())
        server.stop()
        return 1
    started = starting.result()
    switch.target = started.app
    log.info("%s service ready (prefix %s)", ctx.name, ctx.prefix)
    await stopping.wait()
    _ignore_more_stops(loop)
    log.info("Stopping the %s service", ctx.name)
    # a stop() that blocks the loop (a query running on) cannot be timed out by
    # wait_for: a watchdog thread ends the process at the deadline
    watchdog = threading.Timer(STOP_DEADLINE, _exit_now, (ctx.name,))
    watchdog.daemon = True
    watchdog.start()
    server.stop()
    if started.stop is not None:
        try:
            await asyncio.wait_for(started.stop(), STOP_GRACE)
        except TimeoutError:
            log.warning("%s service: stop took over %.1f s; leaving", ctx.name, STOP_GRACE)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(server.close_all_connections(), CLOSE_GRACE)
    return 0


def run_service(name: str, factory: str, default_port: int) -> None:
    """The ``main()`` of the service ``name`` (see the module's docstring)."""
    logging.basicConfig(
        level=logging.INFO, format=f"[%(levelname)1.1s %(asctime)s {name}] %(message)s"
    )
    from .health import install  # its last error line, for the operations page

    install()
    status = asyncio.run(serve(ServiceContext(name), factory, default_port))
    # Everything is stopped and closed by now (the service's stop() is the place
    # for that). Python's own teardown of JupyterHub, SQLAlchemy and friends takes
    # 0.5-1 s more, which would push the stop past 2 s on a busy machine.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
