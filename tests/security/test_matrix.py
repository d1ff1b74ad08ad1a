"""Who may call what: one table of exact statuses over hub, service and
workspace routes, for every kind of caller, against one real hub.

The callers (see ``conftest.py``; every one calls with a hub token made for
them, ``anonymous`` with none):

- ``anonymous``: no credentials;
- ``bob``: another user (group ``lab-b``): sees only his own things;
- ``alice``: a plain user (group ``lab-a``), the owner: her workspace runs,
  with the catalog's proxied ``demo`` app, launched through the catalog;
- ``gina``: a group admin: role ``lab-a-admin`` (``admin:servers``,
  ``read:users``, ``list:users`` for ``group=lab-a``) and accounting lead of
  project ``lab-a``; no ``access:servers``, so no way into alice's workspace;
- ``admin``: in ``hub.admin_users`` (JupyterHub's ``admin`` role, which holds
  ``access:servers``, plus ``labspace-admin``).

Expected, as the design says: users see their own things, other users get
403/404, admins what their scopes grant; browsers without a session are sent
to sign in (302), API clients without credentials get 403. A row where
today's code answers otherwise is recorded in /tmp/labspace-findings/ and
marked ``xfail(strict=True)`` with that finding, so it fails the moment the
code is fixed and the mark must go.

Rows that change something (a top-up, an app, a stop) come after the reads, in
caller order, admin last.
"""

from __future__ import annotations

import pytest
from harness import wait_for

from .conftest import DEMO

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CALLERS = ("anonymous", "bob", "alice", "gina", "admin")
HTML = {"Accept": "text/html"}
PAGE = {"headers": HTML, "session": True}
NEW_APP = {**DEMO, "id": "matrix-app", "title": "Matrix app"}
ADMIN_NO = (403, 403, 403, 403, None)  # nobody but an admin; the admin is not asked
TOPUP = {"project": "lab-a", "amount": "1", "reason": "matrix"}

# route id: (method, path, request keywords, statuses for CALLERS in order, None:
# not asked); {launch} is alice's catalog launch of demo, {hub_port} the hub's
# port; "session": a browser signed in through the login form instead of a token
A = "services/accounting/"
C = "services/catalog/"
W = "user/alice/"
ROUTES: dict[str, tuple[str, str, dict, tuple[int | None, ...]]] = {
    # the hub
    "hub-user": ("GET", "hub/api/users/alice", {}, (403, 404, 200, 200, 200)),
    "hub-user-outside-group": ("GET", "hub/api/users/bob", {}, (403, 200, 404, 404, 200)),
    "hub-user-list": ("GET", "hub/api/users", {}, (403, 403, 403, 200, 200)),
    "hub-tokens": ("GET", "hub/api/users/alice/tokens", {}, (403, 404, 200, 404, 200)),
    "hub-groups": ("GET", "hub/api/groups", {}, (403, 403, 403, 403, 200)),
    "hub-proxy-table": ("GET", "hub/api/proxy", {}, (403, 403, 403, 403, 200)),
    "hub-admin-page": ("GET", "hub/admin", PAGE, (302, 403, 403, 403, 200)),
    "hub-home-page": ("GET", "hub/home", PAGE, (302, 200, 200, 200, 200)),
    "hub-tokens-cookie": (
        "GET",
        "hub/api/users/alice/tokens",
        {"session": True},
        (403, 404, 200, 404, 200),
    ),
    "hub-start-running": ("POST", "hub/api/users/alice/server", {}, (403, 404, 400, 400, 400)),
    "hub-start-outside-group": (
        "POST",
        "hub/api/users/bob/server",
        {},
        (403, None, 404, 404, None),
    ),
    "hub-make-admin": ("PATCH", "hub/api/users/alice", {"json": {"admin": True}}, ADMIN_NO),
    "hub-new-token": (
        "POST",
        "hub/api/users/alice/tokens",
        {"json": {}},
        (403, 403, 201, 403, 201),
    ),
    # accounting
    "acct-openapi": ("GET", A + "api/openapi.json", {}, (200, 200, 200, 200, 200)),
    "acct-me": ("GET", A + "api/me", {}, (403, 200, 200, 200, 200)),
    "acct-usage-of-alice": ("GET", A + "api/usage?user=alice", {}, (403, 403, 200, 403, 200)),
    "acct-project": ("GET", A + "api/projects/lab-a", {}, (403, 403, 200, 200, 200)),
    "acct-project-other": ("GET", A + "api/projects/lab-b", {}, (403, 200, 403, 403, 200)),
    "acct-ledger": ("GET", A + "api/ledger", {}, (403, 403, 403, 403, 200)),
    "acct-health": ("GET", A + "api/health", {}, (403, 403, 403, 403, 200)),
    "acct-metrics": ("GET", A + "metrics", {}, (403, 403, 403, 403, 200)),
    "acct-internal": ("GET", A + "api/internal/health", {}, (403, 403, 403, 403, 403)),
    "acct-page": ("GET", A, {"headers": HTML}, (302, 200, 200, 200, 200)),
    "acct-project-page": (
        "GET",
        A + "projects/lab-a",
        {"headers": HTML},
        (302, 403, 200, 200, 200),
    ),
    "acct-admin-page": ("GET", A + "admin", {"headers": HTML}, (302, 403, 403, 403, 200)),
    # the catalog
    "cat-openapi": ("GET", C + "api/openapi.json", {}, (200, 200, 200, 200, 200)),
    "cat-apps": ("GET", C + "api/apps", {}, (403, 200, 200, 200, 200)),
    "cat-launch": ("GET", C + "api/launches/{launch}", {}, (403, 404, 200, 404, 404)),
    "cat-launch-logs": ("GET", C + "api/launches/{launch}/logs", {}, (403, 404, 200, 404, 404)),
    # demo is proxied: only standalone apps are shared
    "cat-launch-shares": ("GET", C + "api/launches/{launch}/shares", {}, (403, 404, 400, 404, 404)),
    "cat-page": ("GET", C, {"headers": HTML}, (302, 200, 200, 200, 200)),
    "cat-admin-page": ("GET", C + "admin", {"headers": HTML}, (302, 403, 403, 403, 200)),
    # alice's workspace
    "ws-contents": ("GET", W + "api/contents", {}, (403, 403, 200, 403, 200)),
    "ws-kernels": ("GET", W + "api/kernels", {}, (403, 403, 200, 403, 200)),
    "ws-terminals": ("GET", W + "api/terminals", {}, (403, 403, 200, 403, 200)),
    "ws-lab": ("GET", W + "lab", {"headers": HTML}, (302, 403, 200, 403, 200)),
    "ws-apps": ("GET", W + "labspace-apps/api/apps", {}, (403, 403, 200, 403, 200)),
    "ws-app-logs": ("GET", W + "labspace-apps/api/apps/demo/logs", {}, (403, 403, 200, 403, 200)),
    "ws-app": ("GET", W + "demo/", {}, (403, 403, 200, 403, 200)),
    "ws-app-browser": ("GET", W + "demo/", {"headers": HTML}, (302, 403, 200, 403, 200)),
    # /proxy/<port> would reach any loopback port: off where loopback is shared
    # (issue 10, High 4; it answers 404 before any login)
    "ws-proxy-port": ("GET", W + "proxy/{hub_port}/hub/api", {}, (404, 404, 404, 404, 404)),
    # changes: refused ones first, then the owner's and the admin's
    "ws-app-stop-unknown": (
        "POST",
        W + "labspace-apps/api/apps/nope/stop",
        {},
        (403, 403, 404, 403, 404),
    ),
    "ws-write-file": (
        "PUT",
        W + "api/contents/matrix.txt",
        {"json": {"type": "file", "format": "text", "content": "matrix"}},
        (403, 403, 201, 403, 200),
    ),
    "ws-new-terminal": ("POST", W + "api/terminals", {}, (403, 403, 200, 403, None)),
    "acct-topup": ("POST", A + "api/ledger/topup", {"json": TOPUP}, (403, 403, 403, 403, 201)),
    "cat-create-app": ("POST", C + "api/apps", {"json": NEW_APP}, (403, 403, 403, 403, 201)),
    "cat-launch-stop": ("POST", C + "api/launches/{launch}/stop", {}, (403, 404, 200, 404, 404)),
}

