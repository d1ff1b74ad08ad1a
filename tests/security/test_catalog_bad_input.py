"""Issue 10, medium: the catalog through a real hub answers bad input with a
clear 4xx ``{"status", "message"}`` (never a 5xx), 405 with ``Allow``, 413 over
1 MiB; stopping a proxied app whose workspace is gone answers cleanly; a new
launch supersedes the old one; OAuth ``code``/``state`` never reach the access
log; the cookie secret is kept, private (that a signed-in session survives a
restart is tests/e2e/test_catalog_restart.py's).
"""

from __future__ import annotations

import time

import httpx
import pytest
from harness import login, wait_for

from .conftest import PASSWORD, WEB

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def world(security_world_factory):
    world = security_world_factory(catalog_apps=[WEB])
    if world.api.user("alice").json()["servers"]:  # a module before started it
        world.api.stop_server("alice")
    return world


@pytest.fixture(scope="module")
def launch_id(world) -> int:
    """Alice's launch of the web app (her workspace is stopped);
    ``version: null`` means the current one."""
    r = world.catalog("alice", "POST", "apps/web/launch", json={"version": None})
    assert r.status_code == 202, r.text  # her workspace starts
    assert r.json()["version"] == "1"
    return r.json()["id"]


BAD = [
    ("GET", "launches/99999999999999999999999", None, 404, "No such launch"),
    ("POST", "launches/18446744073709551616/stop", None, 404, "No such launch"),
    ("GET", "launches/{id}/logs?lines=abc", None, 400, "lines must be a whole number"),
    ("GET", "apps?all=null", None, 400, "all must be true or false"),
    ("POST", "apps/web/launch", b"[]", 400, "The body must be a JSON object"),
    ("POST", "apps/web/launch", b'{"version": 7}', 400, "version must be a string"),
    ("POST", "apps", b'{"id": null, "title": null, "kind": null}', 400, "app.id"),
    ("PATCH", "apps/web", b'{"launch": null}', 400, "app.launch"),
    ("PATCH", "apps/web", b'{"version": null}', 400, "app.version"),
    ("PUT", "apps", None, 405, "PUT is not allowed here"),
    (
        "POST",
        "apps",
        b'{"id": "tcp", "title": "T", "kind": "proxied", "launch": {"command": ["x", "{port}"]}}',
        400,
        "app.launch.unix_socket",  # workspaces share 127.0.0.1 on the local backend
    ),
]


@pytest.mark.parametrize(
    "method, path, body, status, message", BAD, ids=[f"{m} {p}" for m, p, *_ in BAD]
)
def test_bad_input_is_a_clear_4xx(world, launch_id, method, path, body, status, message):
    who = "alice" if path.startswith("launches") else "admin"
    r = world.catalog(who, method, path.format(id=launch_id), content=body)
    assert r.status_code == status, r.text
    assert r.json() == {"status": status, "message": r.json()["message"]}
    assert message in r.json()["message"]
    if status == 405:
        assert r.headers["Allow"] == "GET, POST"


def test_body_over_one_mib_is_413(world):
    big = {**WEB, "id": "big", "description": "x" * (1024 * 1024 + 1)}
    r = world.catalog("admin", "POST", "apps", json=big)
    assert r.status_code == 413, r.text
    assert r.json() == {"status": 413, "message": "The body is larger than 1048576 bytes"}
    assert world.catalog("admin", "GET", "apps").status_code == 200


def test_superseded_launch_and_stop_after_the_workspace_is_gone(world):
    first = world.catalog("alice", "POST", "apps/web/launch").json()
    wait_for(
        lambda: (
            world.catalog("alice", "GET", f"launches/{first['id']}").json()["state"]
            in ("running", "superseded")
        ),
        120,
        0.5,
        what="alice's workspace",
    )
    second = world.catalog("alice", "POST", "apps/web/launch").json()
    assert second["state"] == "running", second
    r = world.catalog("alice", "GET", f"launches/{first['id']}")
    assert r.json()["state"] == "superseded", r.text
    world.api.stop_server("alice")
    r = world.catalog("alice", "POST", f"launches/{second['id']}/stop")
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "stopped"


def test_oauth_code_and_state_are_masked_and_the_cookie_secret_is_kept(world):
    browser = login(world.url, "alice", PASSWORD)
    r = browser.get("services/catalog/")
    assert r.status_code == 200, r.text[:300]
    callback = next(x.url for x in r.history if x.url.path.endswith("/oauth_callback"))
    code = callback.params["code"]
    log = world.hub.log()
    assert "oauth_callback?code=[secret]&state=[secret]" in log
    assert code not in log, "the OAuth code is in the log"
    # kept (private) for the next start: that a session survives a restart of the
    # service is tests/e2e/test_catalog_restart.py's
    secret = world.data_dir / "secrets" / "catalog-cookie-secret"
    assert secret.stat().st_mode & 0o777 == 0o600
    browser.close()


@pytest.mark.parametrize("path", ["oauth_callback", "api/apps/web/launch", "admin"])
def test_cookie_plus_bogus_token_post_answers_at_once(world, path):
    """The accounting deadlock (issue 10, High 1) tried on the catalog."""
    browser = login(world.url, "alice", PASSWORD)
    assert browser.get("services/catalog/").status_code == 200
    started = time.monotonic()
    r = browser.post(
        f"services/catalog/{path}",
        json={},
        headers={"Authorization": "token x"},
        follow_redirects=False,
        timeout=10,
    )
    took = time.monotonic() - started
    assert r.status_code == 403, r.text
    assert took < 1, f"{path} answered after {took:.1f}s"
    assert world.catalog("alice", "GET", "apps").status_code == 200
    browser.close()


def test_a_code_the_hub_refuses_is_a_400(world):
    browser = login(world.url, "alice", PASSWORD)
    r = browser.get("services/catalog/", follow_redirects=False)  # the OAuth state cookie
    assert r.status_code == 302, r.text[:300]
    r = browser.get(r.headers["location"], follow_redirects=False)  # the hub's authorize
    assert r.status_code == 302, r.text[:300]
    callback = httpx.URL(r.headers["location"])
    assert callback.path.endswith("/services/catalog/oauth_callback"), callback
    r = browser.get(
        callback.copy_set_param("code", "not-a-code"), follow_redirects=False, timeout=10
    )
    assert r.status_code == 400, r.text[:300]
    assert "sign in again" in r.text
    browser.close()
