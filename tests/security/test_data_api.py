"""Issue 12: the data service's API refuses what a caller may not do.

The service runs in-process on real SQLite with real folders, authenticating
every request through its real ``HubOAuth`` against the stand-in hub of
tests/test_data_service.py (``/hub/api/user`` answers for each token). Each test
is an attack, and says what must hold:

- a plain user cannot tell an ungranted dataset from a missing one (404, the
  same message), nor reach it through any endpoint;
- no endpoint, for any caller, ever answers a credential's value, and no log line
  carries one;
- a plain user cannot call an admin endpoint (403) and changes nothing trying;
- the hub side's ``api/internal/start`` refuses every token but the service's
  own (users', admins', a hub admin's, a token in the URL);
- bad input on every endpoint is a 4xx ``{"status", "message"}`` naming the field,
  never a 5xx;
- a caller signed in by cookie (the pages) needs the XSRF token for every change.
"""

from __future__ import annotations

import logging
import re

import httpx
import pytest
from test_data_service import (
    COOKIE_SECRET,
    READ_KEY,
    SCOPE,
    SERVICE_TOKEN,
    WRITE_KEY,
    no_secret_in,
    started_service,
    world,  # noqa: F401 (a fixture)
)
from tornado.web import create_signed_value

ADMIN_NEEDED = "This needs the scope custom:labspace-data:admin"


@pytest.fixture
async def svc(monkeypatch, tmp_path, world):  # noqa: F811
    service, hub_server = await started_service(
        monkeypatch, tmp_path, world, f"sqlite:///{tmp_path / 'data.sqlite'}"
    )
    yield service
    await service.stop()
    hub_server.stop()


# -- invisible datasets ---------------------------------------------------------


async def test_an_ungranted_dataset_is_a_404_like_a_missing_one(svc):
    eve = svc.user("eve", ["lab-c"])  # in no granted group
    listed = await svc.call(eve, "GET", "api/datasets")
    assert listed.status_code == 200 and listed.json() == []
    assert (await svc.call(eve, "GET", "api/me/datasets")).json() == []
    for dataset in ("genomes", "bucket", "lab-a-scratch"):
        hidden = await svc.call(eve, "GET", f"api/datasets/{dataset}")
        missing = await svc.call(eve, "GET", f"api/datasets/{dataset}-x")
        assert hidden.status_code == missing.status_code == 404
        assert hidden.json()["message"] == f"No such dataset: {dataset}"
        assert missing.json()["message"] == f"No such dataset: {dataset}-x"
        assert hidden.headers.keys() == missing.headers.keys()
    # admin-only sub-resources answer 403 whether the dataset exists or not (no oracle)
    for path in ("genomes/grants", "nothing/grants"):
        r = await svc.call(eve, "GET", f"api/datasets/{path}")
        assert r.status_code == 403 and r.json()["message"] == ADMIN_NEEDED


async def test_a_group_named_like_a_user_grants_nothing_to_that_user(svc):
    # bob holds a user grant; a group called "bob" must not count as him, nor him as it
    bob_group_member = svc.user("mallory", ["bob"])
    assert (await svc.call(bob_group_member, "GET", "api/datasets")).json() == []
    r = await svc.internal({"user": "mallory", "server": "", "groups": ["bob"]})
    assert r.json() == {"datasets": []}


async def test_path_tricks_in_a_dataset_id_find_nothing(svc):
    alice = svc.user("alice", ["lab-a"])
    for path in (
        "api/datasets/..%2Fgenomes",
        "api/datasets/genomes%2F..%2Fbucket",
        "api/datasets/GENOMES",
        "api/datasets/genomes%00",
    ):
        r = await svc.call(alice, "GET", path)
        assert r.status_code in (400, 404), (path, r.text)
        assert "dataset" in r.json()["message"] or "NUL" in r.json()["message"]


# -- credentials never leave -----------------------------------------------------


