"""A service made of the kit alone (``run_service``), for tests/test_service_kit.py.

Its config (``LABSPACE_DEMO_CONFIG``): ``start_delay`` (seconds its factory
takes), ``stop_delay`` (seconds its stop takes), ``blocking_stop`` (seconds its
stop blocks the event loop) and ``stopped_file`` (written
when its stop ran to the end).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from tornado import web

from labspace.services.kit.run import ServiceContext, Started


class Ping(web.RequestHandler):
    def get(self):
        self.write({"ok": True})


async def factory(ctx: ServiceContext) -> Started:
    await asyncio.sleep(float(ctx.config.get("start_delay", 0)))

    async def stop():
        time.sleep(float(ctx.config.get("blocking_stop", 0)))  # blocks the event loop
        await asyncio.sleep(float(ctx.config.get("stop_delay", 0)))
        Path(ctx.config["stopped_file"]).write_text("stopped\n")

    return Started(web.Application([(ctx.prefix + "ping", Ping)]), stop)


if __name__ == "__main__":
    from labspace.services.kit.run import run_service

    run_service("demo", "kit_service:factory", 0)
