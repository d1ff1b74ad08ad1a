"""A real Labspace hub (``labspace up`` subprocess, configurable-http-proxy,
local workspaces) on SQLite and PostgreSQL, driven over HTTP as users and
scripts drive it.

The first tests share one hub per database (``shared``; the PostgreSQL one
named by a plain ``postgresql://`` URL), and the last ones check and stop it;
the others start or restart hubs of their own."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml
from harness import (
    LABSPACE,
    REPO,
    HubAPI,
    HubProcess,
    hub_settings_for,
    login,
    wait_for,
    workspace_pids,
)

pytestmark = [pytest.mark.e2e]


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def shared(request, tmp_path_factory, proxy_command):
    """``(hub, api, token)``: one hub per database for the module; PostgreSQL
    through a plain ``postgresql://`` URL (the driver is Labspace's to add)."""
    tmp = tmp_path_factory.mktemp(f"hub-{request.param}")
    token = secrets.token_hex(16)
    settings = hub_settings_for(tmp / "data", proxy_command, token)
    if request.param == "postgres":
        cluster = request.getfixturevalue("pg_cluster")
        url = cluster.create_database(f"hub_{secrets.token_hex(4)}")
        settings["hub"]["db_url"] = url.replace("+psycopg", "")
    hub = HubProcess(tmp, settings)
    api = HubAPI(hub.url, token)
    try:
        yield hub.start(timeout=120), api, token
    finally:
        api.stop_all()
        api.close()
        hub.stop()
        for pid in workspace_pids(tmp / "data" / "users"):
            os.kill(pid, signal.SIGKILL)


