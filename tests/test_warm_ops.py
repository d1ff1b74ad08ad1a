"""The warm pool as operators see it: the hub's metrics and the operations
page's "Warm pool" section.

A real ``WarmPool`` is driven by ``ListProvider`` (tests/test_warm_pool.py: an
in-memory backend whose members are plain records); what is under test is how
its status and events become metrics, rows and HTML.
"""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import pytest
from test_ops_units import EVIL, render_ops
from test_warm_pool import ListProvider

from labspace import metrics, ops
from labspace.spawners.outcome import StartOutcome
from labspace.warm.pool import WarmPool


def sample(name: str, **labels) -> float | None:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels)


@pytest.fixture
def hub_metrics():
    hub = metrics.hub_metrics()
    keys, tally = list(hub.pool_keys), {k: dict(v) for k, v in hub.pool_tally.items()}
    hub.pool_keys.clear()
    hub.pool_tally.clear()
    yield hub
    hub.pool_keys[:] = keys
    hub.pool_tally.clear()
    hub.pool_tally.update(tally)


async def filled_pool(size=2, **kw) -> WarmPool:
    pool = WarmPool(ListProvider(), {"img": size}, **kw)
    await pool.start()
    for _ in range(200):
        if len(pool.ready["img"]) == size:
            return pool
        await asyncio.sleep(0.01)
    raise AssertionError("the pool did not fill")


# -- metrics -------------------------------------------------------------------


async def test_pool_gauges_and_totals_from_its_status(hub_metrics):
    pool = await filled_pool(size=2)
    try:
        pool.ready["img"][0].created = time.time() - 90
        assert pool.take("img") is not None  # a warm start
        pool.take("nope")  # no such key: not counted as empty (cold because unpooled)
        pool.ready["img"].clear()
        pool.making["img"] = 0
        pool.closing = False
        assert pool.take("img") is None  # empty: a cold start
        families = metrics._Live._families()[2:]
        out = {f.name: f for f in metrics.pool_metrics(hub_metrics, pool, *families, now=1e10)}
        got = {(f, tuple(s.labels.values())): s.value for f in out for s in out[f].samples}
        assert got[("labspace_hub_warm_pool_members", ("img", "ready"))] == 0
        assert got[("labspace_hub_warm_pool_size", ("img",))] == 2
        assert got[("labspace_hub_warm_pool", ("claimed",))] == 1
        assert got[("labspace_hub_warm_pool", ("empty",))] == 1
        assert got[("labspace_hub_warm_pool", ("made",))] == 2
        assert got[("labspace_hub_warm_pool_key", ("img", "claimed"))] == 1
        assert got[("labspace_hub_warm_pool_key", ("img", "empty"))] == 1
        # no pool: no series at all
        assert list(metrics.pool_metrics(hub_metrics, None, *metrics._Live._families()[2:])) == []
    finally:
        await pool.drain()


async def test_oldest_member_age(hub_metrics):
    pool = await filled_pool(size=1)
    try:
        pool.ready["img"][0].created = 1000.0
        families = metrics._Live._families()[2:]
        out = {f.name: f for f in metrics.pool_metrics(hub_metrics, pool, *families, now=1090.0)}
        (s,) = out["labspace_hub_warm_pool_oldest_seconds"].samples
        assert s.value == 90.0
    finally:
        await pool.drain()


def test_pool_events_by_key_with_bounded_labels(hub_metrics):
    before = sample("labspace_hub_warm_pool_member_events_total", key="img", event="claimed") or 0
    hub_metrics.pool_event({"event": "ready", "key": "img", "member": "w1"})
    hub_metrics.pool_event({"event": "claimed", "key": "img", "member": "w1", "user": "ann"})
    hub_metrics.pool_event({"event": "gone", "key": "img", "member": "w2",
                            "reason": "claim failed"})  # fmt: skip
    hub_metrics.pool_event({"event": "made-up", "key": "img", "member": "w3"})
    after = sample("labspace_hub_warm_pool_member_events_total", key="img", event="claimed")
    assert after == before + 1
    assert hub_metrics.pool_tally["img"] == {
        "ready": 1, "claimed": 1, "gone": 1, "claim_failed": 1,
    }  # fmt: skip
    for i in range(metrics.MAX_POOL_KEYS + 5):
        hub_metrics.pool_event({"event": "ready", "key": f"image-{i}", "member": "w"})
    assert len(hub_metrics.pool_keys) == metrics.MAX_POOL_KEYS
    assert hub_metrics.pool_tally[metrics.OTHER]["ready"] == 6  # image-19.. and more
    from prometheus_client import REGISTRY, generate_latest

    text = generate_latest(REGISTRY).decode()
    assert "ann" not in text.replace("annotations", "")  # never a user name


