"""No usage is lost, on a real hub with the local backend:

- the accounting service is SIGKILLed three times while 30 servers start and
  stop (``on_unreachable: open``, so starts go on while it is down): afterwards
  every server has exactly one session, none is missing, and each session's cost
  is within one charge interval of what the server really ran;
- the hub restarts while servers run (``cleanup_servers: false``): the sessions
  go on under the same keys, none is lost or counted twice;
- a server stops while the service is down and its stop event is lost (fault
  injected into the outbox): the reconciler closes its session at the last time
  it saw the server running, and says so; while the service is down, with
  ``on_unreachable: closed``, a start is refused with a 503 that says why, and
  the refusal reaches the service's health report. (With the outbox intact the
  hub's stop event closes such a session exactly: the first test.)
- SIGTERM (how the hub stops it) ends the service within 2 s, with a session
  open; the server's stop while it is down waits in the outbox and closes that
  session, charged for what ran, once the hub has started the service again.

The hub restarts a killed managed service on its own, within its 30 s poll
(see ``test_accounting_e2e_support``); these tests wait for that restart.
"""

from __future__ import annotations

import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest
from harness import wait_for
from test_accounting_e2e_support import (
    PRICE,
    Accounting,
    AccountingHubs,
    key_of,
    post_start,
    start_time,
    wait_gone,
    wait_ready,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
CHARGE_INTERVAL = 2
PER_SECOND = Decimal(PRICE) / 3600


@pytest.fixture
def make(hub_factory, hub_settings, service_token):
    hubs = AccountingHubs(
        hub_factory,
        hub_settings,
        service_token,
        no_project="personal",
        personal_allowance=100000,
        charge_interval=CHARGE_INTERVAL,
        grace_period=3600,
    )
    yield hubs.start
    hubs.close()


def drained(acct: Accounting, keys: set[str], timeout: float = 180) -> dict[str, dict]:
    """Wait until the outbox is empty and every session in ``keys`` is closed."""

    def done():
        if acct.outbox_depth() or not acct.up():
            return None
        found = {s["key"]: s for s in acct.sessions() if s["key"] in keys}
        if set(found) == keys and all(s["status"] == "closed" for s in found.values()):
            return found
        return None

    return wait_for(done, timeout, 1, what="every session delivered and closed")


def check_cost(session: dict, started, stop_asked: float, stopped: float, log: str = "") -> None:
    """The cost is what the server ran, give or take one charge interval."""
    low = Decimal(max(0.0, stop_asked - started.timestamp())) * PER_SECOND
    high = Decimal(stopped - started.timestamp()) * PER_SECOND
    slack = CHARGE_INTERVAL * PER_SECOND
    cost = Decimal(session["cost"])
    lines = "\n".join(line for line in log.splitlines() if session["key"] in line)
    assert low - slack <= cost <= high + slack, (
        f"{json.dumps(session)} ran {float(low):.2f}-{float(high):.2f} s\n{lines}"
    )


def test_service_killed_three_times_while_30_servers_start_and_stop(make):
    hub, api, acct = make(on_unreachable="open")
    users = [f"u{i:02d}" for i in range(30)]
    for user in users:
        api.create_user(user)
    truth: dict[str, tuple] = {}  # key -> (started, stop asked, stopped)
    stopped_while_down = 0

    def stop(user: str) -> None:
        nonlocal stopped_while_down
        started = start_time(api, user)
        asked = time.time()
        r = api.request("DELETE", f"users/{user}/server")
        assert r.status_code in (202, 204), r.text
        truth[key_of(user, "", started)] = (started, asked, wait_gone(api, user))
        stopped_while_down += not acct.up()

    def start_then_stop(user: str) -> None:
        wait_ready(api, user, 120)
        stop(user)

    late: list = []  # stops of the last round, under way during the next one
    under_way_at_kill: list[set[str]] = []
    with ThreadPoolExecutor(20) as pool:
        for n in range(3):
            batch = users[10 * n : 10 * n + 10]
            # half the starts are under way when the service is killed, the
            # other half begin while it is down (the hub's next look at it is
            # ~30 s away, so it stays down for most of that)
            posts = [pool.submit(post_start, api, u, {"profile": "small"}) for u in batch[:5]]
            wait_for(lambda b=batch: pending(api, b[:5]), 30, 0.05, what="starts under way")
            killed = acct.kill()
            posts += [pool.submit(post_start, api, u, {"profile": "small"}) for u in batch[5:]]
            # the kill really landed during the starts: servers are starting
            # while the service is dead
            under_way_at_kill.append(
                wait_for(
                    lambda b=batch: pending(api, b) if not acct.up() else set(),
                    10,
                    0.05,
                    what="starts under way while the service is down",
                )
            )
            for posted in posts:
                assert posted.result().status_code in (201, 202), posted.result().text
            # half stop as soon as they are up (the service still down), half
            # once it is back (during the next round's starts and kill)
            early = [pool.submit(start_then_stop, u) for u in batch[:5]]
            for user in batch[5:]:
                wait_ready(api, user, 120)
            for done in early + late:
                done.result()
            acct.wait_service_back(killed)
            late = [pool.submit(stop, u) for u in batch[5:]]
        for done in late:
            done.result()

    assert len(truth) == 30
    assert len(under_way_at_kill) == 3 and all(under_way_at_kill), under_way_at_kill
    assert stopped_while_down >= 3, "too few stops happened while the service was down"
    sessions = drained(acct, set(truth))
    mine = [s for s in acct.sessions() if s["user"] in users]
    assert len(mine) == 30, "a session is missing or counted twice"
    for key, (started, asked, stopped) in truth.items():
        check_cost(sessions[key], started, asked, stopped, hub.log())
        assert sessions[key]["closed_by"] == "stop"  # the hub's own stop event


def pending(api, users: list[str]) -> set[str]:
    """Those of ``users`` whose server is starting right now."""
    found = set()
    for user in users:
        server = api.user(user).json()["servers"].get("", {})
        if server.get("pending") == "spawn":
            found.add(user)
    return found


def stamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def last_reconcile(acct: Accounting) -> float | None:
    """When the reconciler last compared the hub's servers with the sessions."""
    r = acct.internal("health")
    at = r.json().get("last_reconcile") if r.status_code == 200 else None
    return stamp(at) if at else None


def test_hub_restart_keeps_running_sessions(make, hub_factory, hub_settings):
    hub_settings["hub"]["cleanup_servers"] = False
    hub, api, acct = make()
    users = ["ria", "sol"]
    for user in users:
        api.create_user(user)
        assert post_start(api, user, {"profile": "small"}).status_code in (201, 202)
    for user in users:
        wait_ready(api, user)
    started = {user: start_time(api, user) for user in users}
    keys = {key_of(u, "", t) for u, t in started.items()}
    wait_for(lambda: {s["key"] for s in acct.sessions()} == keys, 30, what="both sessions")

    assert hub.stop() == 0  # the workspaces keep running (cleanup_servers: false)
    hub2 = hub_factory(hub_settings).start()
    acct.hub = hub2
    acct.wait_up()
    for user in users:
        assert start_time(api, user) == started[user]  # same start, same key
    restarted = time.time()

    def charged_since_restart() -> bool:
        sessions = acct.sessions()
        return len(sessions) == 2 and all(
            s["last_charged_at"] and stamp(s["last_charged_at"]) > restarted for s in sessions
        )

    wait_for(charged_since_restart, 30, 0.5, what="a charge of both sessions after the restart")
    running = {s["key"]: s for s in acct.sessions()}
    assert set(running) == keys
    assert all(s["status"] == "running" for s in running.values()), running

    truth = {}
    for user in users:
        asked = time.time()
        api.stop_server(user)
        truth[key_of(user, "", started[user])] = (started[user], asked, time.time())
    sessions = drained(acct, keys)
    assert len(acct.sessions()) == 2
    for key, (t0, asked, stopped) in truth.items():
        check_cost(sessions[key], t0, asked, stopped)


def lose_outbox_events(acct: Accounting, kind: str) -> int:
    """Fault injection: drop the outbox's undelivered ``kind`` events, as if the
    hub's disk had lost them. Returns how many were dropped."""
    import sqlite3

    from labspace.services.accounting.outbox import path_in

    with sqlite3.connect(path_in(acct.data_dir)) as db:
        return db.execute("DELETE FROM events WHERE id LIKE ?", (f"%:{kind}",)).rowcount


def test_stop_while_the_service_is_down_and_closed_mode(make):
    """A server stops while the service is down, and its stop event never
    arrives: the reconciler closes the session at the last time it saw the
    server running. Meanwhile (``on_unreachable: closed``) a start is refused
    with a 503 that says why, and the refusal reaches the service's health."""
    hub, api, acct = make(on_unreachable="closed")
    for user in ("tia", "uma"):
        api.create_user(user)
    assert post_start(api, "tia", {"profile": "small"}).status_code in (201, 202)
    wait_ready(api, "tia")
    key = key_of("tia", "", start_time(api, "tia"))
    wait_for(lambda: acct.sessions(user="tia"), 30, what="tia's session")
    running_since = time.time()
    # the reconciler really ran while tia's server was running (it saw it)
    seen = wait_for(
        lambda: (last_reconcile(acct) or 0) > running_since and last_reconcile(acct),
        30,
        0.2,
        what="a reconcile round while tia's server runs",
    )

    killed_at = time.time()
    killed = acct.kill()
    api.stop_server("tia")
    wait_for(lambda: acct.outbox_depth() >= 1, 10, what="the stop event in the outbox")
    assert lose_outbox_events(acct, "stop") == 1

    r = post_start(api, "uma", {"profile": "small"})
    assert r.status_code == 503, r.text
    assert "accounting service is not answering" in r.json()["message"]
    assert api.user("uma").json()["servers"] == {}

    acct.wait_service_back(killed)
    (session,) = drained(acct, {key}).values()
    assert session["closed_by"] == "reconciler"
    ended = stamp(session["ended_at"])
    # the last sighting: that reconcile round or a later one, before the kill
    assert seen - 0.01 <= ended <= killed_at + 1, (session, seen, killed_at)

    def refused():
        health = acct.internal("health").json()
        return [u for u in health.get("unreachable", []) if u["user"] == "uma"]

    (event,) = wait_for(refused, 60, 1, what="the refusal on the health page")
    assert event["decision"] == "refused"
    assert acct.sessions(user="uma") == []


def exited(pid: int) -> bool:
    """The process has exited (gone, or a zombie its parent has yet to reap)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def test_sigterm_stops_the_service_within_2s_and_nothing_is_lost(make):
    """The service gets SIGTERM while a session is open and its charger runs: it
    is gone within 2 s (its loops ended, its database closed). The server stops
    while the service is down: the stop event waits in the hub's outbox, and
    when the hub has started the service again it closes the session that stayed
    open, with the cost of what the server ran."""
    hub, api, acct = make(on_unreachable="open")
    api.create_user("vic")
    assert post_start(api, "vic", {"profile": "small"}).status_code in (201, 202)
    wait_ready(api, "vic")
    started = start_time(api, "vic")
    key = key_of("vic", "", started)
    wait_for(
        lambda: [s for s in acct.sessions(user="vic") if s["last_charged_at"]],
        30,
        0.2,
        what="vic's session, charged by the running service",
    )

    pid = acct.pid()
    assert pid, "the accounting service is not running"
    sent = time.monotonic()
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: exited(pid), 10, 0.02, what="the accounting service's exit")
    took = time.monotonic() - sent
    assert took < 2.0, f"the accounting service took {took:.2f} s to stop after SIGTERM"
    assert not acct.up()
    wait_for(lambda: "Stopping the accounting service" in hub.log(), 5, what="its stop logged")

    asked = time.time()
    api.stop_server("vic")
    stopped = time.time()
    wait_for(lambda: acct.outbox_depth() >= 1, 10, what="the stop event kept in the outbox")

    acct.wait_service_back(pid)
    (session,) = drained(acct, {key}).values()
    assert session["closed_by"] == "stop"  # the hub's own stop event, delivered late
    check_cost(session, started, asked, stopped, hub.log())
    assert [s["key"] for s in acct.sessions(user="vic")] == [key]  # none lost, none twice
