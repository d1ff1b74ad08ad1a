"""The warm pool: workspaces made ahead of time, each waiting for an identity.

A *member* is a workspace that has done the slow part of a start (its process
or container exists and its Python has imported JupyterHub's single-user
server, JupyterLab and the extensions) but has no user: no token, no home, no
environment of anyone's, and it listens on no port. A start that finds a ready
member for its *key* (the local backend's interpreter, a docker image) hands it
that start's identity (``LabspaceSpawnerMixin.start_warm``); a start that finds
none is a normal cold start. Every member is the platform's until it is
claimed, and is used once.

The backend part is a ``Provider`` (``spawners.local.LocalWarmProvider``,
``spawners.docker_warm.DockerWarmProvider``); ``WarmPool`` keeps ``size`` ready
members per key, makes new ones ``refill_concurrency`` at a time, replaces one
older than ``max_age``, and tells ``hooks`` (accounting: the pool's cost) of
each member made, claimed or gone. The hub starts the pool once it is up and
drains it when it shuts down (``labspace.hubapp``); members an earlier run left
behind (a hub that was killed) are destroyed when the next one starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from jupyterhub.utils import maybe_future

# where the hub keeps its pool: its tornado settings (a spawner's user.settings)
POOL_SETTING = "labspace_warm_pool"
RETRY_S = 5.0  # after a member failed to come up, wait before the next try
MAX_RETRY_S = 120.0
DRAIN_HOOKS_S = 10.0  # at shutdown, how long the hooks of drained members may take


@dataclass
class Member:
    """One pre-initialised workspace. ``handle`` is the backend's (a pid, a
    container id, the folder it waits in), JSON-able."""

    key: str
    id: str = field(default_factory=lambda: "w" + secrets.token_hex(6))
    created: float = field(default_factory=time.time)
    handle: dict[str, Any] = field(default_factory=dict)


class Provider:
    """What one backend does for a pool. Subclasses implement each method."""

    kind = ""

    async def start(self) -> None:
        """Before the first member (e.g. start the fork server)."""

    async def create(self, key: str) -> Member:
        """Make one member for ``key`` and return it once it can be claimed."""
        raise NotImplementedError

    async def alive(self, member: Member) -> bool:
        """The member still waits to be claimed."""
        raise NotImplementedError

    async def destroy(self, member: Member) -> None:
        """End an unclaimed member and everything it holds (idempotent)."""
        raise NotImplementedError

    async def leftovers(self) -> list[Member]:
        """Members an earlier run of this hub (same data folder) left behind."""
        return []

    async def close(self) -> None:
        """After the pool is drained (e.g. stop the fork server)."""


class WarmPool:
    """Ready members per key, refilled in the background."""

    def __init__(
        self,
        provider: Provider,
        sizes: dict[str, int],
        refill_concurrency: int = 1,
        max_age: float = 0,
        hooks: list[Callable[[dict[str, Any]], Any]] | None = None,
        log: logging.Logger | None = None,
    ):
        self.provider = provider
        self.sizes = {k: int(v) for k, v in sizes.items() if int(v) > 0}
        self.refill_concurrency = max(1, int(refill_concurrency))
        self.max_age = float(max_age or 0)
        self.hooks = list(hooks or ())
        self.log = log or logging.getLogger("labspace.warm")
        self.ready: dict[str, list[Member]] = {k: [] for k in self.sizes}
        self.making: dict[str, int] = dict.fromkeys(self.sizes, 0)
        self.counts = {"claimed": 0, "made": 0, "failed": 0, "expired": 0, "empty": 0, "died": 0}
        self.key_counts = {k: dict.fromkeys(self.counts, 0) for k in self.sizes}
        self._gate = asyncio.Semaphore(self.refill_concurrency)
        self._tasks: set[asyncio.Task] = set()
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task | None = None
        self._retry_at: dict[str, float] = {}
        self._failures: dict[str, int] = {}
        self.closing = False
        self.started = False

    # -- life ------------------------------------------------------------

    async def start(self) -> None:
        """Destroy what an earlier run left, then start filling."""
        await self.provider.start()
        for member in await self.provider.leftovers():
            self.log.info("Warm pool: removing member %s left by an earlier run", member.id)
            await self._destroy(member, "leftover", tell=False)
        self.started = True
        self._loop_task = asyncio.ensure_future(self._keep_filled())

    async def drain(self) -> None:
        """Stop refilling and destroy every unclaimed member (hub shutdown)."""
        self.closing = True
        self._wake.set()
        if self._loop_task is not None:
            self._loop_task.cancel()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        members = [m for ms in self.ready.values() for m in ms]
        for ms in self.ready.values():
            ms.clear()
        await asyncio.gather(*(self._destroy(m, "drained") for m in members))
        if self._tasks:  # the "gone" hooks of those members (accounting closes their time)
            await asyncio.wait(list(self._tasks), timeout=DRAIN_HOOKS_S)
        await self.provider.close()
        self.log.info("Warm pool drained (%d members)", len(members))

    # -- claims ----------------------------------------------------------

    def take(self, key: str | None) -> Member | None:
        """A ready member for ``key``, now the caller's; None: start cold."""
        if key is None or self.closing or key not in self.ready:
            return None
        members = self.ready[key]
        now = time.time()
        while members:
            member = members.pop(0)
            if self.max_age and now - member.created > self.max_age:
                self._spawn(self._destroy(member, "expired"))
                continue
            self._count(key, "claimed")
            self._wake.set()
            return member
        self._count(key, "empty")
        self._wake.set()
        return None

    def _count(self, key: str, what: str) -> None:
        self.counts[what] += 1
        if key in self.key_counts:
            self.key_counts[key][what] += 1

    def claimed(self, member: Member, **info: Any) -> None:
        """Tell the hooks a member now belongs to a start (user, profile)."""
        self._tell("claimed", member, **info)

    def give_back_failed(self, member: Member) -> None:
        """A claim that failed: the member is destroyed, never reused."""
        self._spawn(self._destroy(member, "claim failed"))

    # -- filling ---------------------------------------------------------

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def wanted(self, key: str) -> int:
        return self.sizes[key] - len(self.ready[key]) - self.making[key]

    async def _drop_dead(self) -> None:
        """Members that died while waiting (killed, out of memory, their fork
        server gone) leave the pool, so it refills instead of failing claims."""
        for key, members in self.ready.items():
            for member in list(members):
                try:
                    alive = await self.provider.alive(member)
                except Exception:  # noqa: BLE001 - unknown: keep it; a claim will tell
                    self.log.debug("Warm pool: cannot tell if %s lives", member.id, exc_info=True)
                    continue
                if not alive and member in members:
                    members.remove(member)
                    self._count(key, "died")
                    self.log.warning("Warm pool %s: member %s died while waiting", key, member.id)
                    self._spawn(self._destroy(member, "died"))

    async def _keep_filled(self) -> None:
        while not self.closing:
            self._wake.clear()
            await self._drop_dead()
            now = time.time()
            for key in self.sizes:
                if self.max_age:
                    for member in [m for m in self.ready[key] if now - m.created > self.max_age]:
                        self.ready[key].remove(member)
                        self._count(key, "expired")
                        self._spawn(self._destroy(member, "expired"))
                if now < self._retry_at.get(key, 0):
                    continue
                for _ in range(max(0, self.wanted(key))):
                    self.making[key] += 1
                    self._spawn(self._make(key))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._next_check())

    def _next_check(self) -> float:
        waits = [5.0]
        now = time.time()
        waits += [max(0.1, t - now) for t in self._retry_at.values() if t > now]
        if self.max_age:
            waits.append(max(1.0, self.max_age / 4))
        return min(waits)

    async def _make(self, key: str) -> None:
        try:
            async with self._gate:
                if self.closing:
                    return
                member = await self.provider.create(key)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - a pool never takes the hub down
            self._count(key, "failed")
            n = self._failures[key] = self._failures.get(key, 0) + 1
            delay = min(MAX_RETRY_S, RETRY_S * 2 ** (n - 1))
            self._retry_at[key] = time.time() + delay
            self.log.error(
                "Warm pool %s: a member failed to start (%s); next try in %.0fs", key, e, delay
            )
            return
        finally:
            self.making[key] -= 1
            self._wake.set()
        self._failures.pop(key, None)
        self._retry_at.pop(key, None)
        if self.closing:
            await self._destroy(member, "drained", tell=False)
            return
        self._count(key, "made")
        self.ready[key].append(member)
        self._tell("ready", member)

    async def _destroy(self, member: Member, why: str, tell: bool = True) -> None:
        try:
            await self.provider.destroy(member)
        except Exception:  # noqa: BLE001
            self.log.exception("Warm pool: could not destroy member %s (%s)", member.id, why)
        if tell:
            self._tell("gone", member, reason=why)

    def _tell(self, event: str, member: Member, **info: Any) -> None:
        message = {
            "event": event,
            "key": member.key,
            "member": member.id,
            "at": time.time(),
            **info,
        }
        for hook in self.hooks:
            self._spawn(self._run_hook(hook, message))

    async def _run_hook(self, hook, message) -> None:
        try:
            await maybe_future(hook(message))
        except Exception:  # noqa: BLE001 - a record is never worth a start
            self.log.exception("Warm pool hook %r failed", hook)

    # -- reading ---------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return {
            "keys": {
                key: {
                    "size": self.sizes[key],
                    "ready": len(self.ready[key]),
                    "making": self.making[key],
                    "oldest": min((m.created for m in self.ready[key]), default=None),
                    **self.key_counts[key],
                }
                for key in self.sizes
            },
            **self.counts,
        }


def hub_pool(hub_settings: dict[str, Any]) -> WarmPool | None:
    """The pool of the hub whose tornado settings these are, if it has one."""
    pool = hub_settings.get(POOL_SETTING)
    return pool if isinstance(pool, WarmPool) and pool.started and not pool.closing else None
