"""The catalog with a real hub on the local backend, driven over REST as a user.

One hub serves the module, with two catalog apps from the settings: ``web``
(proxied, ``python -m http.server`` serving a known page) and ``viewer``
(standalone, open to the ``physics`` group). Ada (in physics) launches both
through the catalog API and reads each app's own page through the hub's proxy;
an admin's edit makes a new version while ada's running launch keeps the old
one; options naming an unknown app or version, or an app outside the user's
groups, are refused with a 4xx and nothing starts. A standalone app shared with
a group opens for its members, not for others, until the share is revoked.
"""

from __future__ import annotations

import os
import secrets
import signal
import sys
from pathlib import Path

import httpx
import pytest
from harness import HubAPI, HubProcess, free_port, hub_settings_for, wait_for, workspace_pids

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PASSWORD = secrets.token_hex(12)


# a static web site on a unix socket (a TCP port on the shared loopback of the
# local backend is refused): argv[1] the socket, argv[2] the folder
UNIX_SITE = """
import functools, http.server, socketserver, sys
class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
class Handler(http.server.SimpleHTTPRequestHandler):
    def address_string(self):
        return "unix"
Server(sys.argv[1], functools.partial(Handler, directory=sys.argv[2])).serve_forever()
"""


def server_app(app_id: str, folder: Path, **extra) -> dict:
    return {
        "id": app_id,
        "title": app_id.title(),
        "description": f"Serves {folder.name}",
        "category": "Testing",
        "launch": {
            "command": [sys.executable, "-c", UNIX_SITE, "{unix_socket}", str(folder)],
            "unix_socket": True,
            "ready_path": "/index.html",
            "timeout": 30,
        },
        **extra,
    }


def page(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "index.html").write_text(f"<html><body><h1>{text}</h1></body></html>")
    return folder


def settings_for(tmp: Path, proxy_command: list[str], token: str) -> dict:
    web = server_app("web", page(tmp / "web-site", "catalog web app"), kind="proxied")
    viewer = server_app(
        "viewer", page(tmp / "viewer-v1", "viewer one"), kind="standalone", version="1.0"
    )
    viewer["groups"] = ["physics"]
    settings = hub_settings_for(tmp / "data", proxy_command, token)
    settings["auth"] = {"user_password": PASSWORD}
    settings["catalog"] = {"enabled": True, "port": free_port(), "apps": [web, viewer]}
    return settings


@pytest.fixture(scope="module")
def world(tmp_path_factory, proxy_command):
    tmp = tmp_path_factory.mktemp("catalog")
    token = secrets.token_hex(16)
    hub = HubProcess(tmp, settings_for(tmp, proxy_command, token))
    api = None
    try:
        hub.start()
        api = HubAPI(hub.url, token)
        tokens = {}
        for name in ("ada", "bob", "cy", "admin"):
            if name != "admin":
                api.create_user(name)
            r = api.request("POST", f"users/{name}/tokens", json={"note": "catalog test"})
            assert r.status_code == 201, r.text
            tokens[name] = r.json()["token"]
        r = api.request("POST", "groups/physics")
        assert r.status_code == 201, r.text
        r = api.request("POST", "groups/physics/users", json={"users": ["ada"]})
        assert r.status_code == 200, r.text
        r = api.request("POST", "groups/readers", json={"users": ["cy"]})
        assert r.status_code == 201, r.text
        api.started.update({"ada", "bob"})
        yield {"hub": hub, "api": api, "tokens": tokens, "url": hub.url, "tmp": tmp}
    finally:
        if api:
            for name in ("ada", "bob"):
                for server in ("viewer", ""):
                    path = f"users/{name}/servers/{server}" if server else f"users/{name}/server"
                    api.request("DELETE", path)
            api.close()
        hub.stop()
        for pid in workspace_pids(tmp / "data" / "users"):
            os.kill(pid, signal.SIGKILL)


def client(world, who: str) -> httpx.Client:
    return httpx.Client(
        base_url=world["url"],
        headers={"Authorization": f"token {world['tokens'][who]}"},
        timeout=60,
    )


def catalog(world, who: str, method: str, path: str, **kw) -> httpx.Response:
    with client(world, who) as c:
        return c.request(method, f"services/catalog/api/{path}", **kw)


def wait_running(world, who: str, launch_id: int) -> dict:
    def running():
        r = catalog(world, who, "GET", f"launches/{launch_id}")
        assert r.status_code == 200, r.text
        launch = r.json()
        assert launch["state"] != "failed", launch
        return launch if launch["state"] == "running" else None

    return wait_for(running, 120, 0.5, what=f"launch {launch_id}")


