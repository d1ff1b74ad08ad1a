"""Tier 2: who may call what, on EVERY endpoint, and bad input -> 4xx with a message.

User identification is STUBBED (tests/test_accounting_fixtures.py maps tokens to
user models with groups and scopes); the scope checks under test are the
production code. Users: alice (proj-a, read), bob (proj-a + proj-b, read),
lead (leads proj-a, read), carol (no project, read), auditor (read-all),
admin (admin), nobody (no accounting scope).
"""

from __future__ import annotations

import pytest
from harness import free_port
from sqlalchemy import text
from test_accounting_fixtures import DELIVERER_SECRET, SERVICE_TOKEN, AccountingServer

from labspace.services.accounting.clock import now


@pytest.fixture(scope="module")
def acct_url(tmp_path_factory):
    return f"sqlite:///{tmp_path_factory.mktemp('acct')}/accounting.sqlite"


@pytest.fixture
async def acct(acct_url):
    server = AccountingServer(acct_url, free_port())
    if not server.db.work(lambda s: s.scalar(text("SELECT count(*) FROM usage_sessions"))):
        await seed(server)
    yield server
    await server.close()


async def seed(acct):
    for project in ("proj-a", "proj-b", "proj-lab"):
        r = await acct.call(
            "POST",
            "api/ledger/topup",
            "admin-token",
            {"project": project, "amount": "20", "reason": "seed"},
        )
        assert r.status_code == 201
    when = now().isoformat()
    for user, groups in (("alice", ["proj-a"]), ("bob", ["proj-a", "proj-b"])):
        body = {
            "key": f"{user}//{when}",
            "user": user,
            "server": "",
            "groups": groups,
            "project": None,
            "profile": "small",
            "display_name": "Small",
            "resources": {},
            "at": when,
        }
        assert (await acct.internal("POST", "reserve", body)).status_code == 200


OP_BODIES = {
    "topup": {"project": "proj-a", "amount": "1", "reason": "r"},
    "assign": {"parent": "proj-lab", "child": "proj-a", "amount": "1", "reason": "r"},
    "move": {"from": "proj-a", "to": "proj-b", "amount": "1", "reason": "r"},
    "reverse": {"transaction": 1, "reason": "r"},
    "renew": {"reason": "r"},
}

# (method, path, body, who may, who may not): every user-facing endpoint
MATRIX = [
    ("GET", "api/prices", None, ["alice", "carol", "auditor", "admin"], ["nobody", None]),
    ("GET", "api/me", None, ["alice", "carol", "admin"], ["nobody", None]),
    ("GET", "api/usage", None, ["alice", "auditor"], ["nobody", None]),
    (
        "GET",
        "api/usage?user=bob",
        None,
        ["bob", "auditor", "admin"],
        ["alice", "carol", "lead", "nobody", None],
    ),
    (
        "GET",
        "api/usage?project=proj-a&group_by=user",
        None,
        ["lead", "auditor", "alice"],
        ["nobody", None],
    ),
    ("GET", "api/sessions", None, ["alice", "auditor"], ["nobody", None]),
    ("GET", "api/sessions?user=bob", None, ["bob", "auditor"], ["alice", "lead", "nobody", None]),
    ("GET", "api/projects", None, ["alice", "auditor"], ["nobody", None]),
    (
        "GET",
        "api/projects/proj-b",
        None,
        ["bob", "auditor", "admin"],
        ["alice", "carol", "lead", "nobody", None],
    ),
    ("GET", "api/projects/proj-a", None, ["alice", "lead", "auditor"], ["carol", "nobody", None]),
    ("GET", "api/ledger", None, ["auditor", "admin"], ["alice", "lead", "nobody", None]),
    ("GET", "api/health", None, ["auditor", "admin"], ["alice", "lead", "nobody", None]),
    ("GET", "metrics", None, ["auditor", "admin"], ["alice", "lead", "nobody", None]),
    *[
        ("POST", f"api/ledger/{op}", body, ["admin"], ["alice", "lead", "auditor", "nobody", None])
        for op, body in OP_BODIES.items()
    ],
    ("GET", "", None, ["alice", "carol"], ["nobody"]),
    ("GET", "projects", None, ["alice"], ["nobody"]),
    ("GET", "projects/proj-b", None, ["bob", "auditor"], ["alice", "carol", "nobody"]),
    ("GET", "admin", None, ["auditor", "admin"], ["alice", "lead", "nobody"]),
    (
        "POST",
        "admin/topup",
        "project=proj-a&amount=1&reason=r",
        ["admin"],
        ["alice", "auditor", "nobody"],
    ),
]


