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

LOGGER = "JupyterHub"
OWN_HANDLERS = "labspace."  # the module prefix of Labspace's own page handlers


class LabspaceHub(JupyterHub):
    """JupyterHub whose first round of service starts runs concurrently."""

    _first_starts: dict[str, asyncio.Task] | None = None

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
