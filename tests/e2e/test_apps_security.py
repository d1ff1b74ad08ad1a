"""Proxied apps in a real workspace, behind a real hub on the local backend.

One hub and one running workspace (alice's) serve the whole module: the bundled
Data Explorer and Dashboards, and a catalog app (the demo app, given to the
workspace through ``LABSPACE_CATALOG_APPS`` in the spawner's environment, as the
catalog's hook does). Checked as a client meets them through the hub's proxy:
- without credentials an app answers 403 (HTTP and websocket), a browser is sent
  to the login page; with bob's token alice's apps answer 403;
- ``/proxy/...`` is off (404): the local backend shares 127.0.0.1 between users;
- each app's page is 200 with the app's own content, a websocket reaches the
  catalog app, and the lifecycle API lists, stops, restarts and shows logs;
- a bad catalog entry is skipped and the workspace starts anyway.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
from pathlib import Path

import httpx
import pytest
from harness import (
    HubAPI,
    HubProcess,
    demo_app,
    hub_settings_for,
    login,
    wait_for,
    workspace_pids,
)
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DEMO = demo_app(
    version="1.0",
    description="An HTML page and a websocket echo",
    category="Testing",
    icon="data:image/svg+xml;base64,PHN2ZyB4bWxucz0iaHR0cDovL3d3dy53My5vcmcvMjAwMC9zdmciLz4=",
    launch={
        "ready_status": 200,
        "timeout": 30,
        "environment": {"DEMO_GREETING": "Greetings from the catalog"},
        "cwd": "",
    },
)
BAD = {"id": "broken", "launch": {"command": "rm -rf ~", "ready_path": "/"}}
APPS = ["data-explorer", "dashboards", "demo"]
PASSWORD = secrets.token_hex(12)
CSV = "time,temperature,pressure\n0,11.5,1012\n1,12.1,1010\n2,13.0,1009\n"
NOTEBOOK = {
    "cells": [
        {
            "cell_type": "code",
            "execution_count": None,
            "metadata": {},
            "outputs": [],
            "source": ["print('hello from a labspace dashboard')"],
        }
    ],
    "metadata": {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}
    },
    "nbformat": 4,
    "nbformat_minor": 5,
}


def settings_for(tmp: Path, proxy_command: list[str], token: str) -> dict:
    settings = hub_settings_for(tmp / "data", proxy_command, token)
    settings["auth"] = {"user_password": PASSWORD}
    # what the catalog's hook puts into the spawner's environment
    settings["hub"]["config"]["Spawner"] = {
        "environment": {"LABSPACE_CATALOG_APPS": json.dumps([DEMO, BAD])},
    }
    return settings


@pytest.fixture(scope="module")
def world(tmp_path_factory, proxy_command):
    """A hub, users alice and bob with their tokens, alice's workspace running."""
    tmp = tmp_path_factory.mktemp("apps")
    token = secrets.token_hex(16)
    hub = HubProcess(tmp, settings_for(tmp, proxy_command, token))
    api = None
    try:
        hub.start()
        api = HubAPI(hub.url, token)
        tokens = {}
        for name in ("alice", "bob"):
            api.create_user(name)
            r = api.request("POST", f"users/{name}/tokens", json={"note": "apps test"})
            assert r.status_code == 201, r.text
            tokens[name] = r.json()["token"]
        api.start_server("alice")
        yield {"hub": hub, "api": api, "tokens": tokens, "url": hub.url.rstrip("/")}
    finally:
        if api:
            api.stop_all()
            api.close()
        hub.stop()
        for pid in workspace_pids(tmp / "data" / "users"):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def alice(world):
    headers = {"Authorization": f"token {world['tokens']['alice']}"}
    with httpx.Client(base_url=world["url"] + "/user/alice/", headers=headers, timeout=90) as c:
        for path, content in [
            (
                "measurements.csv",
                "time,temperature,pressure\n0,11.5,1012\n1,12.1,1010\n2,13.0,1009\n",
            ),
            ("hello.ipynb", json.dumps(NOTEBOOK)),
        ]:
            body = {"type": "file", "format": "text", "content": content}
            if path.endswith(".ipynb"):
                body = {"type": "notebook", "content": NOTEBOOK}
            r = c.put(f"api/contents/{path}", json=body)
            assert r.status_code in (200, 201), r.text
        yield c


def test_apps_pages_through_the_hub(alice):
    r = alice.get("data-explorer/", params={"file": "~/measurements.csv"})
    assert r.status_code == 200, r.text[-2000:]
    assert "<title>Data Explorer</title>" in r.text
    # Dashboards: Voilà inside the Jupyter server; the old links redirect there
    r = alice.get("dashboards/voila/render/hello.ipynb")
    assert r.status_code == 302
    assert r.headers["location"] == "/user/alice/voila/render/hello.ipynb"
    r = alice.get("voila/render/hello.ipynb")
    assert r.status_code == 200, r.text[-2000:]
    assert "hello from a labspace dashboard" in r.text
    assert "cdn.jsdelivr.net" not in r.text  # works offline
    r = alice.get("dashboards/", follow_redirects=True)
    assert r.status_code == 200 and "Voilà Home" in r.text
    r = alice.get("demo/")
    assert r.status_code == 200 and "Greetings from the catalog" in r.text


