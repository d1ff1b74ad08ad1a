"""Tier 2: the accounting service in-process, over HTTP, on a real database.

User identification is STUBBED (see tests/test_accounting_fixtures.py: tokens map
to user models with groups and scopes); scope checks, handlers and the database
are the production code. The hub API used by the charger is a recording stub
(``RecordingHub``); real-hub tests live in tests/e2e/test_accounting_*.py.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from harness import free_port
from test_accounting_fixtures import SERVICE_TOKEN, AccountingServer

from labspace.services.accounting import charger, usage
from labspace.services.accounting.clock import now


@pytest.fixture
async def acct(tmp_path):
    server = AccountingServer(f"sqlite:///{tmp_path}/accounting.sqlite", free_port())
    yield server
    await server.close()


@pytest.fixture(params=["sqlite", "postgres"])
async def acct_db(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/accounting.sqlite"
    else:
        url = request.getfixturevalue("pg_cluster").create_database(f"acct_{free_port()}")
    server = AccountingServer(url, free_port())
    yield server
    await server.close()


def at(hours_ago: float = 0) -> str:
    return (now() - timedelta(hours=hours_ago)).isoformat()


def reserve_body(user="alice", server="", groups=("proj-a",), project=None, when=None, **kw):
    when = when or at()
    return {
        "key": f"{user}/{server}/{when}",
        "user": user,
        "server": server,
        "groups": list(groups),
        "project": project,
        "profile": "small",
        "display_name": "Small",
        "resources": {"cpu": 1, "mem_gib": 2, "gpus": 0},
        "at": when,
        **kw,
    }


async def topup(acct, project="proj-a", amount="10"):
    r = await acct.call(
        "POST",
        "api/ledger/topup",
        "admin-token",
        {"project": project, "amount": amount, "reason": "grant"},
    )
    assert r.status_code == 201, r.text
    return r.json()


# -- the story: out of credit, see why, top-up, start again ----------------------


async def test_refusal_topup_and_start_again(acct_db):
    acct = acct_db
    r = await acct.internal("POST", "reserve", reserve_body())
    assert r.status_code == 402
    assert r.json() == {
        "status": 402,
        "message": "Project proj-a has 0.00 credits left; Small costs 1.00/hour",
    }
    await topup(acct, amount="1.5")
    body = reserve_body()
    r = await acct.internal("POST", "reserve", body)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "session": body["key"],
        "project": "proj-a",
        "price_per_hour": "1.00",
        "reserved": "1.00",
        "balance_after": "0.50",
    }
    again = await acct.internal("POST", "reserve", body)  # idempotent by key
    assert again.status_code == 200 and again.json()["session"] == body["key"]
    second = await acct.internal("POST", "reserve", reserve_body(server="two"))
    assert second.status_code == 402
    assert "has 0.50 credits left" in second.json()["message"]
    info = (await acct.internal("GET", "spawn-info?user=alice&groups=proj-a")).json()
    assert info["projects"] == [{"name": "proj-a", "balance": "0.50", "default": True}]
    assert info["prices"] == {"small": "1.00", "gpu": "4.00"}  # gpu: derived (1 x gpu_hour)


async def test_project_choice_and_personal_allowance(acct):
    await topup(acct, "proj-b", "5")
    r = await acct.internal("POST", "reserve", reserve_body(project="proj-b"))
    assert r.status_code == 403
    assert r.json()["message"] == "Project 'proj-b' is not one of yours (yours: proj-a)"
    r = await acct.internal(
        "POST", "reserve", reserve_body("bob", groups=["proj-a", "proj-b"], project="proj-b")
    )
    assert r.status_code == 200 and r.json()["project"] == "proj-b"
    r = await acct.internal("POST", "reserve", reserve_body("carol", groups=[]))
    assert r.status_code == 200, r.text
    assert r.json()["project"] is None and r.json()["balance_after"] == "4.00"  # allowance 5


async def test_refuse_without_project(tmp_path):
    acct = AccountingServer(f"sqlite:///{tmp_path}/a.sqlite", free_port(), {"no_project": "refuse"})
    try:
        r = await acct.internal("POST", "reserve", reserve_body("carol", groups=[]))
        assert r.status_code == 403
        assert "You are in no project" in r.json()["message"]
        info = (await acct.internal("GET", "spawn-info?user=carol&groups=")).json()
        assert info["refuse_without_project"] is True and info["personal"] is None
    finally:
        await acct.close()


async def test_events_close_sessions_once(acct_db):
    acct = acct_db
    await topup(acct)
    body = reserve_body(when=at(2))
    assert (await acct.internal("POST", "reserve", body)).status_code == 200
    key = body["key"]
    stop_at = (datetime.fromisoformat(body["at"]) + timedelta(minutes=90)).isoformat()
    events = [
        {
            "id": f"{key}:start",
            "key": key,
            "type": "start",
            "at": body["at"],
            "user": "alice",
            "server": "",
        },
        {
            "id": f"{key}:stop",
            "key": key,
            "type": "stop",
            "at": stop_at,
            "user": "alice",
            "server": "",
            "reason": "stopped",
        },
    ]
    r = await acct.internal("POST", "events", {"events": events})
    assert r.json() == {"accepted": 2, "duplicates": 0}
    r = await acct.internal("POST", "events", {"events": events})
    assert r.json() == {"accepted": 0, "duplicates": 2}
    sessions = (await acct.call("GET", "api/sessions", "alice-token")).json()["sessions"]
    assert [(s["status"], s["cost"], s["closed_by"]) for s in sessions] == [
        ("closed", "1.50", "stop")
    ]
    me = (await acct.call("GET", "api/me", "alice-token")).json()
    assert me["projects"][0]["balance"] == "8.50"


async def test_stop_before_reserve_waits(acct):
    await topup(acct)
    body = reserve_body(when=at(1))
    key = body["key"]
    stop = {
        "id": f"{key}:stop",
        "key": key,
        "type": "stop",
        "at": at(0.5),
        "user": "alice",
        "server": "",
    }
    assert (await acct.internal("POST", "events", {"events": [stop]})).json()["accepted"] == 1
    assert (await acct.internal("POST", "reserve", body)).status_code == 200
    s = (await acct.call("GET", "api/sessions", "alice-token")).json()["sessions"][0]
    assert s["status"] == "closed" and s["cost"] == "0.50"


async def test_unreserved_start_is_still_charged(acct):
    """on_unreachable: open -> the start event carries the reserve body."""
    await topup(acct)
    body = reserve_body(when=at(1))
    key = body["key"]
    events = [
        {
            "id": f"{key}:unreachable",
            "key": key,
            "type": "unreachable",
            "at": body["at"],
            "user": "alice",
            "server": "",
            "decision": "allowed",
            "mode": "open",
        },
        {
            "id": f"{key}:start",
            "key": key,
            "type": "start",
            "at": body["at"],
            "user": "alice",
            "server": "",
            "reserve": body,
        },
    ]
    assert (await acct.internal("POST", "events", {"events": events})).json()["accepted"] == 2
    await acct.service.loops.charge()
    s = (await acct.call("GET", "api/sessions", "alice-token")).json()["sessions"][0]
    assert s["status"] == "running" and s["cost"] == "1.00"
    health = (await acct.call("GET", "api/health", "auditor-token")).json()
    assert health["unreachable"][0]["decision"] == "allowed"
    page = await acct.call("GET", "admin", "auditor-token")
    assert "allowed" in page.text and "Starts while the service was unreachable" in page.text


class RecordingHub:
    """STUB of the hub API for the charger: records the stops it is asked for."""

    def __init__(self):
        self.stopped = []

    async def stop_server(self, user, server):
        self.stopped.append((user, server))
        return 204


async def test_charger_warns_then_stops_after_grace(acct, monkeypatch, caplog):
    await topup(acct, amount="2")
    body = reserve_body(when=at(1.9))
    assert (await acct.internal("POST", "reserve", body)).status_code == 200
    acct.service.hub = RecordingHub()
    await acct.service.loops.charge()  # 1.9 of 2.00 used: below 10 %
    alerts = (await acct.internal("GET", "alerts?user=alice")).json()["alerts"]
    assert alerts[0]["level"] == "warning"
    assert alerts[0]["text"].startswith("Project proj-a has 0.10 credits left (below 10%)")
    assert acct.service.hub.stopped == []
    warned = [r.getMessage() for r in caplog.records if "Budget warning" in r.getMessage()]
    assert len(warned) == 1 and "project:proj-a has 0.10 left (below 0.1)" in warned[0]
    later = now() + timedelta(minutes=30)
    monkeypatch.setattr("labspace.services.accounting.loops.now", lambda: later)
    await acct.service.loops.charge()  # 30 min later: exhausted, grace 0: stopped
    assert acct.service.hub.stopped == [("alice", "")]
    alerts = (await acct.internal("GET", "alerts?user=alice")).json()["alerts"]
    assert alerts[0]["level"] == "danger" and "has no budget left" in alerts[0]["text"]
    s = (await acct.call("GET", "api/sessions", "alice-token")).json()["sessions"][0]
    assert "budget of proj-a exhausted" in s["stop_reason"]
    page = await acct.call("GET", "", "alice-token")
    assert "has no budget left" in page.text and "<svg" in page.text


async def test_reconciler_closes_gone_servers_only_when_outbox_drained(acct):
    await topup(acct)
    gone = reserve_body(server="gone", when=at(2))
    alive = reserve_body(server="alive", when=at(2))
    for body in (gone, alive):
        assert (await acct.internal("POST", "reserve", body)).status_code == 200
    svc = acct.service
    active = {("alice", "alive"): alive["at"]}
    seen = now()
    assert svc.loops.outbox_drained(seen) is False  # no report yet after a start
    assert svc.db.work(charger.mark_seen, active, seen, svc.policy, may_close=False) == []
    r = await acct.internal("POST", "outbox-status", {"depth": 0, "oldest": None})
    assert r.status_code == 200
    assert svc.loops.outbox_drained(now()) is True
    assert svc.db.work(charger.mark_seen, active, seen, svc.policy) == [gone["key"]]
    sessions = (await acct.call("GET", "api/sessions?limit=5", "alice-token")).json()["sessions"]
    by_server = {s["server"]: s for s in sessions}
    assert by_server["gone"]["closed_by"] == "reconciler"
    assert by_server["gone"]["ended_at"] == by_server["gone"]["started_at"]  # last seen
    assert by_server["alive"]["status"] == "reserved"
    # the hub's own stop arrives later: its time wins
    stop_at = (datetime.fromisoformat(gone["at"]) + timedelta(hours=1)).isoformat()
    event = {
        "id": f"{gone['key']}:stop",
        "key": gone["key"],
        "type": "stop",
        "at": stop_at,
        "user": "alice",
        "server": "gone",
    }
    await acct.internal("POST", "events", {"events": [event]})
    sessions = (await acct.call("GET", "api/sessions?limit=5", "alice-token")).json()["sessions"]
    gone_now = next(s for s in sessions if s["server"] == "gone")
    assert (gone_now["closed_by"], gone_now["cost"]) == ("stop", "1.00")
    health = (await acct.internal("GET", "health")).json()
    assert health["outbox_depth"] == 0 and health["last_reconcile"]


async def test_ledger_operations_and_reversal(acct):
    await topup(acct, "proj-lab", "10")
    r = await acct.call(
        "POST",
        "api/ledger/assign",
        "admin-token",
        {"parent": "proj-lab", "child": "proj-a", "amount": "4", "reason": "q1"},
    )
    assert r.status_code == 201 and r.json()["balances"] == {"proj-lab": "6.00", "proj-a": "4.00"}
    tx = r.json()["transaction"]
    r = await acct.call(
        "POST", "api/ledger/reverse", "admin-token", {"transaction": tx, "reason": "wrong project"}
    )
    assert r.status_code == 201 and r.json()["balances"]["proj-a"] == "0.00"
    r = await acct.call(
        "POST", "api/ledger/reverse", "admin-token", {"transaction": tx, "reason": "again"}
    )
    assert r.status_code == 409 and "already reversed" in r.json()["message"]
    r = await acct.call(
        "POST",
        "api/ledger/move",
        "admin-token",
        {"from": "proj-a", "to": "proj-b", "amount": "1", "reason": "x"},
    )
    assert r.status_code == 402 and r.json()["message"] == "proj-a has 0.00 left, 1.00 needed"
    ledger_rows = (await acct.call("GET", "api/ledger", "auditor-token")).json()["transactions"]
    assert {(t["kind"], t["actor"], t["reason"]) for t in ledger_rows} >= {
        ("assign", "admin", "q1"),
        ("reverse", "admin", "wrong project"),
        ("topup", "admin", "grant"),
    }


async def test_reports_json_and_csv(acct):
    await topup(acct)
    for user, groups in (("alice", ["proj-a"]), ("bob", ["proj-a", "proj-b"])):
        body = reserve_body(user, groups=groups, when=at(1))
        assert (await acct.internal("POST", "reserve", body)).status_code == 200
    await acct.service.loops.charge()
    r = await acct.call("GET", "api/usage?group_by=user&project=proj-a", "lead-token")
    rows = r.json()["rows"]
    assert [(x["user"], x["sessions"], x["cost"]) for x in rows] == [
        ("alice", 1, "1.00"),
        ("bob", 1, "1.00"),
    ]
    r = await acct.call("GET", "api/usage?group_by=project&format=csv", "auditor-token")
    assert r.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(r.text)))
    assert table == [
        {
            "project": "proj-a",
            "sessions": "2",
            "cost": "2.00",
            "charged": "2.00",
            "unbilled": "0.00",
        }
    ]
    r = await acct.call("GET", "api/usage?group_by=day", "alice-token")
    # today, or yesterday when the test ran across midnight UTC
    today = datetime.now(UTC)
    days = {d.date().isoformat() for d in (today, today - timedelta(days=1))}
    assert r.json()["rows"][-1]["day"] in days and r.json()["rows"][-1]["cost"] == "1.00"
    metrics = (await acct.call("GET", "metrics", "auditor-token")).text
    for name in (
        'labspace_accounting_balance{kind="project",name="proj-a"} 7.99',
        "labspace_accounting_open_sessions 2.0",
        "labspace_accounting_outbox_depth",
        'labspace_accounting_usage_total{project="proj-a"} 2.00',
        "labspace_accounting_refusals_total",
    ):
        assert name in metrics


async def test_price_change_is_not_retroactive(acct):
    svc = acct.service
    await topup(acct, amount="50")
    body = reserve_body(when=at(2))
    assert (await acct.internal("POST", "reserve", body)).status_code == 200
    await svc.loops.charge()  # 2 h at 1.00
    changed = {
        **svc.policy.section,
        "prices": {"profiles": {"small": 3.0}, "resources": {"gpu_hour": 4.0}},
    }
    svc.policy.section = changed
    assert svc.db.work(usage.sync_prices, svc.policy, now()) == 1
    prices = (await acct.call("GET", "api/prices", "alice-token")).json()["prices"]
    small = next(p for p in prices if p["profile"] == "small")
    assert small["price_per_hour"] == "3.00" and len(small["schedule"]) == 2
    s = (await acct.call("GET", "api/sessions", "alice-token")).json()["sessions"][0]
    assert s["cost"] == "2.00"  # the past stays at the old price


async def test_pages_render_for_members_and_leads(acct):
    await topup(acct)
    assert (await acct.internal("POST", "reserve", reserve_body(when=at(1)))).status_code == 200
    await acct.service.loops.charge()
    page = await acct.call("GET", "projects/proj-a", "lead-token")
    assert page.status_code == 200 and "Usage per member" in page.text and "alice" in page.text
    page = await acct.call("GET", "projects/proj-a", "bob-token")
    assert "Your usage in this project" in page.text and ">alice<" not in page.text
    assert "Accounting admin" not in page.text  # the admin link is for read-all only
    page = await acct.call("GET", "admin", "admin-token")
    assert 'name="_xsrf"' in page.text and "Top up" in page.text
    assert '<a class="nav-link" href="/services/accounting/admin">Accounting admin</a>' in page.text
    page = await acct.call("GET", "admin", "auditor-token")
    assert page.status_code == 200 and 'action="/services/accounting/admin/topup"' not in page.text
    r = await acct.call(
        "POST",
        "admin/topup",
        "admin-token",
        content="project=proj-a&amount=2&reason=form",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 302 and r.headers["location"] == "/services/accounting/admin"
    acct.http.cookies.update(r.cookies)
    page = await acct.call("GET", "admin", "admin-token")
    assert "Recorded transaction" in page.text


async def test_form_post_without_xsrf_is_refused(acct):
    """A browser form post (cookie, no token) without the XSRF token is refused."""
    r = await acct.http.post(
        "admin/topup", data={"project": "proj-a", "amount": "5", "reason": "csrf"}
    )
    assert r.status_code == 403
    assert SERVICE_TOKEN not in r.text


@pytest.mark.parametrize("together", [True, False], ids=["one-batch", "two-batches"])
async def test_stop_before_an_unreserved_start(acct, together):
    """Fail-open start whose stop reaches the service first: the session is
    opened from the start's ``reserve`` and closed at the stop's time."""
    await topup(acct)
    body = reserve_body(when=at(1))
    key = body["key"]
    stop = {
        "id": f"{key}:stop",
        "key": key,
        "type": "stop",
        "at": at(0.5),
        "user": "alice",
        "server": "",
    }
    start = {
        "id": f"{key}:start",
        "key": key,
        "type": "start",
        "at": body["at"],
        "user": "alice",
        "server": "",
        "reserve": body,
    }
    batches = [[stop, start]] if together else [[stop], [start]]
    for batch in batches:
        r = await acct.internal("POST", "events", {"events": batch})
        assert r.status_code == 200, r.text
    s = (await acct.call("GET", "api/sessions", "alice-token")).json()["sessions"][0]
    assert (s["status"], s["closed_by"], s["cost"]) == ("closed", "stop", "0.50")
