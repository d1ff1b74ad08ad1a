"""Tier 2 (issue 10): the accounting service answers bad input with a 4xx that
says what is wrong, never a 5xx; reads go on while another connection holds
SQLite's write lock, and writes get a prompt 503 with a message instead of a
500 after 30 s; 405s say what is allowed; bodies over 1 MiB get a 413.

User identification is STUBBED (tests/test_accounting_fixtures.py); the rest
is the production code on a real SQLite file. The same attacks through a real
hub are in tests/security/test_accounting_input.py.
"""

from __future__ import annotations

import json
import sqlite3
import time

import pytest
from harness import free_port
from test_accounting_fixtures import SERVICE_TOKEN, AccountingServer

from labspace.services.accounting.clock import now
from labspace.services.kit.web import masked_uri

BUSY = 0.5  # seconds a write waits for SQLite's lock in these tests


@pytest.fixture
async def acct(tmp_path):
    server = AccountingServer(
        f"sqlite:///{tmp_path}/accounting.sqlite", free_port(), busy_timeout=BUSY
    )
    server.path = tmp_path / "accounting.sqlite"
    yield server
    await server.close()


def reserve(user: str = "alice", **kw) -> dict:
    when = now().isoformat()
    return {
        "key": f"{user}//{when}",
        "user": user,
        "server": "",
        "groups": ["proj-a"],
        "project": None,
        "profile": "small",
        "display_name": "Small",
        "resources": {"cpu": 1},
        "at": when,
        **kw,
    }


