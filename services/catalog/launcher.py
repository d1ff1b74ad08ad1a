"""The launch flow: catalog app -> hub API.

- proxied: start the user's default workspace if it is not running (no options:
  the default profile), then the app is at ``/user/<name>/<id>/``;
- standalone: start the named server ``<id>`` with user_options
  ``{"app": id, "version": v}`` (plus ``profile`` when the app names one).

A launch row records the version; a follower task reads the start's progress
stream and keeps the row's state and last message, so a failure can be shown.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import quote

from .hubapi import Hub, HubError
from .metrics import CatalogMetrics
from .store import FINAL, Catalog, CatalogError

log = logging.getLogger("labspace.catalog")
FOLLOW_TIMEOUT = 600


def app_url(base_url: str, user: str, app_id: str, kind: str) -> str:
    """Where the browser opens a launched app."""
    name = quote(user, safe="")
    if kind == "standalone":
        return f"{base_url}user/{name}/{app_id}/{app_id}/"
    return f"{base_url}user/{name}/{app_id}/"


def live_state(server: dict[str, Any] | None) -> str:
    if not server:
        return "stopped"
    if server.get("ready"):
        return "running"
    if server.get("pending") == "stop":
        return "stopping"
    return "starting"


class Launcher:
    def __init__(self, catalog: Catalog, hub: Hub, base_url: str = "/", metrics=None):
        self.catalog = catalog
        self.hub = hub
        self.base_url = base_url
        self.metrics = metrics or CatalogMetrics(catalog.db)
        self.tasks: set[asyncio.Task] = set()
        self._kinds: dict[str, str] = {}  # app id -> kind, as last launched

    async def launch(self, user: str, groups: set[str], app_id: str, version: str | None):
        try:
            return await self._launch(user, groups, app_id, version)
        except CatalogError as e:
            self.metrics.launched("failed" if e.status >= 500 else "refused", self._kind(app_id))
            raise

    def _kind(self, app_id: str) -> str:
        return self._kinds.get(app_id, "other")

    async def _launch(self, user: str, groups: set[str], app_id: str, version: str | None):
        app = await self.catalog.get(app_id, groups)
        chosen = self.catalog.version(app, version)
        defn = chosen.definition
        self._kinds[app_id] = defn["kind"]
        if defn["kind"] == "proxied":
            if chosen.version != app.current.version:
                raise CatalogError(
                    400,
                    f"{app_id} runs in your workspace at its current version "
                    f"{app.current.version}; only standalone apps run older versions",
                )
            server_name, options = "", {}
        else:
            server_name = app_id
            options = {"app": app_id, "version": chosen.version}
            if defn["launch"].get("profile"):
                options["profile"] = defn["launch"]["profile"]
        existing = await self.hub.server(user, server_name)
        if existing is not None and defn["kind"] == "standalone":
            running = (existing.get("user_options") or {}).get("version")
            if running and running != chosen.version:
                raise CatalogError(
                    409,
                    f"{app_id} {running} is running already; stop it to launch {chosen.version}",
                )
        launch = await self.catalog.add_launch(user, defn, server_name)
        if existing is None:
            try:
                await self.hub.start(user, server_name, options)
            except HubError as e:
                await self.catalog.set_launch(launch["id"], "failed", e.message)
                raise CatalogError(e.status if 400 <= e.status < 500 else 502, e.message) from e
            self._follow(launch["id"], user, server_name)
            self.metrics.launched("launched", defn["kind"])
            log.info("Launching %s %s for %s", app_id, chosen.version, user)
        else:
            state = live_state(existing)
            await self.catalog.set_launch(launch["id"], state)
            if state == "starting":
                self._follow(launch["id"], user, server_name)
        return self.with_url(await self.catalog.launch(launch["id"]))

    def with_url(self, launch: dict[str, Any] | None) -> dict[str, Any] | None:
        """The launch with the URL that opens its app."""
        if launch is not None:
            launch["url"] = app_url(self.base_url, launch["user"], launch["app"], launch["kind"])
        return launch

    def _follow(self, launch_id: int, user: str, server: str) -> None:
        task = asyncio.ensure_future(self.follow(launch_id, user, server))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def follow(self, launch_id: int, user: str, server: str) -> None:
        """Record the start's progress messages, in order; the end state from the hub."""
        events: asyncio.Queue = asyncio.Queue()
        reading = asyncio.ensure_future(
            self.hub.progress(user, server, events.put_nowait, FOLLOW_TIMEOUT)
        )
        reading.add_done_callback(lambda _: events.put_nowait(None))
        failed = False
        try:
            while (event := await events.get()) is not None:
                message = str(event.get("message") or "")
                if event.get("failed"):
                    failed = True
                    self.metrics.launched("failed", "standalone" if server else "proxied")
                    message = message or "The server failed to start"
                    await self.catalog.set_launch(launch_id, "failed", message)
                elif message:
                    state = "running" if event.get("ready") else "starting"
                    await self.catalog.set_launch(launch_id, state, message)
        finally:
            reading.cancel()  # a no-op once it ended; else (cancelled) it ends with us
        try:
            reading.result()
        except HubError as e:
            log.debug("Progress of %s/%s: %s", user, server, e.message)
        if not failed:
            await self.refresh(launch_id)

    async def stop_following(self) -> None:
        """At the service's stop: the followers end (their launches keep their state)."""
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def refresh(self, launch_id: int) -> dict[str, Any] | None:
        """The launch with its state as the hub sees it now."""
        launch = await self.catalog.launch(launch_id)
        if launch is None or launch["state"] in FINAL:
            return self.with_url(launch)
        server = await self.hub.server(launch["user"], launch["server_name"])
        state = live_state(server)
        if state == "stopped" and launch["state"] == "starting":
            message = launch["message"] or "The server stopped before it was ready"
            await self.catalog.set_launch(launch_id, "failed", f"Start failed: {message}")
        elif state in ("running", "starting", "stopped"):
            await self.catalog.set_launch(launch_id, state)
        return self.with_url(await self.catalog.launch(launch_id))

    async def stop(self, launch: dict[str, Any]) -> dict[str, Any]:
        """Standalone: stop the named server; proxied: stop the app in the workspace."""
        user, server = launch["user"], launch["server_name"]
        if launch["kind"] == "standalone":
            try:
                await self.hub.stop(user, server)
            except HubError as e:
                if e.status != 404 and "not running" not in e.message:
                    raise CatalogError(e.status, e.message) from e
        elif ((await self.hub.server(user, server)) or {}).get("ready"):
            # a workspace that is gone or going runs no app: nothing to stop there
            path = f"labspace-apps/api/apps/{launch['app']}/stop"
            try:
                await self.hub.workspace(user, server, "POST", path)
            except HubError as e:
                if e.status not in (404, 424, 503):
                    raise CatalogError(502, f"Stopping {launch['app']} failed: {e.message}") from e
        await self.catalog.set_launch(launch["id"], "stopped", "Stopped")
        return self.with_url(await self.catalog.launch(launch["id"]))

    async def logs(self, launch: dict[str, Any], lines: int) -> list[str]:
        """The app's last log lines from the workspace lifecycle endpoint."""
        path = f"labspace-apps/api/apps/{launch['app']}/logs?lines={lines}"
        server = await self.hub.server(launch["user"], launch["server_name"])
        if not (server or {}).get("ready"):
            where = f"server {launch['server_name']!r}" if launch["server_name"] else "workspace"
            return [f"(no app log: your {where} is not running)"]
        try:
            body = await self.hub.workspace(launch["user"], launch["server_name"], "GET", path)
        except HubError as e:
            return [f"(no log: the workspace answered {e.status}: {e.message})"]
        if isinstance(body, dict):
            body = body.get("lines", body.get("log", ""))
        if isinstance(body, str):
            body = body.splitlines()
        return [str(x) for x in (body or [])][-lines:]
