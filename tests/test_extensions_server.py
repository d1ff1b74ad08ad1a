"""The apps extension in a real jupyter-server (no hub; token auth): catalog
apps from the environment, a failed start shown with its log, the standalone
default URL, and 403 rather than a login redirect for API clients."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import httpx
import pytest
from harness import jupyter_server, wait_for

DEMO = [sys.executable, "-m", "labspace.extensions.demo_app"]
SOCKET_DEMO = [*DEMO, "--unix-socket={unix_socket}"]
APPS = [
    {
        "id": "demo",
        "title": "Demo",
        "launch": {"command": [*SOCKET_DEMO], "unix_socket": True, "ready_path": "/healthz"},
    },
    # answers 200 on /healthz, but the catalog expects 204: never ready
    {
        "id": "picky",
        "title": "Picky",
        "launch": {
            "command": [*SOCKET_DEMO],
            "unix_socket": True,
            "ready_path": "/healthz",
            "ready_status": 204,
            "timeout": 2,
        },
    },
    {
        "id": "crash",
        "title": "Crash",
        "launch": {"command": [*SOCKET_DEMO, "--port=x"], "unix_socket": True},
    },
    # on TCP: other users' workspaces share 127.0.0.1, so it is not served
    {"id": "tcp", "launch": {"command": [*DEMO, "--port={port}"]}},
    {"id": "bad", "launch": {"command": ["x"], "shell": True}},
]
TOKEN = "test-token-0123456789"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    env = {"LABSPACE_CATALOG_APPS": json.dumps(APPS), "LABSPACE_STANDALONE_APP": "demo"}
    with jupyter_server(tmp_path_factory.mktemp("home"), TOKEN, env) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    headers = {"Authorization": f"token {TOKEN}"}
    with httpx.Client(base_url=server["url"], headers=headers, timeout=60) as c:
        yield c


def test_catalog_apps_registered_bad_one_skipped(client, server):
    ids = [a["id"] for a in client.get("/labspace-apps/api/apps").json()]
    assert {"data-explorer", "demo", "picky", "crash"} <= set(ids)
    assert "bad" not in ids and "tcp" not in ids
    log = server["log"].read_text()
    assert "LABSPACE_CATALOG_APPS[4]: app bad: unknown key launch.'shell'; skipped" in log
    assert "LABSPACE_CATALOG_APPS[3]: app tcp: listens on a TCP port of 127.0.0.1" in log


def test_shared_loopback_no_proxy_port_routes(client):
    for path in ("/proxy/8888/", "/proxy/127.0.0.1:8888/", "/proxy/absolute/8888/x"):
        r = client.get(path)
        assert r.status_code == 404, path
        assert r.json()["message"].startswith("/proxy/<port> is off")


def test_dashboards_are_voila_inside_the_server(client):
    r = client.get("/dashboards/", follow_redirects=False)
    assert r.status_code == 302 and r.headers["location"] == "/voila/tree"
    r = client.get("/dashboards/voila/render/x.ipynb?a=1", follow_redirects=False)
    assert r.headers["location"] == "/voila/render/x.ipynb?a=1"
    page = client.get("/voila/tree")
    assert page.status_code == 200 and "cdn.jsdelivr.net" not in page.text


def test_standalone_default_url(client):
    r = client.get("/", follow_redirects=False)
    assert r.status_code == 302 and r.headers["location"].rstrip("?").endswith("/demo/")
    assert "Labspace demo app" in client.get("/demo/").text


def test_not_ready_is_503_with_the_log(client):
    started = time.monotonic()
    r = client.get("/picky/")
    assert r.status_code == 503 and time.monotonic() - started < 15
    body = r.json()
    assert body["message"] == "Picky did not answer /healthz with 204 within 2 s"
    assert any("demo app listening" in line for line in body["log"])
    page = client.get("/picky/", headers={"Accept": "text/html"})
    assert page.status_code == 503 and "Picky did not start" in page.text
    assert "demo app listening" in page.text


def test_crash_while_starting(client):
    r = client.get("/crash/")
    assert r.status_code == 503
    assert r.json()["message"] == "Crash exited with code 2 while starting"
    logs = client.get("/labspace-apps/api/apps/crash/logs", params={"lines": 5}).json()
    assert any("invalid int value" in line for line in logs["lines"])


def test_api_clients_get_403_browsers_the_login_page(server):
    assert httpx.get(server["url"] + "/demo/").status_code == 403
    r = httpx.get(server["url"] + "/demo/", headers={"Accept": "text/html"})
    assert r.status_code == 302 and "/login" in r.headers["location"]
    r = httpx.post(server["url"] + "/labspace-apps/api/apps/demo/stop")
    assert r.status_code == 403


def test_kernels_on_private_unix_sockets(client, server):
    """The shared loopback gets no kernel ports: ZeroMQ on unix sockets, 0700."""
    r = client.post("/api/kernels", json={"name": "python3"})
    assert r.status_code == 201, r.text
    kernel = r.json()["id"]
    try:
        runtime = server["log"].parent / "runtime"
        info = json.loads((runtime / f"kernel-{kernel}.json").read_text())
        assert info["transport"] == "ipc"
        shell = Path(f"{info['ip']}-{info['shell_port']}")
        wait_for(shell.is_socket, 60, what="the kernel's shell socket")
        assert oct(shell.parent.stat().st_mode)[-3:] == "700"
    finally:
        client.delete(f"/api/kernels/{kernel}")
