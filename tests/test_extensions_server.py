"""The apps extension in a real jupyter-server (no hub; token auth): catalog
apps from the environment, a failed start shown with its log, the standalone
default URL, and 403 rather than a login redirect for API clients."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
from harness import free_port, wait_for

DEMO = [sys.executable, "-m", "labspace.extensions.demo_app"]
APPS = [
    {
        "id": "demo",
        "title": "Demo",
        "launch": {"command": [*DEMO, "--port={port}"], "ready_path": "/healthz"},
    },
    # answers 200 on /healthz, but the catalog expects 204: never ready
    {
        "id": "picky",
        "title": "Picky",
        "launch": {
            "command": [*DEMO, "--port={port}"],
            "ready_path": "/healthz",
            "ready_status": 204,
            "timeout": 2,
        },
    },
    {"id": "crash", "title": "Crash", "launch": {"command": [*DEMO, "--port=x{port}"]}},
    {"id": "bad", "launch": {"command": ["x"], "shell": True}},
]
TOKEN = "test-token-0123456789"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    port = free_port()
    env = {
        **os.environ,
        "HOME": str(home),
        "LABSPACE_CATALOG_APPS": json.dumps(APPS),
        "LABSPACE_STANDALONE_APP": "demo",
        "JUPYTER_CONFIG_DIR": str(home / ".jupyter"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
    }
    log = open(home / "server.log", "wb")  # noqa: SIM115  (closed at teardown)
    cmd = [
        sys.executable,
        "-m",
        "jupyter_server",
        "--no-browser",
        f"--port={port}",
        "--ServerApp.ip=127.0.0.1",
        f"--IdentityProvider.token={TOKEN}",
        f"--ServerApp.root_dir={home}",
        "--ServerApp.jpserver_extensions",
        "labspace.extensions.apps=True",
    ]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    proc = subprocess.Popen(cmd, env=env, cwd=home, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _up(url), 30, what="jupyter-server")
        yield {"url": url, "log": home / "server.log"}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


def _up(url: str) -> bool:
    try:
        return httpx.get(url + "/api/status", timeout=2).status_code in (200, 403)
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def client(server):
    headers = {"Authorization": f"token {TOKEN}"}
    with httpx.Client(base_url=server["url"], headers=headers, timeout=60) as c:
        yield c


def test_catalog_apps_registered_bad_one_skipped(client, server):
    ids = [a["id"] for a in client.get("/labspace-apps/api/apps").json()]
    assert {"data-explorer", "dashboards", "demo", "picky", "crash"} <= set(ids)
    assert "bad" not in ids
    log = server["log"].read_text()
    assert "LABSPACE_CATALOG_APPS[3]: app bad: unknown key launch.'shell'; skipped" in log


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