def test_spawn_reaches_workspace_through_proxy(shared):
    hub, api, service_token = shared
    api.create_user("alice")
    server = api.start_server("alice")
    assert server["url"] == "/user/alice/"

    # the workspace answers through the public proxy
    r = httpx.get(
        f"{hub.url}user/alice/api/status",
        headers={"Authorization": f"token {service_token}"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    assert "started" in r.json()

    # its home is data_dir/users/alice, and files written there are the user's
    r = httpx.put(
        f"{hub.url}user/alice/api/contents/hello.txt",
        json={"type": "file", "format": "text", "content": "hi"},
        headers={"Authorization": f"token {service_token}"},
        timeout=30,
    )
    assert r.status_code == 201, r.text
    home = hub.workdir / "data" / "users" / "alice"
    assert (home / "hello.txt").read_text() == "hi"

    api.stop_server("alice")
    r = httpx.get(
        f"{hub.url}user/alice/api/status",
        headers={"Authorization": f"token {service_token}"},
        timeout=30,
        follow_redirects=False,
    )
    assert r.status_code != 200


def test_unsafe_user_name_gets_escaped_home(shared):
    hub, api, _ = shared
    name = api.create_user("Ada.Lovelace@example.org")["name"]
    api.start_server(name)
    users = hub.workdir / "data" / "users"
    (home,) = [p for p in users.iterdir() if p.name.startswith("ada")]
    assert home.name.startswith("ada-lovelace-example-org-"), home.name
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    api.stop_server(name)


def test_person_logs_in_with_printed_password(shared):
    hub, _, _ = shared
    assert hub.banner.group(1) == hub.url
    assert hub.banner.group(2) == "admin"
    session = login(hub.url, "admin", hub.admin_password)
    home = session.get("hub/home")
    assert home.status_code == 200
    assert re.search(r"Start\s+My Server", home.text)

    # "Start My Server", then JupyterLab, through the OAuth hand-off to the workspace
    session.get("hub/spawn")
    wait_for(
        lambda: session.get("hub/api/user").json()["servers"].get("", {}).get("ready"),
        90,
        0.5,
        what="admin's server",
    )
    lab = session.get("user/admin/lab")
    assert lab.status_code == 200
    assert lab.url.path == "/user/admin/lab"
    assert "JupyterLab" in lab.text
    session.delete(
        "hub/api/users/admin/server",
        headers={"X-XSRFToken": session.cookies.get("_xsrf", path="/hub/")},
    )

    wrong = httpx.Client(base_url=hub.url, timeout=30)
    wrong.get("hub/login")
    r = wrong.post(
        "hub/login",
        data={
            "username": "admin",
            "password": "not-the-password",
            "_xsrf": wrong.cookies.get("_xsrf"),
        },
    )
    assert r.status_code == 403
    assert "Invalid username or password" in r.text

    # the login form is XSRF-protected
    r = httpx.post(
        f"{hub.url}hub/login", data={"username": "admin", "password": hub.admin_password}
    )
    assert r.status_code == 403


# PostgreSQL only: a restart on SQLite, the embedded default, keeping its
# workspaces and sessions is proven by test_accounting_nothing_lost's hub
# restart (local workspaces) and test_hub_image (the hub's container killed)
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_restart_keeps_users_servers_and_password(hub_factory, hub_settings, db_url, service_token):
    hub_settings["hub"]["db_url"] = db_url
    hub_settings["hub"]["cleanup_servers"] = False
    first = hub_factory(hub_settings).start()
    HubAPI(first.url, service_token).create_user("bob")
    HubAPI(first.url, service_token).start_server("bob")
    password = first.admin_password
    session = login(first.url, "admin", password)
    assert first.stop() == 0

    second = hub_factory(hub_settings).start()
    api = HubAPI(second.url, service_token)
    api.started.add("bob")
    try:
        # printed by the start that made it only; later starts say where it is
        kept = second.workdir / "data" / "secrets" / "admin-password"
        assert f"with the password kept in {kept}" in second.log()
        assert password not in second.log()
        assert second.admin_password == password
        users = {u["name"]: u for u in api.request("GET", "users").json()}
        assert users["admin"]["admin"] is True
        # bob's workspace kept running and is reachable through the new proxy
        assert users["bob"]["servers"][""]["ready"] is True
        r = httpx.get(
            f"{second.url}user/bob/api/status",
            headers={"Authorization": f"token {service_token}"},
            timeout=30,
        )
        assert r.status_code == 200
        # the cookie secret survived: the session from before the restart still works
        session.base_url = second.url
        assert session.get("hub/api/user").json()["name"] == "admin"
    finally:
        api.stop_all()
    secret_file = second.workdir / "data" / "secrets" / "admin-password"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600


def test_bad_settings_stop_labspace_up(tmp_path):
    config = tmp_path / "labspace.yaml"
    config.write_text("hub:\n  prot: 8000\n  port: eighty\n")
    r = subprocess.run(
        [*LABSPACE, "up", "--config", str(config)], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 2
    assert "hub.prot: unknown key (did you mean 'port'?)" in r.stderr
    assert "hub.port: expected a whole number, got a string 'eighty'" in r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    assert not (tmp_path / "labspace-data").exists()


def test_bad_settings_stop_plain_jupyterhub(tmp_path):
    """Start-up through jupyterhub_config.py runs the same validation."""
    config = tmp_path / "labspace.yaml"
    config.write_text("backend:\n  type: slurm\n")
    env = {**os.environ, "LABSPACE_CONFIG": str(config)}
    r = subprocess.run(
        [sys.executable, "-m", "jupyterhub", "-f", str(REPO / "jupyterhub_config.py")],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
    )
    assert r.returncode == 2
    assert (
        "backend.type: 'slurm' is not a valid choice (one of: local, docker, kubernetes)"
        in r.stderr
    )
    assert "Traceback" not in r.stderr


def test_secret_from_environment_is_used_and_never_printed(hub_factory, hub_settings):
    password = "env-admin-password-0123456789-abcdef"
    hub = hub_factory(hub_settings, env={"LABSPACE_AUTH_ADMIN_PASSWORD": password}).start()
    assert "the password from auth.admin_password" in hub.log()
    assert password not in hub.log()
    assert login(hub.url, "admin", password).get("hub/api/user").status_code == 200


def test_busy_port_is_named_before_anything_starts(tmp_path, hub_settings):
    import socket

    import yaml

    config = tmp_path / "labspace.yaml"
    config.write_text(yaml.safe_dump(hub_settings))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", hub_settings["hub"]["port"]))
        taken.listen()
        r = subprocess.run(
            [*LABSPACE, "up", "--config", str(config)], capture_output=True, text=True, timeout=60
        )
    assert r.returncode == 2
    port = hub_settings["hub"]["port"]
    assert f"hub.port: 127.0.0.1:{port} is not free" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.slow
def test_the_proxy_make_up_installed_is_found_wherever_the_settings_live(
    tmp_path, hub_factory, hub_settings, proxy_command
):
    """`labspace up --config /etc/x/labspace.yaml` from another folder, with no
    hub.proxy_command and no proxy on PATH, runs the repository's proxy (the one
    `make up` installed with `npm ci`): the launcher and the hub, which runs in
    data_dir, both find it."""
    installed = REPO / "node_modules" / ".bin" / "configurable-http-proxy"
    if proxy_command != [str(installed)]:
        pytest.skip("the proxy comes from PATH here, not from the repository's node_modules")
    del hub_settings["hub"]["proxy_command"]
    path = os.pathsep.join(
        d
        for d in os.environ["PATH"].split(os.pathsep)
        if not shutil.which("configurable-http-proxy", path=d)
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    hub = hub_factory(hub_settings)
    hub.name = f"hub at {hub.url}"
    hub.config_path.write_text(yaml.safe_dump(hub_settings))
    env = {k: v for k, v in os.environ.items() if k != "LABSPACE_CONFIG"}
    hub.launch(
        [*LABSPACE, "up", "--config", str(hub.config_path)], elsewhere, {**env, "PATH": path}, 120
    )
    assert httpx.get(hub.url + "hub/health", timeout=10).status_code == 200
    pid = int((tmp_path / "data" / "proxy.pid").read_text())
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert str(installed).encode() in argv, argv


# the last tests on the shared hubs: pytest keeps each hub's tests in file order


@pytest.mark.parametrize("shared", ["postgres"], indirect=True)
def test_postgres_holds_the_hub_state(shared):
    import psycopg

    hub, api, _ = shared
    api.create_user("carol")
    with psycopg.connect(hub.settings["hub"]["db_url"]) as conn:
        names = {row[0] for row in conn.execute("SELECT name FROM users")}
    assert {"admin", "carol"} <= names
    assert not (hub.workdir / "data" / "jupyterhub.sqlite").exists()


@pytest.mark.parametrize("shared", ["sqlite"], indirect=True)
def test_stopping_labspace_stops_workspaces(shared):
    hub, api, _ = shared
    api.create_user("dave")
    api.start_server("dave")
    home = hub.workdir / "data" / "users" / "dave"
    assert workspace_pids(home)
    assert hub.stop() == 0
    assert workspace_pids(home) == []
