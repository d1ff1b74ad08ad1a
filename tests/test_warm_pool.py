"""The warm pool's bookkeeping (``labspace.warm.pool.WarmPool``), the mixin's
choice between a warm and a cold start, and the ``backend.warm_pool`` settings.

The pool is driven here by ``ListProvider``, an in-memory backend whose members
are plain records: what is under test is the pool's own logic (filling, claims,
refill, expiry, retries, drain, events). The real backends' members (the local
fork server, docker's pre-started containers) are tested with real processes
and containers in ``test_warm_forkserver``, ``test_warm_local`` and
``test_warm_docker``.
"""

from __future__ import annotations

import asyncio
import sys
import time

import pytest
from offline import build_spawner, settings_from
from traitlets.config import Config

from labspace.settings import SettingsError, load
from labspace.spawners.local import LabspaceLocalSpawner
from labspace.warm import pool_on, problems
from labspace.warm.pool import POOL_SETTING, Member, Provider, WarmPool, hub_pool


class ListProvider(Provider):
    kind = "list"

    def __init__(self, fail: int = 0, slow: float = 0.0):
        self.fail = fail  # the next `fail` creates raise
        self.slow = slow
        self.created: list[Member] = []
        self.destroyed: list[str] = []
        self.left = [Member("img", id="wold")]
        self.closed = False

    def keys(self):
        return ["img"]

    async def create(self, key):
        await asyncio.sleep(self.slow)
        if self.fail:
            self.fail -= 1
            raise RuntimeError("no such image")
        member = Member(key)
        self.created.append(member)
        return member

    async def alive(self, member):
        return member.id not in self.destroyed

    async def destroy(self, member):
        self.destroyed.append(member.id)

    async def leftovers(self):
        return list(self.left)

    async def close(self):
        self.closed = True