async def test_reads_go_on_and_writes_get_503_while_the_lock_is_held(acct):
    r = await acct.call(
        "POST",
        "api/ledger/topup",
        "admin-token",
        {"project": "proj-a", "amount": "5", "reason": "r"},
    )
    assert r.status_code == 201, r.text
    assert (await acct.call("GET", "api/me", "alice-token")).status_code == 200  # its accounts
    holder = sqlite3.connect(acct.path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process's write lock
    try:
        reads = ["api/me", "api/prices", "api/projects", "api/usage", "api/sessions", "api/ledger"]
        for path in reads:
            started = time.monotonic()
            r = await acct.call(
                "GET", path, "admin-token" if path == "api/ledger" else "alice-token"
            )
            assert r.status_code == 200, (path, r.text)
            assert time.monotonic() - started < BUSY, f"{path} waited for the write lock"
        page = await acct.call("GET", "admin", "admin-token")
        assert page.status_code == 200 and "Top up" in page.text
        writes = [
            (
                "api/ledger/topup",
                "admin-token",
                {"project": "proj-a", "amount": "1", "reason": "r"},
            ),
            ("api/internal/reserve", SERVICE_TOKEN, reserve()),
        ]
        for path, token, body in writes:
            started = time.monotonic()
            r = await acct.call("POST", path, token, body)
            took = time.monotonic() - started
            assert r.status_code == 503, (path, r.text)
            assert "busy" in r.json()["message"] and r.headers["Retry-After"] == "1"
            assert took < BUSY + 2, f"{path} answered after {took:.1f}s"
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    r = await acct.call(
        "POST",
        "api/ledger/topup",
        "admin-token",
        {"project": "proj-a", "amount": "1", "reason": "r"},
    )
    assert r.status_code == 201, r.text


TOPUP = {"project": "proj-a", "amount": "1", "reason": "r"}
BAD_API = [
    # (method, path, body, message)
    ("POST", "api/ledger/reverse", {"transaction": 2**70, "reason": "r"}, "'transaction' must"),
    ("POST", "api/ledger/reverse", {"transaction": 2**31, "reason": "r"}, "'transaction' must"),
    ("POST", "api/ledger/reverse", {"transaction": None, "reason": "r"}, "'transaction' must"),
    ("POST", "api/ledger/topup", {**TOPUP, "amount": "1e999999"}, "'amount' must"),
    ("POST", "api/ledger/topup", {**TOPUP, "amount": None}, "'amount' must"),
    ("POST", "api/ledger/topup", {**TOPUP, "amount": "Infinity"}, "'amount' must"),
    ("POST", "api/ledger/topup", {**TOPUP, "project": None}, "'project' must"),
    ("POST", "api/ledger/topup", {**TOPUP, "reason": None}, "'reason' is required"),
    ("POST", "api/ledger/topup", {**TOPUP, "reason": "a\u0000b"}, "NUL"),
    ("POST", "api/ledger/topup", "null", "must be a JSON object"),
    ("POST", "api/ledger/move", {**TOPUP, "from": [1], "to": {}}, "'from' must"),
    ("GET", "api/usage?from=0001-01-01T00:00:00%2B01:00", None, "'from' and 'to'"),
    ("GET", "api/usage?to=9999-12-31T23:59:59-01:00", None, "'from' and 'to'"),
    ("GET", "api/usage?from=null", None, "'from' and 'to'"),
    ("GET", "api/usage?group_by=null", None, "'group_by' must"),
    ("GET", "api/usage?format=null", None, "'format' must"),
    ("GET", "api/sessions?limit=abc", None, "'limit' must"),
    ("GET", "api/sessions?limit=99999999999999999999999", None, "'limit' must"),
    ("GET", "api/sessions?status=null", None, "'status' must"),
    ("GET", "api/sessions?format=null", None, "'format' must"),
    ("GET", "api/ledger?limit=null", None, "'limit' must"),
    ("GET", "api/projects/a%00b", None, "NUL"),
]


@pytest.mark.parametrize(
    "method,path,body,message",
    BAD_API,
    ids=[f"{i}-{p[:30]}" for i, (_, p, _, _) in enumerate(BAD_API)],
)
async def test_bad_api_input_is_a_400_that_says_why(acct, method, path, body, message):
    r = await acct.call(method, path, "admin-token", body)
    assert r.status_code == 400, r.text
    assert message in r.json()["message"]


GOOD_EVENT = {"id": "k:start", "key": "k", "type": "start", "at": "2026-01-01T00:00:00Z"}
BAD_INTERNAL = [
    ("reserve", reserve(resources={"cpu": 1e308 * 10}), "'resources.cpu' must"),
    ("reserve", '{"resources": {"cpu": NaN}}', "must be"),
    ("reserve", reserve(at="0001-01-01T00:00:00+01:00"), "'at' must be an ISO 8601 time"),
    ("reserve", reserve(server=7), "'server' must"),
    ("events", {"events": [{**GOOD_EVENT, "user": [1]}]}, "events[0]: 'user' must"),
    ("events", {"events": [{**GOOD_EVENT, "server": {}}]}, "events[0]: 'server' must"),
    ("events", {"events": [{**GOOD_EVENT, "reason": 5}]}, "events[0]: 'reason' must"),
    ("events", {"events": [{**GOOD_EVENT, "reserve": "x"}]}, "events[0]: 'reserve' must"),
    ("events", {"events": [{**GOOD_EVENT, "reserve": {"user": None}}]}, "events[0]: 'key'"),
    ("outbox-status", {"depth": 2**70}, "'depth' must"),
    ("outbox-status", {"depth": 1, "oldest": True}, "'oldest' must"),
]


@pytest.mark.parametrize(
    "path,body,message", BAD_INTERNAL, ids=[f"{p}-{i}" for i, (p, _, _) in enumerate(BAD_INTERNAL)]
)
async def test_bad_internal_input_is_a_400_that_says_why(acct, path, body, message):
    r = await acct.call("POST", "api/internal/" + path, SERVICE_TOKEN, body)
    assert r.status_code == 400, r.text
    assert message in r.json()["message"]


async def test_bad_internal_queries_are_400(acct):
    for path in ("spawn-info?user=" + "u" * 300, "alerts?user="):
        r = await acct.call("GET", "api/internal/" + path, SERVICE_TOKEN)
        assert r.status_code == 400, r.text
        assert r.json()["message"].startswith("'user' is required")


@pytest.mark.parametrize("transaction", ["²", "9" * 30, "-1", ""])
async def test_admin_form_with_a_bad_transaction_id_says_so(acct, transaction):
    r = await acct.call(
        "POST",
        "admin/reverse",
        "admin-token",
        content=f"transaction={transaction}&reason=oops",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 302, r.text
    acct.http.cookies.update(r.cookies)
    page = await acct.call("GET", "admin", "admin-token")
    assert page.status_code == 200
    assert "&#x27;transaction&#x27; must be a transaction id" in page.text


WRONG_METHODS = [
    ("POST", "api/me", "admin-token", "GET"),
    ("DELETE", "api/ledger", "admin-token", "GET"),
    ("GET", "api/ledger/topup", "admin-token", "POST"),
    ("PUT", "api/internal/events", SERVICE_TOKEN, "POST"),
    ("GET", "api/internal/reserve", SERVICE_TOKEN, "POST"),
    ("PATCH", "admin", "admin-token", "GET"),
]


@pytest.mark.parametrize("method,path,token,allow", WRONG_METHODS)
async def test_405_says_what_is_allowed(acct, method, path, token, allow):
    r = await acct.call(method, path, token, {} if method != "GET" else None)
    assert r.status_code == 405, r.text
    assert r.headers["Allow"] == allow
    if path.startswith("api/"):
        message = f"{method} is not allowed here (allowed: {allow})"  # the kit's one wording
        assert r.json() == {"status": 405, "message": message}


@pytest.mark.parametrize(
    "path,token", [("api/ledger/topup", "admin-token"), ("api/internal/events", SERVICE_TOKEN)]
)
async def test_a_body_over_1_mib_is_a_413(acct, path, token):
    body = json.dumps({"reason": "x" * (1024 * 1024 + 10)})
    r = await acct.call("POST", path, token, body)
    assert r.status_code == 413, r.text
    assert "1048576 bytes" in r.json()["message"]  # the kit's one wording (was "1 MiB")


def test_oauth_code_and_state_are_masked_in_the_access_log():
    uri = "/services/accounting/oauth_callback?code=abc123&state=xyz789&next=%2Fx"
    masked = masked_uri(uri)
    assert "abc123" not in masked and "xyz789" not in masked
    assert (
        masked
        == "/services/accounting/oauth_callback?code=[secret]&state=[secret]&next=%2Fx"  # kit's
    )


async def test_the_document_lists_the_methods_each_path_answers(acct):
    """Every documented path answers DELETE with a 405 whose ``Allow`` is what
    the document says, and documents that 405 and the 503 of a busy database."""
    doc = (await acct.call("GET", "api/openapi.json")).json()
    for path, item in doc["paths"].items():
        url = "api" + path.replace("{name}", "proj-a")
        r = await acct.call("DELETE", url, "admin-token")
        assert r.status_code == 405, (path, r.text)
        assert r.headers["Allow"] == ", ".join(m.upper() for m in item), path
        for op in item.values():
            assert {"405", "503"} <= set(op["responses"]), path


async def test_a_whole_float_is_a_transaction_id(acct):
    """JSON Schema counts 6903.0 as an integer: the service reads it as one."""
    r = await acct.call(
        "POST", "api/ledger/reverse", "admin-token", {"transaction": 6903.0, "reason": "r"}
    )
    assert r.status_code == 404, r.text
    assert r.json()["message"] == "No such transaction: 6903"


async def test_a_name_that_is_no_project_is_a_404(acct):
    r = await acct.call("GET", "api/projects/%11%C2%9Ds", "admin-token")
    assert r.status_code == 404, r.text
    assert r.json()["message"] == "No such project: \x11\x9ds"
    r = await acct.call("GET", "api/projects/%11%C2%9Ds", "alice-token")
    assert r.status_code == 403, r.text  # who may not read it learns nothing more
    r = await acct.call("GET", "api/projects/proj-new?from=&to=", "admin-token")
    assert r.status_code == 200 and r.json()["balance"] == "0.00"  # a project, no budget yet


async def test_unknown_paths_and_the_callback_answer_in_the_service_shape(acct):
    r = await acct.call("GET", "api/nope", "alice-token")
    assert r.status_code == 404
    assert r.json() == {
        "status": 404,
        "message": "No such page or API path in the accounting service",
    }
    r = await acct.call("OPTIONS", "oauth_callback")
    assert r.status_code == 405 and r.headers["Allow"] == "GET"