async def test_no_endpoint_ever_answers_a_credential(svc, caplog):
    caplog.set_level(logging.DEBUG)
    admin, carol = svc.admin(), svc.user("carol", ["lab-a"])  # carol: write on the bucket
    new = {"access_key_id": "AKIDWRITE-NEW", "secret_access_key": "write-secret-new-" + "q" * 9}
    assert (
        await svc.call(admin, "PUT", "api/datasets/bucket/credentials/write", new)
    ).status_code == 204
    r = await svc.internal({"user": "carol", "server": "", "groups": ["lab-a"]})
    assert r.status_code == 200 and new["secret_access_key"] in r.text  # the hub side only
    svc.hub.run("carol", "", ["lab-a"])
    seen = []
    for token in (carol, admin):
        for path in (
            "api/datasets",
            "api/datasets/bucket",
            "api/me/datasets",
            "api/datasets/bucket/grants",
            "api/audit",
            "api/audit?format=csv",
            "api/audit?dataset=bucket",
            "api/holders",
            "api/openapi.json",
        ):
            r = await svc.call(token, "GET", path)
            seen.append((path, r.status_code))
            no_secret_in(r.text)
            assert "write-secret-new" not in r.text and "AKIDWRITE-NEW" not in r.text
    assert ("api/datasets/bucket", 200) in seen and ("api/audit", 200) in seen
    for path in ("api/datasets/bucket/credentials/read", "api/datasets/bucket/credentials/write"):
        r = await svc.call(admin, "GET", path)
        assert r.status_code == 405  # write-only: there is no way to read one
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "bucket" in logged  # the log did see the start and the change...
    no_secret_in(logged)  # ...but never a value
    assert "write-secret-new" not in logged and "AKIDWRITE-NEW" not in logged


async def test_a_plain_user_start_request_cannot_get_credentials(svc):
    carol = svc.user("carol", ["lab-a"])
    r = await svc.call(carol, "POST", "api/internal/start", {"user": "carol", "server": ""})
    assert r.status_code == 403
    no_secret_in(r.text)


# -- admin endpoints -------------------------------------------------------------

ADMIN_ONLY = [
    ("POST", "api/datasets", {"id": "mine", "kind": "host", "source": "/srv"}),
    ("PATCH", "api/datasets/lab-a-scratch", {"title": "mine now"}),
    ("DELETE", "api/datasets/lab-a-scratch", None),
    ("GET", "api/datasets/genomes/grants", None),
    ("POST", "api/datasets/genomes/grants", {"user": "alice", "level": "write"}),
    ("DELETE", "api/datasets/genomes/grants/group/lab-a", None),
    ("PUT", "api/datasets/bucket/credentials/write", WRITE_KEY),
    ("DELETE", "api/datasets/bucket/credentials/read", None),
    ("GET", "api/audit", None),
    ("GET", "api/audit?format=csv", None),
    ("GET", "api/holders", None),
    ("POST", "api/holders/bob/stop", {"server": ""}),
]


@pytest.mark.parametrize(
    "method, path, body", ADMIN_ONLY, ids=[f"{m} {p}" for m, p, _ in ADMIN_ONLY]
)
async def test_a_plain_user_cannot_call_admin_endpoints(svc, method, path, body):
    admin = svc.admin()
    before = (await svc.call(admin, "GET", "api/audit")).json()
    alice = svc.user("alice", ["lab-a"])  # holds write on lab-a-scratch: still no admin
    r = await svc.call(alice, method, path, body)
    assert r.status_code == 403, r.text
    assert r.json() == {"status": 403, "message": ADMIN_NEEDED}
    assert (await svc.call(admin, "GET", "api/audit")).json() == before  # nothing changed
    # the hub's admin flag is not the data admin scope either
    hub_admin = svc.hub.token("root", [SCOPE + "read"], admin=True)
    assert (await svc.call(hub_admin, method, path, body)).status_code == 403


@pytest.mark.parametrize("path", ["api/datasets", "api/me/datasets", "api/datasets/genomes"])
async def test_no_token_or_no_scope_is_refused(svc, path):
    r = await svc.call(None, "GET", path)
    assert r.status_code == 403 and "Not signed in" in r.json()["message"]
    r = await svc.call("not-a-token", "GET", path)
    assert r.status_code == 403
    no_scope = svc.hub.token("alice", [], ["lab-a"])  # may reach the service, nothing more
    r = await svc.call(no_scope, "GET", path)
    assert r.status_code == 403 and "custom:labspace-data:read" in r.json()["message"]


