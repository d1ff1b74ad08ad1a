"""The service's background work: the charger and the reconciler.

- charger (every ``charge_interval`` s): charges open sessions to now, renews
  monthly allowances, and stops through the hub API the servers whose budget has
  been exhausted for longer than ``grace_period`` (each stop logged with its
  reason);
- reconciler (same pace): lists the hub's live servers
  (``GET /hub/api/users?state=active``, paged) and closes the sessions whose
  server is gone, at the last time it was seen running (``closed_by:
  reconciler``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

from labspace.services.kit.hub import HubClient

from . import charger
from .clock import now
from .pricing import iso, parse_time

log = logging.getLogger("labspace.accounting")
OUTBOX_FRESH = 15.0  # seconds; the deliverer reports every <= 5 s


class Hub(HubClient):
    """The hub API as accounting uses it: the kit's client (retries, paging)
    plus the two calls the loops make."""

    def active_users(self) -> AsyncIterator[dict[str, Any]]:
        """Users with live servers, page by page."""
        return self.paged("users", state="active")

    async def stop_server(self, user: str, server: str) -> int:
        path = f"users/{quote(user, safe='')}/server" + (
            f"s/{quote(server, safe='')}" if server else ""
        )
        status, _ = await self.request("DELETE", path)
        return status


class Loops:
    """The charger and reconciler tasks of one service."""

    def __init__(self, service):
        # service: the ``service.Service`` these loops work for (``.db``, ``.hub``, ...)
        self.service = service
        self.tasks: list[asyncio.Task] = []

    def start(self) -> None:
        self.tasks = [asyncio.ensure_future(self._every(self.tick))]

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _every(self, fn) -> None:
        interval = self.service.policy.charge_interval
        while True:
            try:
                await fn()
            except Exception:
                log.exception("Accounting loop failed; next try in %ss", interval)
            await asyncio.sleep(interval)

    async def tick(self) -> None:
        """One round: reconcile first (so gone servers are not charged), then charge."""
        if self.service.hub is not None:
            try:
                await self.reconcile()
            except Exception as e:  # the hub may be restarting: charge anyway
                self.service.metrics.hub_errors.inc()
                log.warning("Reconcile skipped: %s", e)
        await self.charge()

    async def charge(self) -> list[dict]:
        svc = self.service
        stops = await svc.db.run(charger.charge_all, svc.policy, now())
        svc.metrics.charges.inc()
        for stop in stops:
            await self.stop_server(stop)
        return stops

    async def stop_server(self, stop: dict) -> None:
        hub = self.service.hub
        log.warning("Stopping %s's server %r: %s", stop["user"], stop["server"], stop["reason"])
        self.service.metrics.stops.inc()
        if hub is None:
            return
        try:
            status = await hub.stop_server(stop["user"], stop["server"])
        except Exception as e:
            log.error("Could not stop %s (%s); retrying in a few minutes", stop["key"], e)
            return
        if status not in (202, 204, 400, 404):
            log.error("The hub answered %s to stopping %s", status, stop["key"])

    def outbox_drained(self, at, fresh: float = OUTBOX_FRESH) -> bool:
        """The deliverer's last report (recent) said the hub's outbox is empty:
        any stop event is delivered, so a missing server really is gone."""
        report = self.service.outbox
        if report.get("depth") != 0 or not report.get("reported_at"):
            return False
        age = (at - parse_time(report["reported_at"])).total_seconds()
        return age <= fresh

    async def reconcile(self) -> list[str]:
        svc = self.service
        fetched_at = now()
        active: dict[tuple[str, str], str | None] = {}

        async for user in svc.hub.active_users():  # the kit retries an unreachable hub
            for name, server in (user.get("servers") or {}).items():
                active[(user["name"], name)] = server.get("started")
        drained = self.outbox_drained(fetched_at)
        closed = await svc.db.run(
            charger.mark_seen, active, fetched_at, svc.policy, may_close=drained
        )
        if not drained:
            log.debug("Reconcile: hub events may still be in the outbox; closing nothing")
        for key in closed:
            log.warning("Closed %s: its server is gone (reconciler, %s)", key, iso(fetched_at))
        return closed