async def until(check, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_fills_each_key_and_refills_after_a_claim():
    provider, events = ListProvider(), []
    pool = WarmPool(provider, {"img": 2, "none": 0}, hooks=[events.append])
    await pool.start()
    try:
        assert "wold" in provider.destroyed  # an earlier run's member, removed first
        await until(lambda: len(pool.ready["img"]) == 2)
        assert "none" not in pool.sizes  # size 0: no pool
        first = pool.take("img")
        assert first is not None and first.key == "img"
        assert pool.take("other") is None and pool.take(None) is None
        pool.claimed(first, user="ann", profile="small")
        await until(lambda: len(pool.ready["img"]) == 2)  # refilled
        assert first not in pool.ready["img"] and len(provider.created) == 3
        await until(lambda: any(e["event"] == "claimed" for e in events))
        claimed = [e for e in events if e["event"] == "claimed"]
        assert claimed[0]["member"] == first.id and claimed[0]["user"] == "ann"
        assert [e["event"] for e in events].count("ready") >= 2
        assert pool.status()["claimed"] == 1
    finally:
        await pool.drain()


async def test_an_empty_pool_says_so_and_a_member_is_used_once():
    provider = ListProvider(slow=0.2)
    pool = WarmPool(provider, {"img": 1})
    await pool.start()
    try:
        assert pool.take("img") is None  # nothing ready yet: a cold start
        assert pool.status()["empty"] == 1
        await until(lambda: pool.ready["img"])
        member = pool.take("img")
        assert pool.take("img") is None  # the one member went to the first claim
        assert member is not None
    finally:
        await pool.drain()


async def test_a_failing_backend_is_retried_later_and_never_raises():
    provider = ListProvider(fail=1)
    pool = WarmPool(provider, {"img": 1})
    await pool.start()
    try:
        await until(lambda: pool.counts["failed"] == 1)
        assert pool._retry_at["img"] > time.time()  # backs off instead of spinning
        pool._retry_at["img"] = 0.0
        pool._wake.set()
        await until(lambda: pool.ready["img"])
        assert "img" not in pool._failures
    finally:
        await pool.drain()


async def test_members_older_than_max_age_are_replaced():
    provider = ListProvider()
    pool = WarmPool(provider, {"img": 1}, max_age=60)
    await pool.start()
    try:
        await until(lambda: pool.ready["img"])
        old = pool.ready["img"][0]
        old.created -= 120
        assert pool.take("img") is None  # never handed out
        await until(lambda: old.id in provider.destroyed)
        await until(lambda: pool.ready["img"] and pool.ready["img"][0] is not old)
    finally:
        await pool.drain()


async def test_drain_destroys_every_unclaimed_member_and_stops_refilling():
    provider, events = ListProvider(), []
    pool = WarmPool(provider, {"img": 3}, refill_concurrency=3, hooks=[events.append])
    await pool.start()
    await until(lambda: len(pool.ready["img"]) == 3)
    taken = pool.take("img")
    await pool.drain()
    made = {m.id for m in provider.created}
    assert made - {taken.id} <= set(provider.destroyed)
    assert taken.id not in provider.destroyed  # a claimed member is its user's
    assert provider.closed and pool.closing
    assert pool.take("img") is None
    count = len(provider.created)
    await asyncio.sleep(0.1)
    assert len(provider.created) == count  # no refill after the drain


async def test_a_failed_claim_destroys_the_member():
    provider = ListProvider()
    pool = WarmPool(provider, {"img": 1})
    await pool.start()
    try:
        await until(lambda: pool.ready["img"])
        member = pool.take("img")
        pool.give_back_failed(member)
        await until(lambda: member.id in provider.destroyed)
        assert member not in pool.ready["img"]
    finally:
        await pool.drain()


async def test_a_failing_hook_never_stops_the_pool():
    def broken(event):
        raise RuntimeError("accounting is down")

    pool = WarmPool(ListProvider(), {"img": 1}, hooks=[broken])
    await pool.start()
    try:
        await until(lambda: pool.ready["img"])
        assert pool.take("img") is not None
    finally:
        await pool.drain()


def test_hub_pool_only_once_started_and_not_while_draining():
    pool = WarmPool(ListProvider(), {"img": 1})
    settings = {POOL_SETTING: pool}
    assert hub_pool(settings) is None and hub_pool({}) is None
    pool.started = True
    assert hub_pool(settings) is pool
    pool.closing = True
    assert hub_pool(settings) is None


# -- the mixin: warm when the pool has a member, else the same cold start ----------


class WarmTestSpawner(LabspaceLocalSpawner):
    """The local spawner with its warm start replaced by a record (the real one
    is tested in test_warm_local); its cold start is the real one."""

    warm_started: list[str]

    def warm_key(self, spec):
        return "img"

    async def start_warm(self, member):
        self.warm_started.append(member.id)
        if member.handle.get("broken"):
            raise RuntimeError("the member died")
        return ("127.0.0.1", 9)


def warm_spawner(tmp_path, pool, warm):
    config = Config()
    config.LabspaceSpawnerMixin.home_root = str(tmp_path / "users")
    config.LabspaceSpawnerMixin.warm_pool = warm
    values = settings_from("profiles: [{slug: small, default: true}, {slug: big}]")
    spawner = build_spawner(WarmTestSpawner, "ann", "", values, config)
    spawner.user.settings = {POOL_SETTING: pool}
    spawner.warm_started = []
    spawner.cmd = [sys.executable, "-c", "import time; time.sleep(60)"]
    spawner.http_timeout = 1
    spawner.api_token = "not-a-real-token"  # noqa: S105
    return spawner


async def start_with(spawner, options):
    await spawner._run_apply_user_options(options)
    events = []
    try:
        await spawner.start()
    finally:
        events = [e["message"] for e in spawner._start_progress().events]
        if spawner.pid:
            await spawner.stop(now=True)
        await spawner.run_post_stop_hook()
    return events


@pytest.mark.parametrize(
    ("warm", "profile", "expect_warm"),
    [
        pytest.param({"enabled": True}, "small", True, id="pooled"),
        pytest.param({"enabled": True, "profiles": ["big"]}, "small", False, id="not-listed"),
        pytest.param({"enabled": False}, "small", False, id="off"),
    ],
)
async def test_a_start_takes_a_member_only_when_its_profile_is_pooled(
    tmp_path, warm, profile, expect_warm
):
    pool = WarmPool(ListProvider(), {"img": 1})
    await pool.start()
    try:
        await until(lambda: pool.ready["img"])
        spawner = warm_spawner(tmp_path, pool, warm)
        events = await start_with(spawner, {"profile": profile})
        assert bool(spawner.warm_started) is expect_warm
        assert spawner.started_warm is expect_warm
        # the same progress either way
        assert events[:3] == [
            "Preparing home",
            "Starting your small workspace",
            "Starting JupyterLab",
        ]
    finally:
        await pool.drain()


async def test_a_failed_claim_falls_back_to_a_cold_start(tmp_path):
    provider = ListProvider()
    pool = WarmPool(provider, {"img": 1})
    await pool.start()
    try:
        await until(lambda: pool.ready["img"])
        pool.ready["img"][0].handle["broken"] = True
        broken = pool.ready["img"][0].id
        spawner = warm_spawner(tmp_path, pool, {"enabled": True})
        await spawner._run_apply_user_options({})
        await spawner.start()
        try:
            assert spawner.warm_started == [broken] and not spawner.started_warm
            assert spawner.pid  # the cold start's own process
        finally:
            await spawner.stop(now=True)
            await spawner.run_post_stop_hook()
        await until(lambda: broken in provider.destroyed)
    finally:
        await pool.drain()


# -- settings --------------------------------------------------------------------


def test_settings_defaults_and_unknown_profiles(tmp_path):
    path = tmp_path / "labspace.yaml"
    path.write_text("profiles: [{slug: small, default: true}]\n")
    warm = load(path).get("backend.warm_pool")
    assert warm == {
        "enabled": "auto",
        "size": 2,
        "profiles": [],
        "refill_concurrency": 1,
        "max_age": 86400,
        "kernel": True,
    }
    values = {
        "profiles": [{"slug": "small"}],
        "backend": {"warm_pool": {"enabled": True, "profiles": ["small", "smal", "gpu"]}},
    }
    assert problems(values) == [
        "backend.warm_pool.profiles[1]: no profile 'smal' (did you mean 'small'?)",
        "backend.warm_pool.profiles[2]: no profile 'gpu' (profiles: small)",
    ]
    values["backend"]["warm_pool"]["enabled"] = False
    assert problems(values) == []


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("size: 500", "backend.warm_pool.size: 500 is too large"),
        ("refill_concurrency: 0", "backend.warm_pool.refill_concurrency: 0 is too small"),
        ("sise: 2", "backend.warm_pool.sise: unknown key (did you mean 'size'?)"),
        ("enabled: yes please", "backend.warm_pool.enabled:"),
    ],
)
def test_bad_pool_settings_name_the_key(tmp_path, text, line):
    path = tmp_path / "labspace.yaml"
    path.write_text(f"backend:\n  warm_pool:\n    {text}\n")
    with pytest.raises(SettingsError) as e:
        load(path)
    assert any(p.startswith(line) for p in e.value.problems), e.value.problems