async def test_websocket_to_catalog_app(world, alice):
    url = world["url"].replace("http", "ws", 1) + "/user/alice/demo/echo"
    headers = {"Authorization": f"token {world['tokens']['alice']}"}
    ws = await websocket_connect(HTTPRequest(url, headers=headers, connect_timeout=30))
    try:
        await ws.write_message("ping")
        assert await ws.read_message() == "ping"
    finally:
        ws.close()


def test_launcher_lists_apps_and_icons(alice):
    info = alice.get("server-proxy/servers-info").json()["server_processes"]
    by_name = {s["name"]: s for s in info}
    assert {"data-explorer", "dashboards", "demo"} <= set(by_name)
    assert "broken" not in by_name  # the bad entry was skipped
    assert by_name["data-explorer"]["launcher_entry"]["title"] == "Data Explorer"
    for name in ("data-explorer", "demo"):
        r = alice.get(f"server-proxy/icon/{name}")
        assert r.status_code == 200 and b"<svg" in r.content


@pytest.mark.parametrize("app", APPS)
def test_no_credentials_403(world, app):
    url = f"{world['url']}/user/alice/{app}/"
    assert httpx.get(url, timeout=30).status_code == 403
    assert httpx.post(url, timeout=30).status_code == 403
    assert httpx.get(url.rstrip("/"), timeout=30).status_code == 403
    # a browser is sent to sign in instead
    r = httpx.get(url, headers={"Accept": "text/html"}, timeout=30)
    assert r.status_code == 302 and "/hub/" in r.headers["location"]


@pytest.mark.parametrize("app", APPS)
def test_other_users_token_403(world, app):
    bob = {"Authorization": f"token {world['tokens']['bob']}"}
    r = httpx.get(f"{world['url']}/user/alice/{app}/", headers=bob, timeout=30)
    assert r.status_code == 403
    r = httpx.get(f"{world['url']}/user/alice/labspace-apps/api/apps", headers=bob, timeout=30)
    assert r.status_code == 403


@pytest.mark.parametrize("who", ["nobody", "bob"])
@pytest.mark.parametrize("app", APPS)
async def test_websocket_without_access_403(world, app, who):
    url = world["url"].replace("http", "ws", 1) + f"/user/alice/{app}/echo"
    headers = {} if who == "nobody" else {"Authorization": f"token {world['tokens'][who]}"}
    with pytest.raises(HTTPClientError) as e:
        ws = await websocket_connect(HTTPRequest(url, headers=headers, connect_timeout=30))
        ws.close()
    assert e.value.code == 403


@pytest.mark.parametrize(
    "path",
    [
        "proxy/10.1.2.3:80/",
        "proxy/127.0.0.1:8888/",
        "proxy/8888/",
        "proxy/absolute/169.254.169.254:80/latest/meta-data",
        "proxy/abc/",
        "proxy/",
    ],
    ids=["private-ip", "loopback", "port", "metadata", "no-port", "empty"],
)
def test_proxy_paths_off_on_shared_loopback(alice, path):
    r = alice.get(path, follow_redirects=True)
    assert r.status_code == 404
    assert r.json()["message"].startswith("/proxy/<port> is off")


def test_lifecycle_api(alice):
    apps = {a["id"]: a for a in alice.get("labspace-apps/api/apps").json()}
    assert {"data-explorer", "demo"} <= set(apps)
    alice.get("demo/")
    demo = next(a for a in alice.get("labspace-apps/api/apps").json() if a["id"] == "demo")
    assert demo["running"] and demo["ready"] and demo["unix_socket"] and not demo["port"]
    r = alice.post("labspace-apps/api/apps/demo/stop")
    assert r.status_code == 200 and r.json()["running"] is False
    with pytest.raises(ProcessLookupError):
        wait_for(lambda: os.kill(demo["pid"], 0), 10, what="the demo app to end")
    r = alice.post("labspace-apps/api/apps/demo/restart")
    assert r.status_code == 200 and r.json()["ready"] is True
    logs = alice.get("labspace-apps/api/apps/demo/logs", params={"lines": 50}).json()
    assert any("demo app listening" in line for line in logs["lines"])
    assert any("stopped" in line for line in logs["lines"])
    assert alice.post("labspace-apps/api/apps/nope/stop").json() == {
        "status": 404,
        "message": "No such app: nope",
    }


def test_workspace_started_despite_bad_catalog_entry(world):
    assert "app broken: launch.command must be a non-empty list" in world["hub"].log()
    apps = httpx.get(
        f"{world['url']}/user/alice/labspace-apps/api/apps",
        headers={"Authorization": f"token {world['tokens']['alice']}"},
        timeout=30,
    ).json()
    assert "broken" not in {a["id"] for a in apps}


def test_lifecycle_with_a_browser_session(world):
    """A page on the hub's origin (the catalog) calls the API with the user's cookie:
    it reads the XSRF token from the list and sends it with POST."""
    browser = login(world["url"] + "/", "alice", PASSWORD)
    try:
        r = browser.get("user/alice/lab")  # the OAuth dance sets the workspace's cookie
        assert r.status_code == 200
        r = browser.get("user/alice/labspace-apps/api/apps")
        assert r.status_code == 200
        token = r.headers["X-XSRFToken"]
        assert browser.post("user/alice/labspace-apps/api/apps/demo/stop").status_code == 403
        r = browser.post(
            "user/alice/labspace-apps/api/apps/demo/stop", headers={"X-XSRFToken": token}
        )
        assert r.status_code == 200 and r.json()["running"] is False
    finally:
        browser.close()
