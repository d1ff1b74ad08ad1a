"""Idle culling against a real hub: jupyterhub-idle-culler runs as the hub's
managed service ``idle-culler`` (timeout 6 s, a pass every 2 s), accounting on
(one credit a second). An idle server is stopped within timeout + every and its
accounting session ends at the cull, charged only to then; a profile's own
``idle_timeout`` wins over ``hub.culling.timeout`` both ways; ``cull_now`` is
one pass of the same culler for the operations page."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest
from harness import HubAPI, wait_for
from test_accounting_e2e_support import Accounting, accounting_settings

from labspace import culling
from labspace import settings as settings_mod

pytestmark = [pytest.mark.e2e]
TIMEOUT, EVERY, QUICK, LONG = 6, 2, 3, 3600
PROFILES = [
    {"slug": "small", "default": True, "groups": ["staff"]},  # hub.culling.timeout
    {"slug": "gpu", "idle_timeout": QUICK},  # culled sooner; the others' default
    {"slug": "long", "idle_timeout": LONG},  # culled later
    {"slug": "later", "idle_timeout": LONG},  # cull_now's test alone
]
SLACK = 3  # a pass's own time, the hub stopping the server, our polling


def edit(settings: dict) -> None:
    accounting_settings(settings, no_project="personal", personal_allowance=100000)
    settings["profiles"] = PROFILES
    settings["accounting"]["prices"] = {"profiles": {p["slug"]: 3600 for p in PROFILES}}
    settings["hub"]["culling"] = {"enabled": True, "timeout": TIMEOUT, "every": EVERY}
    # a start answers at once (202), so start_all keeps the ready ones active
    settings["hub"]["config"]["JupyterHub"]["tornado_settings"] = {"slow_spawn_timeout": 0}


@pytest.fixture(scope="module")
def culled_hub(module_hub_factory):
    hub, api = module_hub_factory(edit)
    acct = Accounting(hub, api.client.headers["Authorization"].split()[1])
    acct.wait_up()
    yield hub, api, acct
    acct.close()


def when(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC).timestamp()


def start_all(api: HubAPI, chosen: dict[str, str | None], timeout: float = 90) -> None:
    """Start each user's server with its profile (None: none named), together,
    and wait until all are ready, keeping those already up active (so none is
    culled meanwhile)."""
    for user, profile in chosen.items():
        if api.user(user).status_code == 404:
            api.create_user(user)
        body = {"profile": profile} if profile else {}
        r = api.request("POST", f"users/{user}/server", json=body)
        assert r.status_code in (201, 202), r.text
        api.started.add(user)

    def all_ready() -> bool:
        up = [u for u in chosen if api.user(u).json()["servers"].get("", {}).get("ready")]
        if up:
            touch(api, *up)
        return len(up) == len(chosen)

    wait_for(all_ready, timeout, 0.5, what=f"{', '.join(chosen)} ready")


def touch(api: HubAPI, *users: str) -> float:
    """Every server of ``users`` last active now (the hub's activity API)."""
    now = datetime.now(UTC)
    stamp = now.isoformat().replace("+00:00", "Z")
    for user in users:
        body = {"last_activity": stamp, "servers": {"": {"last_activity": stamp}}}
        r = api.request("POST", f"users/{user}/activity", json=body)
        assert r.status_code == 200, r.text
    return now.timestamp()


def culled_at(api: HubAPI, user: str, timeout: float) -> float:
    """When the culler stopped ``user``'s server: first seen stopping or gone
    (polled every 0.1 s)."""

    def stopping():
        server = api.user(user).json()["servers"].get("")
        return server is None or server.get("pending") == "stop" or not server.get("ready")

    wait_for(stopping, timeout, 0.1, what=f"{user} culled")
    return time.time()


def gone_at(api: HubAPI, user: str) -> float:
    """When ``user``'s server is gone (its stop takes a few seconds)."""
    wait_for(lambda: not api.user(user).json()["servers"], 30, 0.1, what=f"{user} stopped")
    api.started.discard(user)
    return time.time()


def running(api: HubAPI, user: str) -> bool:
    return bool(api.user(user).json()["servers"].get("", {}).get("ready"))


def closed_session(acct: Accounting, user: str) -> dict:
    return wait_for(
        lambda: [s for s in acct.sessions(user=user) if s["status"] == "closed"],
        15,
        0.2,
        what=f"{user}'s session closed",
    )[0]


def test_idle_servers_are_culled_by_profile_and_charged_to_the_cull(culled_hub):
    hub, api, acct = culled_hub
    api.create_user("alice")
    api.add_to_group("staff", "alice")
    # carol names no profile: hers is gpu, the first open to her (the mixin
    # shows it in the server's user_options, where the culler's arbiter reads it)
    start_all(api, {"carol": None, "alice": "small", "bob": "long"})
    assert api.user("carol").json()["servers"][""]["user_options"] == {"profile": "gpu"}
    idle_since = touch(api, "carol", "alice", "bob")  # equally idle from here

    # gpu's 3 s: carol goes first, while alice, as idle, is kept (small: 6 s)
    carol = culled_at(api, "carol", QUICK + EVERY + SLACK)
    assert running(api, "alice") and time.time() - idle_since < TIMEOUT
    assert carol - idle_since >= QUICK
    carol = (carol, gone_at(api, "carol"))
    alice = culled_at(api, "alice", TIMEOUT + EVERY + SLACK)
    assert TIMEOUT <= alice - idle_since <= TIMEOUT + EVERY + SLACK
    alice = (alice, gone_at(api, "alice"))
    # long's hour: bob, as idle as alice, runs on
    time.sleep(EVERY + 0.5)  # one more pass
    assert running(api, "bob")

    # the session ends with the culler's stop, charged (a credit a second) only to then
    for user, (culled, gone) in (("carol", carol), ("alice", alice)):
        session = closed_session(acct, user)
        ended = when(session["ended_at"])
        assert culled - 0.5 <= ended <= gone + 0.5, (user, session)
        ran = ended - when(session["started_at"])
        assert float(session["cost"]) == pytest.approx(ran, abs=1.0), (user, session)
    time.sleep(2)  # two charge intervals later, nothing more
    again = closed_session(acct, "alice")
    assert (again["cost"], again["ended_at"]) == (session["cost"], session["ended_at"])
    api.stop_server("bob")


def test_cull_now_is_one_pass_with_the_settings(culled_hub):
    hub, api, acct = culled_hub
    start_all(api, {"dave": "later"})
    touch(api, "dave")
    settings = settings_mod.load(hub.config_path, environ={})
    url = settings.hub_local_url() + "api"
    token = (acct.data_dir / "secrets" / f"{culling.NAME}-api-token").read_text().strip()

    # as configured, dave (later: an hour) is not idle enough
    assert asyncio.run(culling.cull_now(url, token, settings)) == []
    assert running(api, "dave")

    # with later's timeout at 1 s, one pass stops dave and says so
    time.sleep(1)
    settings.values["profiles"][3]["idle_timeout"] = 1
    assert asyncio.run(culling.cull_now(url, token, settings)) == ["dave"]
    gone_at(api, "dave")
    assert closed_session(acct, "dave")["ended_at"]

    # culling off: nothing, not even a request (a wrong token would be refused)
    settings.values["hub"]["culling"]["enabled"] = False
    assert asyncio.run(culling.cull_now(url, "not-a-token", settings)) == []