def expected(path: str) -> int:
    """What a permitted call answers: 201 for a recorded ledger operation (200 for
    renew, which records only what is due), 302 back to the admin page after a
    form, else 200."""
    if path.startswith("api/ledger/"):
        return 200 if path.endswith("/renew") else 201
    return 302 if path.startswith("admin/") else 200


async def fresh_transaction(acct) -> int:
    body = {"project": "proj-b", "amount": "1", "reason": "to reverse"}
    r = await acct.call("POST", "api/ledger/topup", "admin-token", body)
    assert r.status_code == 201, r.text
    return r.json()["transaction"]


def token(who):
    return f"{who}-token" if who else None


def _id(row):
    return f"{row[0]} /{row[1]}"


@pytest.mark.parametrize("method,path,body,allowed,refused", MATRIX, ids=[_id(r) for r in MATRIX])
async def test_scopes(acct, method, path, body, allowed, refused):
    headers = {}
    if isinstance(body, str):
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    for who in allowed:  # past the scope check: the one answer of a permitted call
        if path == "api/ledger/reverse":  # a transaction of its own, so it can be reversed
            body = {"transaction": await fresh_transaction(acct), "reason": "r"}
        r = await acct.call(method, path, token(who), body, headers=headers)
        assert r.status_code == expected(path), (who, r.status_code, r.text[:300])
    for who in refused:
        r = await acct.call(method, path, token(who), body, headers=headers)
        if who is None and method == "GET" and not path.startswith(("api/", "metrics")):
            assert r.status_code == 302  # pages send a browser to the hub's login
            continue
        assert r.status_code == 403, (who, r.status_code, r.text[:300])
        if path.startswith(("api/", "metrics")):
            assert r.json()["status"] == 403 and r.json()["message"]


async def test_openapi_is_public_and_lists_every_path(acct):
    r = await acct.call("GET", "api/openapi.json")
    assert r.status_code == 200
    paths = set(r.json()["paths"])
    assert paths == {
        "/prices",
        "/me",
        "/usage",
        "/sessions",
        "/projects",
        "/projects/{name}",
        "/ledger",
        "/ledger/topup",
        "/ledger/assign",
        "/ledger/move",
        "/ledger/reverse",
        "/ledger/renew",
        "/health",
    }


async def test_nobody_reads_another_users_data(acct):
    """alice never sees bob's sessions or usage, through any door."""
    for path in (
        "api/sessions",
        "api/usage?group_by=user",
        "api/me",
        "api/projects/proj-a?from=2020-01-01",
        "",
        "projects/proj-a",
    ):
        r = await acct.call("GET", path, "alice-token")
        assert r.status_code == 200, path
        assert "bob" not in r.text, path
    r = await acct.call("GET", "api/sessions?project=proj-a", "alice-token")
    assert {s["user"] for s in r.json()["sessions"]} == {"alice"}
    r = await acct.call("GET", "api/usage?group_by=user&project=proj-a", "alice-token")
    assert {row["user"] for row in r.json()["rows"]} == {"alice"}
    r = await acct.call("GET", "api/usage?group_by=user&project=proj-a", "lead-token")
    assert {row["user"] for row in r.json()["rows"]} == {"alice", "bob"}
    r = await acct.call("GET", "api/projects", "alice-token")
    assert [p["name"] for p in r.json()["projects"]] == ["proj-a"]


