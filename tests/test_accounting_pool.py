"""Tier 2: the warm pool's cost in accounting, hub side to service, for real.

The hub side (``HubSide.pool_event``, the pool's hook) writes to a real outbox
file and delivers to the real accounting service in-process (the same
``AccountingServer`` as tests/test_accounting_service.py: user identification
is STUBBED there, handlers, ledger and database are the production code).
Events carry the pool's own times, so an hour of membership is an hour.
"""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import pytest
from harness import free_port
from test_accounting_fixtures import SERVICE_TOKEN, AccountingServer
from test_accounting_service import RecordingHub, reserve_body, topup

from labspace.services.accounting import charger, hubside, pool
from labspace.services.accounting.clock import now
from labspace.services.accounting.hubside import HubSide
from labspace.services.accounting.outbox import Outbox

HOUR = 3600.0


@pytest.fixture
async def acct(tmp_path):
    server = AccountingServer(f"sqlite:///{tmp_path}/accounting.sqlite", free_port())
    yield server
    await server.close()


def hub_side(acct, tmp_path, profiles=(), url=None) -> HubSide:
    return HubSide(
        url or acct.url,
        SERVICE_TOKEN,
        str(tmp_path / "accounting-outbox.sqlite"),
        timeout=2,
        tries=1,
        pool_profiles=list(profiles),
    )


def ev(event: str, member: str, hours_ago: float, key: str = "local", **info) -> dict:
    return {"event": event, "key": key, "member": member, "at": time.time() - hours_ago * HOUR,
            **info}  # fmt: skip


async def settle(hub: HubSide) -> None:
    for _ in range(200):
        if not hub._tasks:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the hub side's deliveries did not finish")


async def pool_sessions(acct) -> dict[str, dict]:
    r = await acct.call("GET", "api/sessions?limit=50", "auditor-token")
    return {s["server"]: s for s in r.json()["sessions"] if s["user"] == pool.POOL_USER}


async def test_idle_members_are_the_platforms_usage_at_the_cheapest_pooled_price(acct, tmp_path):
    await topup(acct, amount="10")  # proj-a's money, which the pool never touches
    hub = hub_side(acct, tmp_path)
    for e in (
        ev("ready", "wa", 2),
        ev("claimed", "wa", 1, user="alice", profile="small"),
        ev("ready", "wb", 2),
        ev("gone", "wb", 0.5, reason="expired"),
        ev("ready", "wc", 1),  # still waiting
    ):
        await hub.pool_event(e)
        await settle(hub)  # (a stop waits while its start is being delivered)
    assert Outbox(hub.outbox.path).pending() == []  # all delivered
    sessions = await pool_sessions(acct)
    assert {m: (s["status"], s["project"], s["price_per_hour"]) for m, s in sessions.items()} == {
        "wa": ("closed", None, "1.00"),  # small 1.00/h < gpu 4.00/h: the cheapest profile
        "wb": ("closed", None, "1.00"),
        "wc": ("running", None, "1.00"),
    }
    assert (sessions["wa"]["cost"], sessions["wb"]["cost"]) == ("1.00", "1.50")
    assert sessions["wa"]["key"] == "warm-pool/local/wa"
    # the charger charges the waiting member to the platform: no warning, no stop
    acct.service.hub = RecordingHub()
    await acct.service.loops.charge()
    assert acct.service.hub.stopped == []
    assert (await pool_sessions(acct))["wc"]["cost"] == "1.00"
    # ... and the reconciler leaves it alone (it is no server of the hub's)
    svc = acct.service
    assert svc.db.work(charger.mark_seen, {}, now(), svc.policy) == []
    # reports and metrics show it as the platform's, apart from projects
    r = await acct.call("GET", "api/usage?group_by=project", "auditor-token")
    assert {x["project"]: x["cost"] for x in r.json()["rows"]} == {"(platform)": "3.50"}
    r = await acct.call("GET", "api/usage?group_by=user&project=(platform)", "auditor-token")
    assert [(x["user"], x["sessions"]) for x in r.json()["rows"]] == [("(warm pool)", 3)]
    r = await acct.call("GET", "api/ledger?account=external:platform&limit=10", "auditor-token")
    assert r.status_code == 200 and len(r.json()["transactions"]) >= 3
    r = await acct.call("GET", "api/projects/proj-a", "auditor-token")
    assert r.json()["balance"] == "10.00"  # no project paid for the pool
    metrics = (await acct.call("GET", "metrics", "auditor-token")).text
    assert 'labspace_accounting_usage_total{project="(platform)"} 3.5' in metrics
    assert "labspace_accounting_warm_pool_members 1.0" in metrics


async def test_the_pool_price_follows_the_pooled_profiles(acct, tmp_path):
    hub = hub_side(acct, tmp_path, profiles=["gpu"])  # gpu: 4/h derived from its GPU
    await hub.pool_event(ev("ready", "wg", 1, key="img:gpu"))
    await settle(hub)
    await hub.pool_event(ev("claimed", "wg", 0.5, key="img:gpu"))
    await settle(hub)
    s = (await pool_sessions(acct))["wg"]
    assert (s["price_per_hour"], s["cost"], s["profile"]) == ("4.00", "2.00", "warm-pool:img:gpu")