# -- the hub side's endpoint -------------------------------------------------------


async def test_internal_start_refuses_every_token_but_the_services(svc):
    body = {"user": "carol", "server": "", "groups": ["lab-a"]}
    hub_admin = svc.hub.token("root", [SCOPE + "admin"], admin=True)
    for token in (
        None,
        svc.user("carol", ["lab-a"]),
        svc.admin(),
        hub_admin,
        SERVICE_TOKEN + "x",
        SERVICE_TOKEN[:-1],
        "",
    ):
        r = await svc.internal(body, token=token)
        assert r.status_code == 403, token
        assert r.json()["message"] == "Internal endpoints need the data service's token"
        no_secret_in(r.text)
    r = await svc.call(svc.user("carol"), "GET", "api/internal/start")
    assert r.status_code == 405 and r.headers["Allow"] == "POST"  # no token needed to learn that
    async with svc.client() as c:  # the token in the URL is not a token
        r = await c.post(f"api/internal/start?token={SERVICE_TOKEN}", json=body)
        assert r.status_code == 403
        r = await c.post(
            "api/internal/start", json=body, headers={"Authorization": f"Bearer {SERVICE_TOKEN}"}
        )
        assert r.status_code == 403
    starts = (await svc.call(svc.admin(), "GET", "api/audit?user=carol")).json()
    assert [e for e in starts if e["kind"] == "start"] == []  # none was recorded
    assert (await svc.internal(body)).status_code == 200  # the service's own token works


# -- bad input ------------------------------------------------------------------------