def servers(world, name: str) -> dict:
    return world["api"].user(name).json()["servers"]


def test_catalog_lists_apps_by_group(world):
    r = catalog(world, "ada", "GET", "apps")
    assert r.status_code == 200, r.text
    ids = {a["id"] for a in r.json()["apps"]}
    assert {"web", "viewer", "data-explorer", "dashboards"} <= ids
    r = catalog(world, "bob", "GET", "apps")
    assert "viewer" not in {a["id"] for a in r.json()["apps"]}
    assert catalog(world, "bob", "GET", "apps/viewer").status_code == 404
    r = catalog(world, "bob", "POST", "apps/viewer/launch", json={})
    assert r.status_code == 404 and r.json()["message"] == "No such app: viewer"
    r = httpx.get(world["url"] + "services/catalog/api/openapi.json")
    assert r.status_code == 200 and "/api/apps/{app_id}/launch" in r.json()["paths"]


@pytest.mark.parametrize(
    "who, options, message",
    [
        ("bob", {"app": "viewer"}, "No such app: viewer"),
        ("ada", {"app": "nothing"}, "No such app: nothing"),
        ("ada", {"app": "viewer", "version": "9.9"}, "No version '9.9'"),
        ("ada", {"app": "viewer", "colour": "red"}, "Unknown option 'colour'"),
    ],
    ids=["outside-groups", "unknown-app", "unknown-version", "unknown-key"],
)
def test_bad_app_options_are_refused_and_nothing_starts(world, who, options, message):
    with client(world, who) as c:
        r = c.post(f"hub/api/users/{who}/servers/viewer", json=options)
    assert 400 <= r.status_code < 500, r.text
    assert message in r.json()["message"]
    assert "viewer" not in servers(world, who)


def test_launch_proxied_app_and_read_its_page(world):
    r = catalog(world, "ada", "POST", "apps/web/launch", json={})
    assert r.status_code == 202, r.text
    launch = r.json()
    assert launch["url"] == "/user/ada/web/" and launch["server_name"] == ""
    wait_running(world, "ada", launch["id"])
    with client(world, "ada") as c:
        r = c.get(launch["url"].lstrip("/"))
    assert r.status_code == 200, r.text[:500]
    assert "catalog web app" in r.text
    r = catalog(world, "ada", "GET", "launches?active=1")
    assert launch["id"] in [x["id"] for x in r.json()["launches"]]
    with client(world, "ada") as c:
        apps = c.get("user/ada/labspace-apps/api/apps").json()
    assert {a["id"]: a["running"] for a in apps}["web"] is True
    r = catalog(world, "ada", "GET", f"launches/{launch['id']}/logs?lines=20")
    assert r.status_code == 200 and isinstance(r.json()["lines"], list), r.text
    r = catalog(world, "ada", "POST", f"launches/{launch['id']}/stop")
    assert r.status_code == 200 and r.json()["state"] == "stopped", r.text
    # the workspace keeps running; the app was stopped inside it
    assert servers(world, "ada")[""]["ready"]
    with client(world, "ada") as c:
        apps = c.get("user/ada/labspace-apps/api/apps").json()
    assert {a["id"]: a["running"] for a in apps}["web"] is False


