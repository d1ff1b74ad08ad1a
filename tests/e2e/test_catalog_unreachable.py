"""A real hub whose catalog service is stopped: a start does what
``catalog.on_unreachable`` says, and everything is back once it answers again.

The hub restarts a managed service that exits, so "stopped" is the catalog's
process stopped with SIGSTOP: its port accepts connections and nothing answers,
the worst case for the hub's hook (it waits for its timeout). SIGCONT brings it
back. ``start-without-apps`` (the default): ada's workspace starts with no
catalog apps and the standalone app's start is a 503 with a clear message;
``refuse``: her start is a 503 and nothing starts.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal

import httpx
import psutil
import pytest
from harness import HubAPI, HubProcess, free_port, hub_settings_for, wait_for, workspace_pids
from test_catalog_hub import page, server_app

from labspace.services.catalog.hubside import UNREACHABLE_APP, UNREACHABLE_START

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def catalog_pid(hub: HubProcess) -> int:
    """The catalog service process of ``hub`` (a descendant of ``labspace up``)."""
    for proc in psutil.Process(hub.proc.pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "labspace.services.catalog" in proc.cmdline():
                return proc.pid
    raise AssertionError("no catalog service process under the hub")


@contextlib.contextmanager
def stopped(hub: HubProcess):
    """The catalog service stopped (SIGSTOP) for the block, then continued."""
    pid = catalog_pid(hub)
    os.kill(pid, signal.SIGSTOP)
    try:
        yield pid
    finally:
        os.kill(pid, signal.SIGCONT)


def start_hub(tmp, proxy_command, on_unreachable: str):
    token = secrets.token_hex(16)
    settings = hub_settings_for(tmp / "data", proxy_command, token)
    web = server_app("web", page(tmp / "web-site", "catalog web app"), kind="proxied")
    viewer = server_app("viewer", page(tmp / "viewer", "viewer"), kind="standalone")
    settings["catalog"] = {
        "enabled": True,
        "port": free_port(),
        "apps": [web, viewer],
        "on_unreachable": on_unreachable,
    }
    hub = HubProcess(tmp, settings).start()
    api = HubAPI(hub.url, token)
    api.create_user("ada")
    r = api.request("POST", "users/ada/tokens", json={"note": "catalog unreachable test"})
    assert r.status_code == 201, r.text
    # the catalog answers (it may still be starting when the hub is up)
    wait_for(lambda: catalog(hub, r.json()["token"]).status_code == 200, 60, what="catalog")
    return hub, api, r.json()["token"]


def catalog(hub: HubProcess, token: str) -> httpx.Response:
    headers = {"Authorization": f"token {token}"}
    return httpx.get(f"{hub.url}services/catalog/api/apps", headers=headers, timeout=30)


@pytest.fixture(scope="module", params=["start-without-apps", "refuse"])
def world(request, tmp_path_factory, proxy_command):
    tmp = tmp_path_factory.mktemp(f"catalog-{request.param}")
    hub = api = None
    try:
        hub, api, token = start_hub(tmp, proxy_command, request.param)
        yield {"hub": hub, "api": api, "token": token, "mode": request.param}
    finally:
        if api:
            api.stop_all()
            api.close()
        if hub:
            hub.stop()
        for pid in workspace_pids(tmp / "data" / "users"):
            os.kill(pid, signal.SIGKILL)


def workspace_apps(world) -> set[str]:
    headers = {"Authorization": f"token {world['token']}"}
    r = httpx.get(f"{world['hub'].url}user/ada/labspace-apps/api/apps", headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    return {a["id"] for a in r.json()}


def servers(world) -> dict:
    return world["api"].user("ada").json()["servers"]


def test_a_start_while_the_catalog_is_stopped(world):
    api = world["api"]
    with stopped(world["hub"]):
        if world["mode"] == "refuse":
            r = api.request("POST", "users/ada/server")
            assert r.status_code == 503, r.text
            assert r.json()["message"] == UNREACHABLE_START
            assert servers(world) == {}
        else:
            api.start_server("ada")
            assert "web" not in workspace_apps(world)
            r = api.request("POST", "users/ada/servers/viewer", json={"app": "viewer"})
            assert r.status_code == 503, r.text
            assert r.json()["message"] == UNREACHABLE_APP
            assert "viewer" not in servers(world)
            api.stop_server("ada")
    assert "Catalog service unreachable at ada's start" in world["hub"].log()
    # the catalog answers again: the next start has its apps
    api.start_server("ada")
    assert "web" in workspace_apps(world)
    api.stop_server("ada")