A = "admin"
U = "user"
I = "internal"  # noqa: E741
BAD = [
    (A, "POST", "api/datasets", b"{nope", 400, "The body is not valid JSON"),
    (A, "POST", "api/datasets", b"[]", 400, "The body must be a JSON object"),
    (A, "POST", "api/datasets", b'{"id": "a\\u0000"}', 400, "NUL"),
    (A, "POST", "api/datasets", b'{"id": "Bad Id", "kind": "host"}', 400, "id:"),
    (A, "POST", "api/datasets", b'{"id": "x", "kind": "tape"}', 400, "kind:"),
    (A, "POST", "api/datasets", b'{"id": "x", "kind": "host"}', 400, "source: missing"),
    (A, "POST", "api/datasets", b'{"id": "x", "kind": "host", "colour": 1}', 400, "colour:"),
    (A, "POST", "api/datasets", b'{"id": "x", "kind": "s3", "s3": {"bucket": 7}}', 400, "s3."),
    (
        A,
        "POST",
        "api/datasets",
        b'{"id": "x", "kind": "volume", "source": "v", "size": "lots"}',
        400,
        "size:",
    ),
    (
        A,
        "POST",
        "api/datasets",
        b'{"id": "x", "kind": "volume", "source": "v", "tags": "a"}',
        400,
        "tags:",
    ),
    (
        A,
        "POST",
        "api/datasets",
        b'{"id": "x", "kind": "volume", "source": "v", "size": 1e19}',
        400,
        "size: at most",
    ),
    (
        A,
        "POST",
        "api/datasets",
        b'{"id": "x", "kind": "volume", "source": "v", "size": "99999P"}',
        400,
        "size: at most",
    ),
    (A, "POST", "api/datasets", b'{"id": "x", "kind": "host", "grants": []}', 400, "grants:"),
    (A, "POST", "api/datasets", b'{"id": "x", "credentials": {}}', 400, "credentials:"),
    (A, "POST", "api/datasets", b'{"id": "x", "title": 5, "kind": "host"}', 400, "title:"),
    (A, "PATCH", "api/datasets/genomes", b"{}", 400, "keys to change"),
    (A, "PATCH", "api/datasets/nothing", b'{"title": "x"}', 404, "No such dataset"),
    (A, "POST", "api/datasets/genomes/grants", b'{"level": "read"}', 400, "group/user"),
    (
        A,
        "POST",
        "api/datasets/genomes/grants",
        b'{"group": "a", "user": "b", "level": "read"}',
        400,
        "group/user",
    ),
    (A, "POST", "api/datasets/genomes/grants", b'{"group": "a", "level": "owner"}', 400, "level:"),
    (A, "POST", "api/datasets/genomes/grants", b'{"group": 7, "level": "read"}', 400, "group:"),
    (
        A,
        "POST",
        "api/datasets/genomes/grants",
        b'{"group": "a\\nb", "level": "read"}',
        400,
        "group:",
    ),
    (
        A,
        "POST",
        "api/datasets/genomes/grants",
        b'{"group": "a", "level": "read", "reason": 1}',
        400,
        "reason:",
    ),
    (
        A,
        "POST",
        "api/datasets/genomes/grants",
        b'{"group": "a", "level": "read", "why": "x"}',
        400,
        "why: unknown key",
    ),
    (
        A,
        "POST",
        "api/datasets/nothing/grants",
        b'{"group": "a", "level": "read"}',
        404,
        "No such dataset",
    ),
    (A, "DELETE", "api/datasets/genomes/grants/group/nobody", None, 404, "No grant"),
    (A, "DELETE", "api/datasets/genomes/grants/team/lab-a", None, 404, "No such endpoint"),
    (A, "PUT", "api/datasets/bucket/credentials/admin", b"{}", 404, "No such endpoint"),
    (A, "PUT", "api/datasets/bucket/credentials/read", b"{}", 400, "body.access_key_id:"),
    (
        A,
        "PUT",
        "api/datasets/bucket/credentials/read",
        b'{"access_key_id": "a", "secret_access_key": "b", "extra": 1}',
        400,
        "body.extra: unknown key",
    ),
    (
        A,
        "PUT",
        "api/datasets/bucket/credentials/read",
        b'{"access_key_id": "a", "secret_access_key": ""}',
        400,
        "body.secret_access_key:",
    ),
    (
        A,
        "PUT",
        "api/datasets/genomes/credentials/read",
        b'{"access_key_id": "a", "secret_access_key": "b"}',
        400,
        "only s3 datasets",
    ),
    (A, "DELETE", "api/datasets/genomes/credentials/read", None, 400, "only s3 datasets"),
    (A, "GET", "api/audit?limit=0", None, 400, "limit:"),
    (A, "GET", "api/audit?limit=99999999999999999999", None, 400, "limit:"),
    (A, "GET", "api/audit?limit=-1", None, 400, "limit:"),
    (A, "GET", "api/audit?since=yesterday", None, 400, "since:"),
    (A, "GET", "api/audit?until=2026-13-01", None, 400, "until:"),
    (A, "GET", "api/audit?since=2026-02-01&until=2026-01-01", None, 400, "until: must be after"),
    (A, "GET", "api/audit?format=xml", None, 400, "format:"),
    (A, "POST", "api/holders/bob/stop", b'{"server": 1}', 400, "server:"),
    (A, "POST", "api/holders/bob/stop", b'{"name": ""}', 400, "name: unknown key"),
    (A, "POST", "api/holders/bob/stop", b"[]", 400, "JSON object"),
    (A, "POST", "api/holders/bob/stop", b'{"server": ""}', 409, "holds no revoked"),
    (A, "PUT", "api/datasets", None, 405, "PUT is not allowed here (allowed: GET, POST)"),
    (U, "GET", "api/datasets/nothing", None, 404, "No such dataset"),
    (U, "GET", "api/nothing", None, 404, "No such endpoint"),
    (U, "POST", "api/me/datasets", b"{}", 405, "not allowed"),
    (I, "POST", "api/internal/start", b"{}", 400, "user:"),
    (
        I,
        "POST",
        "api/internal/start",
        b'{"user": "a", "server": "", "groups": "lab-a"}',
        400,
        "groups:",
    ),
    (
        I,
        "POST",
        "api/internal/start",
        b'{"user": "a", "server": "", "groups": [1]}',
        400,
        "groups:",
    ),
    (I, "POST", "api/internal/start", b'{"user": "a", "server": 3}', 400, "server:"),
    (
        I,
        "POST",
        "api/internal/start",
        b'{"user": "a", "server": "", "backend": "vm"}',
        400,
        "backend:",
    ),
    (
        I,
        "POST",
        "api/internal/start",
        b'{"user": "a", "server": "", "options": {}}',
        400,
        "options: unknown key",
    ),
    (I, "POST", "api/internal/start", b"nope", 400, "not valid JSON"),
    (I, "GET", "api/internal/start", None, 405, "GET is not allowed here"),
]