@pytest.mark.parametrize("path", ["spawn-info?user=a", "alerts?user=a", "health"])
@pytest.mark.parametrize("who", ["admin-token", "wrong", None])
async def test_internal_endpoints_need_the_service_token(acct, path, who):
    r = await acct.call("GET", "api/internal/" + path, who)
    assert r.status_code == 403
    assert r.json()["message"] == "Internal endpoints need the accounting service's token"
    for post in ("reserve", "events", "outbox-status"):
        r = await acct.call("POST", "api/internal/" + post, who, {})
        assert r.status_code == 403


async def test_the_deliverers_secret_posts_events_and_status_only(acct):
    """The deliverer has its own secret (not the service's hub token): it may
    post events and the outbox status, and nothing else."""
    event = {"id": "k:stop", "key": "k", "type": "stop", "at": "2026-01-01T00:00:00Z"}
    r = await acct.call("POST", "api/internal/events", DELIVERER_SECRET, {"events": [event]})
    assert r.status_code == 200, r.text
    r = await acct.call("POST", "api/internal/outbox-status", DELIVERER_SECRET, {"depth": 0})
    assert r.status_code == 200, r.text
    for method, path in [
        ("GET", "spawn-info?user=a"),
        ("GET", "alerts?user=a"),
        ("GET", "health"),
        ("POST", "reserve"),
    ]:
        r = await acct.call(
            method, "api/internal/" + path, DELIVERER_SECRET, {} if method == "POST" else None
        )
        assert r.status_code == 403, (path, r.text)


GOOD_RESERVE = {
    "key": "x//t",
    "user": "x",
    "server": "",
    "groups": [],
    "project": None,
    "profile": "small",
    "display_name": "Small",
    "resources": {},
    "at": "2026-01-01T00:00:00Z",
}
GOOD_EVENT = {"id": "k:stop", "key": "k", "type": "stop", "at": "2026-01-01T00:00:00Z"}

BAD_INTERNAL = [
    ("reserve", "not json", "not valid JSON"),
    ("reserve", [1], "must be a JSON object"),
    ("reserve", {**GOOD_RESERVE, "key": ""}, "'key' must be a non-empty string"),
    ("reserve", {**GOOD_RESERVE, "user": 5}, "'user' must be a non-empty string"),
    ("reserve", {**GOOD_RESERVE, "profile": None}, "'profile' must be a non-empty string"),
    ("reserve", {**GOOD_RESERVE, "at": "yesterday"}, "'at' must be an ISO 8601 time"),
    ("reserve", {**GOOD_RESERVE, "project": 3}, "'project' must be a project name or null"),
    ("reserve", {**GOOD_RESERVE, "groups": "a,b"}, "'groups' must be a list"),
    ("reserve", {**GOOD_RESERVE, "resources": {"cpu": -1}}, "'resources.cpu' must be a number"),
    ("reserve", {**GOOD_RESERVE, "resources": []}, "'resources' must be an object"),
    ("reserve", {**GOOD_RESERVE, "key": "k" * 600}, "'key' is too long"),
    ("events", {}, "'events' must be a non-empty list"),
    ("events", {"events": [1]}, "events[0] must be an object"),
    ("events", {"events": [{**GOOD_EVENT, "type": "boom"}]}, "events[0].type must be one of"),
    ("events", {"events": [{**GOOD_EVENT, "at": None}]}, "events[0]: 'at' must be an ISO"),
    ("events", {"events": [{**GOOD_EVENT, "id": ""}]}, "events[0]: 'id' must be"),
    ("events", {"events": [GOOD_EVENT] * 1001}, "At most 1000 events"),
    ("outbox-status", {"depth": -1}, "'depth' must be a whole number"),
    ("outbox-status", {"depth": "3"}, "'depth' must be a whole number"),
]


