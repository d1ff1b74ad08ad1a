"""The ``accounting-deliverer`` service: drains the hub's outbox into the
accounting service.

JupyterHub runs it as a managed service (``python -m
labspace.services.accounting.deliver``, no URL). It claims batches of events
from the outbox, posts them to ``api/internal/events`` and deletes them once the
service answered 200; on failure it retries with exponential backoff (0.5 s
doubling to 10 s, with jitter). Every few seconds it reports the outbox depth to
``api/internal/outbox-status``. SIGTERM ends it after the batch in flight.

``LABSPACE_ACCOUNTING_DELIVERER_CONFIG`` (JSON, as every Labspace service is
configured: ``kit.run.ServiceContext``) holds ``outbox`` (the outbox file),
``url`` (the service's root, ending in ``/``), ``data_dir`` and
``secret_file`` (the file that keeps the deliverer's own secret: it may post
events and the outbox status, nothing else; no secret travels in the
environment).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
import sys
from dataclasses import dataclass, field

import httpx

from labspace.services.kit.run import ServiceContext

from .outbox import Outbox

NAME = "accounting-deliverer"

log = logging.getLogger("labspace.accounting.deliver")


@dataclass
class Deliverer:
    outbox: Outbox
    base_url: str
    token: str
    batch: int = 500
    poll: float = 0.5
    status_every: float = 5.0
    timeout: float = 10.0
    max_delay: float = 10.0
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    delay: float = 0.0  # current backoff; 0 while deliveries succeed

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=f"{self.base_url}api/internal/",
            headers={"Authorization": f"token {self.token}"},
            timeout=self.timeout,
        )

    async def run(self) -> None:
        """Deliver until SIGTERM (``stopping`` set). A stop interrupts even a
        request in flight: what it carried stays claimed in the outbox and is
        sent again later (the service drops duplicates by event id)."""
        log.info("Delivering accounting events from %s", self.outbox.path)
        work = asyncio.ensure_future(self._deliver_until_stopped())
        stop = asyncio.ensure_future(self.stopping.wait())
        await asyncio.wait({work, stop}, return_when=asyncio.FIRST_COMPLETED)
        for task in (work, stop):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        log.info("Deliverer stopped")

    async def _deliver_until_stopped(self) -> None:
        async with self.client() as client:
            reported = None
            last_report = 0.0
            loop = asyncio.get_running_loop()
            while not self.stopping.is_set():
                sent = await self.deliver_once(client)
                status = await asyncio.to_thread(self.outbox.status)
                now = loop.time()
                due = status != reported or now - last_report >= self.status_every
                if due and await self.report(client, status):
                    reported, last_report = status, now
                if sent == self.batch and not self.delay:
                    continue  # more waiting: no pause
                pause = self.delay or self.poll
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), pause)

    async def deliver_once(self, client: httpx.AsyncClient) -> int:
        """Send one batch; returns how many events the service took."""
        claimed = await asyncio.to_thread(self.outbox.claim, self.batch, 4 * self.timeout)
        if not claimed:
            return 0
        seqs = [seq for seq, _ in claimed]
        try:
            r = await client.post("events", json={"events": [e for _, e in claimed]})
        except httpx.HTTPError as e:
            return await self._failed(seqs, f"{type(e).__name__}: {e}")
        if r.status_code != 200:
            return await self._failed(seqs, f"HTTP {r.status_code}: {r.text[:200]}")
        await asyncio.to_thread(self.outbox.ack, seqs)
        answer = r.json()
        log.info(
            "Delivered %d events (%s new, %s duplicates)",
            len(seqs),
            answer.get("accepted"),
            answer.get("duplicates"),
        )
        self.delay = 0.0
        return len(seqs)

    async def _failed(self, seqs: list[int], error: str) -> int:
        self.delay = min(self.max_delay, max(0.5, self.delay * 2)) * random.uniform(0.8, 1.2)  # noqa: S311 (jitter)
        log.warning(
            "Delivery of %d events failed (%s); next try in %.1fs", len(seqs), error, self.delay
        )
        await asyncio.to_thread(self.outbox.release, seqs, error, self.delay)
        return 0

    async def report(self, client: httpx.AsyncClient, status: dict) -> bool:
        try:
            r = await client.post("outbox-status", json=status)
        except httpx.HTTPError as e:
            log.debug("Outbox status not reported: %s", e)
            return False
        return r.status_code == 200


def main() -> None:
    from labspace.state import private_umask  # what it writes is the owner's only

    private_umask()
    logging.basicConfig(
        level=logging.INFO,
        format="[%(levelname)1.1s %(asctime)s %(name)s] %(message)s",
        stream=sys.stderr,
    )
    # a line per request every few seconds would drown the hub's log
    logging.getLogger("httpx").setLevel(logging.WARNING)
    ctx = ServiceContext(NAME)
    for key in ("outbox", "url", "secret_file"):
        if not ctx.config.get(key):
            sys.exit(f"{NAME}: {ctx.key}_CONFIG names no {key} (the hub sets it)")
    outbox = Outbox(ctx.config["outbox"])
    base_url = ctx.config["url"]
    token = ctx.secret("secret")
    if not token:
        sys.exit(f"{NAME}: {ctx.config['secret_file']} is empty (the hub writes it)")
    outbox.create()

    async def run() -> None:
        deliverer = Deliverer(outbox, base_url, token)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, deliverer.stopping.set)
        await deliverer.run()

    asyncio.run(run())


if __name__ == "__main__":
    main()