@pytest.mark.parametrize(
    "who, method, path, body, status, message",
    BAD,
    ids=[f"{m} {p} {(b or b'')[:30]!r}" for _, m, p, b, *_ in BAD],
)
async def test_bad_input_is_a_clear_4xx(svc, who, method, path, body, status, message):
    token = {A: svc.admin(), U: svc.user("alice", ["lab-a"]), I: SERVICE_TOKEN}[who]
    async with svc.client(token) as c:
        r = await c.request(method, path, content=body)
    assert r.status_code == status, r.text
    assert r.json() == {"status": status, "message": r.json()["message"]}
    assert message in r.json()["message"]


async def test_a_body_over_one_mib_is_413_everywhere(svc):
    big = b'{"title": "' + b"x" * (1024 * 1024) + b'"}'
    for token, method, path in (
        (svc.admin(), "POST", "api/datasets"),
        (svc.admin(), "PATCH", "api/datasets/genomes"),
        (svc.admin(), "PUT", "api/datasets/bucket/credentials/read"),
        (SERVICE_TOKEN, "POST", "api/internal/start"),
    ):
        async with svc.client(token) as c:
            r = await c.request(method, path, content=big)
        assert r.status_code == 413, (path, r.text)
        assert r.json()["message"] == "The body is larger than 1048576 bytes"


# -- XSRF for cookie callers -----------------------------------------------------------


def cookie_client(svc, token: str) -> httpx.AsyncClient:
    """A browser of someone signed in to the service (its OAuth cookie holds the token)."""
    hub_auth = svc.app.settings["hub_auth"]
    value = create_signed_value(COOKIE_SECRET, hub_auth.cookie_name, token).decode()
    return svc.client(cookies={hub_auth.cookie_name: value})


CHANGES = [
    ("POST", "api/datasets/genomes/grants", {"group": "lab-z", "level": "read"}),
    ("DELETE", "api/datasets/genomes/grants/group/lab-a", None),
    ("PATCH", "api/datasets/genomes", {"title": "x"}),
    ("PUT", "api/datasets/bucket/credentials/read", READ_KEY),
    ("POST", "api/holders/bob/stop", {"server": ""}),
]


async def test_cookie_callers_need_the_xsrf_token_for_every_change(svc):
    admin = svc.admin()
    before = (await svc.call(admin, "GET", "api/audit")).json()
    async with cookie_client(svc, admin) as browser:
        r = await browser.get("api/datasets")  # the cookie signs in: reading works
        assert r.status_code == 200 and len(r.json()) == 3
        for method, path, body in CHANGES:
            r = await browser.request(method, path, json=body)
            assert r.status_code == 403, (method, path, r.text)
        assert (await svc.call(admin, "GET", "api/audit")).json() == before
        # with the page's XSRF token the same browser may change things
        page = await browser.get("admin")
        assert page.status_code == 200, page.text
        xsrf = re.search(r'data-xsrf="([^"]+)"', page.text).group(1)
        browser.cookies.update(page.cookies)
        r = await browser.post(
            "api/datasets/genomes/grants",
            json={"group": "lab-z", "level": "read", "reason": "from the page"},
            headers={"X-XSRFToken": xsrf},
        )
        assert r.status_code == 200, r.text
        r = await browser.post(
            "api/datasets/genomes/grants",
            json={"group": "lab-y", "level": "read"},
            headers={"X-XSRFToken": xsrf[:-2] + "xx"},
        )
        assert r.status_code == 403