@pytest.mark.parametrize(
    "path,body,message", BAD_INTERNAL, ids=[f"{p}-{i}" for i, (p, _, _) in enumerate(BAD_INTERNAL)]
)
async def test_bad_internal_bodies(acct, path, body, message):
    r = await acct.call("POST", "api/internal/" + path, SERVICE_TOKEN, body)
    assert r.status_code == 400
    assert message in r.json()["message"]


async def test_bad_internal_queries(acct):
    for path in ("spawn-info", "alerts"):
        r = await acct.internal("GET", path)
        assert r.status_code == 400 and r.json()["message"].startswith("'user' is required")


BAD_OPS = [
    ("topup", {"project": "proj-a", "amount": "1"}, 400, "'reason' is required"),
    ("topup", {"project": "proj-a", "amount": "0", "reason": "r"}, 400, "'amount' must be above 0"),
    ("topup", {"project": "proj-a", "amount": "-5", "reason": "r"}, 400, "'amount' must be"),
    ("topup", {"project": "proj-a", "amount": "abc", "reason": "r"}, 400, "'amount' must be"),
    ("topup", {"project": "proj-a", "amount": "NaN", "reason": "r"}, 400, "'amount' must be"),
    ("topup", {"project": "proj-a", "amount": True, "reason": "r"}, 400, "'amount' must be"),
    ("topup", {"project": "proj-a", "amount": "1e12", "reason": "r"}, 400, "at most"),
    (
        "topup",
        {"project": "lab-x", "amount": "1", "reason": "r"},
        400,
        "'project' must be a project",
    ),
    (
        "assign",
        {"parent": "proj-b", "child": "proj-a", "amount": "1", "reason": "r"},
        400,
        "proj-a is not a child of proj-b",
    ),
    (
        "move",
        {"from": "proj-a", "to": "proj-a", "amount": "1", "reason": "r"},
        400,
        "two different projects",
    ),
    ("move", {"from": "proj-a", "to": "proj-b", "amount": "999", "reason": "r"}, 402, "proj-a has"),
    ("reverse", {"transaction": "1", "reason": "r"}, 400, "'transaction' must be"),
    ("reverse", {"transaction": 99999, "reason": "r"}, 404, "No such transaction: 99999"),
    ("reserve", {"reason": "r"}, 404, "No such ledger operation"),
]


@pytest.mark.parametrize(
    "op,body,status,message", BAD_OPS, ids=[f"{o}-{i}" for i, (o, _, _, _) in enumerate(BAD_OPS)]
)
async def test_bad_ledger_operations(acct, op, body, status, message):
    r = await acct.call("POST", f"api/ledger/{op}", "admin-token", body)
    assert r.status_code == status, r.text
    assert message in r.json()["message"]


async def test_reversing_a_charge_is_refused(acct):
    rows = (await acct.call("GET", "api/ledger", "auditor-token")).json()["transactions"]
    reserve = next(t for t in rows if t["kind"] == "reserve")
    r = await acct.call(
        "POST", "api/ledger/reverse", "admin-token", {"transaction": reserve["id"], "reason": "r"}
    )
    assert r.status_code == 409 and "only top-ups" in r.json()["message"]


BAD_QUERIES = [
    "api/usage?group_by=week",
    "api/usage?from=yesterday",
    "api/usage?from=2026-02-01&to=2026-01-01",
    "api/usage?from=2000-01-01&to=2026-01-01",
    "api/usage?format=xml",
    "api/sessions?status=maybe",
    "api/sessions?limit=abc",
    "api/sessions?limit=0",
    "api/ledger?limit=-1",
    "api/ledger?account=project:none",
    "api/projects/proj-a?from=bad",
]


@pytest.mark.parametrize("path", BAD_QUERIES)
async def test_bad_queries(acct, path):
    r = await acct.call("GET", path, "admin-token")
    assert 400 <= r.status_code < 500
    assert r.json()["message"] and r.json()["status"] == r.status_code