def test_a_docker_members_profiles_are_those_of_its_image(tmp_path):
    hub = HubSide("http://127.0.0.1:9/", "t", str(tmp_path / "o.sqlite"),
                  profile_images={"small": "ws:1", "big": "ws:1", "gpu": "cuda:1"})  # fmt: skip
    assert hub.profiles_of("cuda:1") == ["gpu"]
    assert hub.profiles_of("ws:1") == ["small", "big"]
    assert hub.profiles_of("local") == []  # the local pool: every pooled profile
    hub.pool_profiles = ["small", "gpu"]
    assert hub.profiles_of("ws:1") == ["small"]
    assert hub.profiles_of("local") == ["small", "gpu"]
    values = {"profiles": [{"slug": "a"}, {"slug": "b", "image": "x:2"}],
              "backend": {"image": "ws:1"}}  # fmt: skip

    def get(key):
        node = values
        for part in key.split("."):
            node = node[part]
        return node

    assert hubside.profile_images(SimpleNamespace(get=get)) == {"a": "ws:1", "b": "x:2"}


async def test_a_killed_hubs_members_are_closed_by_the_next_run(acct, tmp_path):
    first = hub_side(acct, tmp_path)
    await first.pool_event(ev("ready", "old", 3))
    await settle(first)
    # the hub is killed: no "gone"; the next run's pool removed its members
    second = hub_side(acct, tmp_path)
    await second.pool_event(ev("ready", "new", 1))
    await settle(second)
    await second.pool_event(ev("gone", "old", 0.5, reason="leftover"))  # not told: ignored
    await settle(second)
    sessions = await pool_sessions(acct)
    assert (sessions["old"]["status"], sessions["old"]["cost"]) == ("closed", "2.00")
    assert sessions["new"]["status"] == "running"
    assert second.outbox.open_keys_of(pool.POOL_USER) == [("new", "warm-pool/local/new")]


async def test_nothing_is_lost_while_the_service_is_down(acct, tmp_path):
    down = hub_side(acct, tmp_path, url=f"http://127.0.0.1:{free_port()}/services/accounting/")
    await down.pool_event(ev("ready", "wd", 1))
    await down.pool_event(ev("claimed", "wd", 0))
    await settle(down)
    pending = Outbox(down.outbox.path).pending()
    assert [(e["type"], e["key"]) for e in pending] == [
        ("start", "warm-pool/local/wd"),
        ("stop", "warm-pool/local/wd"),
    ]
    # the deliverer's batch, later, to the service that is back
    r = await acct.internal("POST", "events", {"events": pending})
    assert r.json()["accepted"] == 2
    assert (await pool_sessions(acct))["wd"]["cost"] == "1.00"


async def test_only_pool_sessions_are_the_platforms(acct, tmp_path):
    body = reserve_body(platform={"pool": "local", "profiles": []})
    event = {"id": f"{body['key']}:start", "key": body["key"], "type": "start",
             "at": body["at"], "user": "alice", "reserve": body}  # fmt: skip
    r = await acct.internal("POST", "events", {"events": [event]})
    assert r.status_code == 400
    assert "only for warm pool sessions" in r.json()["message"]
    # the reserve endpoint (a user's start) never reads it: alice pays as always
    r = await acct.internal("POST", "reserve", reserve_body(platform={"pool": "local"}))
    assert r.status_code == 402  # no budget yet: her project's, not the platform's
    hub = hub_side(acct, tmp_path)
    await hub.pool_event({"event": "ready", "key": "", "member": "w1", "at": time.time()})
    await hub.pool_event({"event": "odd", "key": "local", "member": "w1"})
    assert Outbox(hub.outbox.path).pending() == []


def test_the_hook_is_wired_with_the_pooled_profiles(tmp_path):
    values = {"backend": {"type": "docker", "warm_pool": {"enabled": True, "profiles": ["small"]}}}

    def get(key):
        node = values
        for part in key.split("."):
            node = node[part]
        return node

    settings = SimpleNamespace(get=get)
    hub = HubSide("http://127.0.0.1:9/", "t", str(tmp_path / "o.sqlite"),
                  pool_profiles=hubside.pooled_profiles(settings),
                  pool_enabled=hubside.pool_enabled(settings))  # fmt: skip
    traits = hubside.spawner_traits(hub)
    assert traits["pool_events"] == [hub.pool_event]
    assert hub.pool_profiles == ["small"]
    values["backend"]["warm_pool"]["enabled"] = "auto"  # off on docker: no hook
    hub.pool_enabled = hubside.pool_enabled(settings)
    assert "pool_events" not in hubside.spawner_traits(hub)
    assert hubside.pooled_profiles(SimpleNamespace(get=lambda k: {}[k])) == []