# (route id, caller): the finding that today's answer contradicts
# (workspace.md W1, /proxy/<port> on, was fixed in ced0ae0)
XFAIL: dict[tuple[str, str], str] = {}


def rows():
    for route, (method, path, kw, statuses) in ROUTES.items():
        assert len(statuses) == len(CALLERS), route
        for who, status in zip(CALLERS, statuses, strict=True):
            if status is None:
                continue
            marks = []
            if (route, who) in XFAIL:
                marks = [pytest.mark.xfail(strict=True, reason=XFAIL[route, who])]
            params = (route, who, method, path, kw, status)
            yield pytest.param(*params, id=f"{route}/{who}", marks=marks)


@pytest.fixture(scope="module")
def world(security_world_factory):
    """The module's hub; alice's workspace runs and her catalog launch of demo
    is running (its page answered her once)."""
    world = security_world_factory(catalog_apps=[DEMO], start=["alice"])
    with world.client("alice") as alice:
        r = alice.post(C + "api/apps/demo/launch", json={})
        assert r.status_code in (200, 202), r.text
        world.launch = r.json()["id"]

        def running():
            state = alice.get(C + f"api/launches/{world.launch}").json()["state"]
            assert state != "failed", state
            return state == "running"

        wait_for(running, 120, 0.5, what="alice's launch of demo")
        r = alice.get(W + "demo/", timeout=90)
        assert r.status_code == 200 and "Labspace demo app" in r.text, r.text[:500]
    return world


@pytest.mark.parametrize(("route", "who", "method", "path", "kw", "status"), list(rows()))
def test_who_may_call_what(world, route, who, method, path, kw, status):
    url = path.format(launch=world.launch, hub_port=world.hub.settings["hub"]["port"])
    kw = dict(kw)
    client = world.session(who) if kw.pop("session", False) else world.client(who)
    try:
        r = client.request(method, url, follow_redirects=False, **kw)
    finally:
        client.close()
    assert r.status_code == status, f"{method} /{url} as {who}: {r.status_code} {r.text[:300]}"


def test_every_xfail_names_a_row_of_the_table():
    assert set(XFAIL) <= {(route, who) for route in ROUTES for who in CALLERS}