async def test_a_member_that_died_waiting_is_replaced_and_never_handed_out():
    provider, events = ListProvider(), []
    pool = WarmPool(provider, {"img": 1}, hooks=[events.append])
    await pool.start()
    try:
        await until(lambda: pool.ready["img"])
        dead = pool.ready["img"][0]
        provider.destroyed.append(dead.id)  # it died on its own: alive() says so
        pool._wake.set()
        await until(lambda: pool.ready["img"] and pool.ready["img"][0] is not dead)
        assert pool.take("img") is not dead
        assert pool.status()["keys"]["img"]["died"] == 1
        await until(lambda: any(e.get("reason") == "died" for e in events))
    finally:
        await pool.drain()


async def test_drain_waits_for_the_hooks_of_the_members_it_ends():
    """Accounting's hook closes each drained member's time before the hub exits."""
    closed = []

    async def slow_hook(event):
        if event["event"] == "gone":
            await asyncio.sleep(0.2)
            closed.append(event["member"])

    pool = WarmPool(ListProvider(), {"img": 2}, hooks=[slow_hook])
    await pool.start()
    await until(lambda: len(pool.ready["img"]) == 2)
    members = {m.id for m in pool.ready["img"]}
    await pool.drain()
    assert set(closed) == members


async def test_status_counts_each_key_apart():
    pool = WarmPool(ListProvider(), {"img": 1, "other": 1})
    await pool.start()
    try:
        await until(lambda: pool.ready["img"] and pool.ready["other"])
        assert pool.take("img") is not None
        keys = pool.status()["keys"]
        assert keys["img"]["claimed"] == 1 and keys["other"]["claimed"] == 0
        assert keys["img"]["made"] >= 1 and keys["other"]["made"] == 1
    finally:
        await pool.drain()


@pytest.mark.parametrize(
    ("backend", "on"),
    [
        pytest.param({}, True, id="default-local-auto"),
        pytest.param({"type": "local", "warm_pool": {"enabled": "auto"}}, True, id="local-auto"),
        pytest.param({"type": "local", "warm_pool": {"enabled": False}}, False, id="local-off"),
        pytest.param({"type": "docker", "warm_pool": {"enabled": "auto"}}, False, id="docker-auto"),
        pytest.param({"type": "docker", "warm_pool": {"enabled": True}}, True, id="docker-on"),
        pytest.param({"type": "kubernetes", "warm_pool": {}}, False, id="kubernetes-auto"),
    ],
)
def test_auto_is_on_for_the_local_backend_only(backend, on):
    assert pool_on(backend) is on