def test_launch_standalone_app_keeps_its_version_after_an_edit(world):
    r = catalog(world, "ada", "POST", "apps/viewer/launch", json={})
    assert r.status_code == 202, r.text
    launch = r.json()
    assert launch["version"] == "1.0" and launch["server_name"] == "viewer"
    wait_running(world, "ada", launch["id"])
    model = servers(world, "ada")["viewer"]
    # the app's options as launched, and the profile the start resolved to (the
    # hub shows it for the idle culler's per-profile timeouts)
    assert model["user_options"] == {"app": "viewer", "version": "1.0", "profile": "default"}
    with client(world, "ada") as c:
        r = c.get(launch["url"].lstrip("/"))
    assert r.status_code == 200 and "viewer one" in r.text, r.text[:500]
    # an admin points the app at a new page: a new version
    new = page(world["tmp"] / "viewer-v2", "viewer two")
    definition = server_app("viewer", new, kind="standalone", version="2.0")
    r = catalog(
        world,
        "admin",
        "PATCH",
        "apps/viewer",
        json={"version": "2.0", "launch": definition["launch"]},
    )
    assert r.status_code == 200, r.text
    assert r.json()["version"] == "2.0"
    r = catalog(world, "ada", "GET", "apps/viewer/versions")
    assert [v["version"] for v in r.json()["versions"]] == ["2.0", "1.0"]
    # ada's running launch keeps 1.0
    assert catalog(world, "ada", "GET", f"launches/{launch['id']}").json()["version"] == "1.0"
    with client(world, "ada") as c:
        assert "viewer one" in c.get(launch["url"].lstrip("/")).text
    # share it with bob, then revoke
    r = catalog(world, "ada", "POST", f"launches/{launch['id']}/shares", json={"user": "bob"})
    assert r.status_code == 201, r.text
    with client(world, "bob") as c:
        r = c.get(launch["url"].lstrip("/"))
    assert r.status_code == 200 and "viewer one" in r.text, r.status_code
    r = catalog(world, "ada", "DELETE", f"launches/{launch['id']}/shares", json={"user": "bob"})
    assert r.status_code == 204, r.text
    assert catalog(world, "ada", "GET", f"launches/{launch['id']}/shares").json()["shares"] == []
    # the workspace caches what a token may do for a while: a fresh token of bob's is refused
    r = world["api"].request("POST", "users/bob/tokens", json={"note": "after revoke"})
    fresh = {"Authorization": f"token {r.json()['token']}"}
    r = httpx.get(world["url"] + launch["url"].lstrip("/"), headers=fresh, timeout=30)
    assert r.status_code == 403
    r = catalog(world, "ada", "POST", f"launches/{launch['id']}/stop")
    assert r.status_code == 200, r.text
    wait_for(lambda: "viewer" not in servers(world, "ada"), 60, what="viewer stopped")
    # the next launch runs 2.0
    r = catalog(world, "ada", "POST", "apps/viewer/launch", json={})
    again = wait_running(world, "ada", r.json()["id"])
    assert again["version"] == "2.0"
    with client(world, "ada") as c:
        assert "viewer two" in c.get(again["url"].lstrip("/")).text
    catalog(world, "ada", "POST", f"launches/{again['id']}/stop")


def shared_viewer(world, group: str) -> tuple[dict, str]:
    """Ada's running viewer, shared with ``group``: (launch, its shares path)."""
    r = catalog(world, "ada", "POST", "apps/viewer/launch", json={})
    assert r.status_code == 202, r.text
    launch = wait_running(world, "ada", r.json()["id"])
    shares = f"launches/{launch['id']}/shares"
    r = catalog(world, "ada", "POST", shares, json={"group": group})
    assert r.status_code == 201, r.text
    assert catalog(world, "ada", "GET", shares).json()["shares"][0]["group"] == group
    return launch, shares


def stop_viewer(world, launch: dict) -> None:
    r = catalog(world, "ada", "POST", f"launches/{launch['id']}/stop")
    assert r.status_code == 200, r.text
    wait_for(lambda: "viewer" not in servers(world, "ada"), 60, what="viewer stopped")


def test_share_with_a_group_refuses_others_and_is_revoked(world):
    launch, shares = shared_viewer(world, "readers")
    url = launch["url"].lstrip("/")
    try:
        with client(world, "bob") as c:  # not a member of readers
            assert c.get(url).status_code == 403
        r = catalog(world, "ada", "DELETE", shares, json={"group": "readers"})
        assert r.status_code == 204, r.text
        assert catalog(world, "ada", "GET", shares).json()["shares"] == []
        r = world["api"].request("POST", "users/cy/tokens", json={"note": "after revoke"})
        fresh = {"Authorization": f"token {r.json()['token']}"}
        r = httpx.get(world["url"] + url, headers=fresh, timeout=30)
        assert r.status_code == 403
    finally:
        stop_viewer(world, launch)


@pytest.mark.xfail(
    strict=True,
    reason="JupyterHub 6.1.1 scopes.get_scopes_for gives a token its owner's user "
    "shares only, not the shares of the owner's groups: every token of a member "
    "is refused ('Not allowing user'). Passes once the hub counts group shares.",
)
def test_share_with_a_group_opens_for_its_members(world):
    launch, _ = shared_viewer(world, "readers")
    try:
        with client(world, "cy") as c:  # a member of readers
            r = c.get(launch["url"].lstrip("/"))
        assert r.status_code == 200 and "viewer" in r.text, r.status_code
    finally:
        stop_viewer(world, launch)