def test_starts_are_counted_warm_or_cold(hub_metrics):
    hub_metrics.set_profiles(["small"], "small")
    labels = {"profile": "small"}
    warm0 = sample("labspace_hub_warm_or_cold_starts_total", start="warm", **labels)
    cold0 = sample("labspace_hub_warm_or_cold_starts_total", start="cold", **labels)
    warm, cold = SimpleNamespace(started_warm=True), SimpleNamespace(started_warm=False)
    hub_metrics.start_outcome(warm, StartOutcome("started", "small", None, "", 0.4))
    hub_metrics.start_outcome(cold, StartOutcome("started", "small", None, "", 3.0))
    hub_metrics.start_outcome(None, StartOutcome("started", "small", None, "", 3.0))
    hub_metrics.start_outcome(warm, StartOutcome("refused", "small", 402, "no", 0.0))
    assert sample("labspace_hub_warm_or_cold_starts_total", start="warm", **labels) == warm0 + 1
    assert sample("labspace_hub_warm_or_cold_starts_total", start="cold", **labels) == cold0 + 2


def test_the_hook_is_wired(tmp_path):
    from labspace.settings import load
    from labspace.state import State

    path = tmp_path / "labspace.yaml"
    path.write_text(f"data_dir: {tmp_path / 'data'}\nbackend: {{warm_pool: {{enabled: true}}}}\n")
    settings = load(path, environ={})
    state = State(settings)
    state.prepare()
    part = metrics.hub_parts(settings, state)
    assert part["spawner"]["pool_events"] == ["labspace.metrics.pool_event"]
    path.write_text(f"data_dir: {tmp_path / 'data'}\nbackend: {{warm_pool: {{enabled: false}}}}\n")
    assert "pool_events" not in metrics.hub_parts(load(path, environ={}), state)["spawner"]


# -- the operations page ---------------------------------------------------------


def test_pool_view_rows():
    status = {
        "keys": {
            "python3": {"size": 2, "ready": 1, "making": 1, "oldest": 1000.0},
            "img": {"size": 3, "ready": 3, "making": 0, "oldest": None,
                    "claimed": 7, "empty": 2, "failed": 1},
        },
        "claimed": 9, "made": 12, "failed": 1, "expired": 0, "empty": 4,
    }  # fmt: skip
    view = ops.pool_view(status, {"python3": {"claimed": 2}}, now=1000.0 + 3 * 3600 + 300)
    assert view["rows"] == [
        {"key": "img", "size": 3, "ready": 3, "making": 0, "oldest_age": None,
         "claimed": 7, "empty": 2, "failed": 1},
        {"key": "python3", "size": 2, "ready": 1, "making": 1, "oldest_age": "3h 5m",
         "claimed": 2, "empty": None, "failed": None},
    ]  # fmt: skip
    assert view["totals"] == {"claimed": 9, "empty": 4, "made": 12, "failed": 1, "expired": 0}
    assert ops.pool_view(None) is None
    assert [ops.age(s) for s in (None, 5, 125, 90000)] == [None, "5s", "2m", "1d 1h"]


async def test_pool_view_of_a_real_pool():
    pool = await filled_pool(size=2)
    try:
        view = ops.pool_view(pool.status())
        (row,) = view["rows"]
        assert (row["key"], row["size"], row["ready"], row["making"]) == ("img", 2, 2, 0)
        assert row["oldest_age"] in ("0s", "1s")
    finally:
        await pool.drain()


def page(**ns) -> str:
    base = {"workspaces": [], "currency": "credits", "costs_known": False,
            "accounting_on": False, "health": [], "starts": [], "actions": [],
            "culling_on": False, "max_starts": 50}  # fmt: skip
    return render_ops(**{**base, **ns})


def test_the_page_shows_the_pool_only_when_there_is_one():
    assert 'id="ls-pool"' not in page(pool=None)
    assert 'id="ls-pool"' not in page()  # an older caller: no pool variable
    status = {"keys": {EVIL: {"size": 2, "ready": 1, "making": 1, "oldest": time.time() - 65}},
              "claimed": 3, "empty": 1, "failed": 2, "expired": 0, "made": 5}  # fmt: skip
    view = {**ops.pool_view(status), "starting": False}
    html = page(pool=view)
    assert 'id="ls-pool"' in html and "Warm pool" in html
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "3 warm starts · 1 cold because empty" in " ".join(html.split())
    assert 'data-ready="1"' in html and "1m" in html
    one = page(pool={**ops.pool_view({"keys": {}, "claimed": 1}), "starting": False})
    assert "1 warm start ·" in " ".join(one.split())
    empty = page(pool={**ops.pool_view({"keys": {}}), "starting": True})
    assert "The pool keeps no member" in empty and "starting ·" in empty
