"""``LabspaceHub``: JupyterHub, with its managed services started side by side.

JupyterHub's ``start()`` starts each service in turn and waits until it
answers before it starts the next (``JupyterHub.start_service``). Labspace runs
three or four managed services, each a Python process that needs a second or
more on a busy machine to answer, so the hub's start-up grew with every service.
This subclass starts them all at the first call and hands each of JupyterHub's
calls the outcome of its own service's start: the same steps, the same checks
(a managed service that does not come up still stops the hub), run together.
Any later call (none in JupyterHub 5) is JupyterHub's own.

Labspace's own hub pages (``labspace.hubpages``: the operations page) are
routed through ``JupyterHub.extra_handlers``, which JupyterHub deprecates in
favour of services: those pages need the hub's own state (its running spawners,
the refused-start record, stopping a server as the admin panel does), which a
service cannot see. So the deprecation warning is kept for anybody else's
handlers and left out for Labspace's own.

The warm pool (``backend.warm_pool``, ``labspace.warm.pool``) is the hub's: it
is made from the spawner class's ``warm_provider`` before JupyterHub starts
(a provider that cannot work here stops the hub with a message naming the
key), filled once the hub is up, kept in the tornado settings where spawners
find it, and drained when the hub shuts down, before JupyterHub's own cleanup.

Configuration written for ``JupyterHub`` applies unchanged (traitlets reads a
class's section for its subclasses too), and it logs as ``JupyterHub``, as the
hub always did: traitlets names an application's logger after its class, and
the hub sides' loggers (``JupyterHub.catalog``, ``JupyterHub.data``...) are
children of that one, so their lines reach the hub's log in its format.
"""

from __future__ import annotations

import asyncio
import logging

from jupyterhub.app import JupyterHub
from traitlets import default, observe
from traitlets.utils.importstring import import_item

from labspace.warm.pool import POOL_SETTING, WarmPool

LOGGER = "JupyterHub"
OWN_HANDLERS = "labspace."  # the module prefix of Labspace's own page handlers


class LabspaceHub(JupyterHub):
    """JupyterHub whose first round of service starts runs concurrently."""

    _first_starts: dict[str, asyncio.Task] | None = None
    warm_pool: WarmPool | None = None
    _pool_start: asyncio.Task | None = None

    @default("log")
    def _log_default(self):
        log = logging.getLogger(LOGGER)
        log.propagate = False
        return log

    @observe("extra_handlers")
    def _extra_handlers_changed(self, change):
        """JupyterHub's deprecation warning, for handlers that are not Labspace's."""
        foreign = [
            h for h in change.new if not getattr(h[1], "__module__", "").startswith(OWN_HANDLERS)
        ]
        if foreign:
            self.log.warning(
                "JupyterHub.extra_handlers is deprecated in JupyterHub 3.1."
                " Please use JupyterHub services to register additional HTTP endpoints."
            )

    def get_default_logging_config(self):
        config = super().get_default_logging_config()
        loggers = config.get("loggers", {})
        if type(self).__name__ in loggers:
            loggers[LOGGER] = loggers.pop(type(self).__name__)
        return config

    async def start_service(self, service_name, service, ssl_context=None):
        first = self._first_starts
        if first is None:
            first = self._first_starts = {
                name: asyncio.ensure_future(
                    super(LabspaceHub, self).start_service(name, s, ssl_context)
                )
                for name, s in self._service_map.items()
            }
        task = first.pop(service_name, None)
        if task is None:
            return await super().start_service(service_name, service, ssl_context)
        return await task

    # -- the warm pool -------------------------------------------------------

    def _spawner_setting(self, name: str, fallback):
        section = self.config.get("LabspaceSpawnerMixin") or {}
        value = section.get(name)
        return fallback if value is None else value

    def make_warm_pool(self) -> WarmPool | None:
        """The pool ``backend.warm_pool`` asks for, or None (off, or a backend
        without one). Raises ValueError naming the setting when it cannot work."""
        warm = self._spawner_setting("warm_pool", {})
        make = getattr(self.spawner_class, "warm_provider", None)
        if not warm.get("enabled") or make is None:
            return None
        provider = make(self)
        if provider is None:
            return None
        hooks = [
            import_item(h) if isinstance(h, str) else h
            for h in self._spawner_setting("pool_events", [])
        ]
        return WarmPool(
            provider,
            dict.fromkeys(provider.keys(), warm.get("size", 2)),
            refill_concurrency=warm.get("refill_concurrency", 1),
            max_age=warm.get("max_age", 0),
            hooks=hooks,
            log=self.log,
        )

    async def start(self):
        try:
            self.warm_pool = self.make_warm_pool()
        except ValueError as e:
            self.log.critical("backend.warm_pool: %s", e)
            self.exit(1)
        await super().start()
        if self.warm_pool is not None:
            # the spawners' settings (User.settings) and the pages' (the
            # tornado application's copy) both find it
            self.tornado_settings[POOL_SETTING] = self.warm_pool
            self.tornado_application.settings[POOL_SETTING] = self.warm_pool
            # filled in the background: the hub answers at once, and a start
            # before the first member is ready is a cold one
            self._pool_start = asyncio.ensure_future(self._fill_pool(self.warm_pool))

    async def _fill_pool(self, pool: WarmPool) -> None:
        try:
            await pool.start()
        except Exception:  # a pool that cannot start leaves every start cold
            self.log.exception("The warm pool could not start; every start is cold")

    async def cleanup(self):
        pool, self.warm_pool = self.warm_pool, None
        if pool is not None:
            if self._pool_start is not None and not self._pool_start.done():
                self._pool_start.cancel()
            try:
                await pool.drain()
            except Exception:  # noqa: BLE001 - JupyterHub's cleanup must still run
                self.log.exception("Draining the warm pool failed")
        await super().cleanup()
