"""Running workspaces that still hold a grant taken away since they started.

A workspace keeps the mounts and credentials it started with until it stops. So
for each running server (``GET users?state=active`` with the service's hub
token, which also tells each user's groups now) the last ``start`` audit event
says what it got, and the grants now say what the user would get: a dataset
held at a level stronger than the current one (revoked: none) makes the server
a holder. ``stop`` stops such a server through the hub API, and only such a
server: a data admin is not a hub admin.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from labspace.services.kit.hub import HubClient, HubUnreachable

from .store import DataStore, StoreError, Who

LEVELS = ("read", "write")
MAX_SERVERS = 100_000  # bounded: running servers looked at
log = logging.getLogger("labspace.data")


def weaker(now: str | None, held: str) -> bool:
    """Whether ``now`` (None: no grant) is weaker than ``held``."""
    rank = {None: -1, **{lv: i for i, lv in enumerate(LEVELS)}}
    return rank.get(now, -1) < rank.get(held, -1)


def find_holders(
    running: list[dict[str, Any]],
    starts: dict[tuple[str, str], dict[str, Any]],
    levels: dict[str, dict[str, str]],
) -> list[dict[str, Any]]:
    """Pure: ``running`` ({user, server}) against their last ``starts`` and the
    ``levels`` their users hold now; one row per dataset held too strongly."""
    out = []
    for r in running:
        start = starts.get((r["user"], r["server"]))
        if start is None:
            continue
        now_levels = levels.get(r["user"], {})
        for item in start.get("datasets") or []:
            now = now_levels.get(item["id"])
            if weaker(now, item["level"]):
                out.append(
                    {
                        "user": r["user"],
                        "server": r["server"],
                        "dataset": item["id"],
                        "held": item["level"],
                        "now": now,
                        "started": start["at"],
                    }
                )
    return sorted(out, key=lambda h: (h["user"], h["server"], h["dataset"]))


def server_path(user: str, server: str) -> str:
    base = f"users/{quote(user, safe='')}"
    return f"{base}/servers/{quote(server, safe='')}" if server else f"{base}/server"


class Holders:
    """The hub's running servers (its API, the service's token) against the store."""

    def __init__(self, store: DataStore, hub: HubClient):
        self.store = store
        self.hub = hub

    async def running(self) -> tuple[list[dict[str, Any]], list[Who]]:
        """Running servers ({user, server}) and their users with today's groups."""
        servers, people = [], []
        try:
            async for user in self.hub.paged("users", state="active"):
                if len(servers) >= MAX_SERVERS:
                    break
                name = user.get("name") or ""
                people.append(Who(name, frozenset(user.get("groups") or [])))
                for server, model in (user.get("servers") or {}).items():
                    if model and (model.get("ready") or model.get("pending") == "spawn"):
                        servers.append({"user": name, "server": server})
        except HubUnreachable as e:
            raise StoreError(502, f"Cannot reach the hub to list running servers: {e}") from None
        except RuntimeError as e:  # the hub refused the list
            log.error("Listing running servers: %s", e)
            raise StoreError(502, "The hub refused to list running servers (see the log)") from None
        return servers, people

    async def holders(self) -> list[dict[str, Any]]:
        servers, people = await self.running()
        if not servers:
            return []
        starts = await self.store.last_starts([(s["user"], s["server"]) for s in servers])
        levels = await self.store.levels(people)
        return find_holders(servers, starts, levels)

    async def stop(self, user: str, server: str) -> None:
        """Stop ``user``'s ``server`` if it holds a revoked or downgraded grant."""
        held = [h for h in await self.holders() if h["user"] == user and h["server"] == server]
        if not held:
            raise StoreError(
                409,
                f"{user}'s server {server!r} holds no revoked or downgraded grant "
                "(only those can be stopped here)",
            )
        try:
            status, body = await self.hub.request("DELETE", server_path(user, server))
        except HubUnreachable as e:
            raise StoreError(502, f"Cannot reach the hub to stop the server: {e}") from None
        if status >= 300:
            message = body if isinstance(body, str) else f"HTTP {status}"
            raise StoreError(502 if status >= 500 else status, f"The hub refused: {message}")
        log.info("Stopping %s/%s: it holds %s", user, server, [h["dataset"] for h in held])
