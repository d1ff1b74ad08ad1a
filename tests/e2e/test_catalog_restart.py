"""The catalog service process under a real hub: it stops within 2 s of
SIGTERM, even with a launch being followed, and after the hub starts it again
a browser signed in before the restart is still signed in (the kit keeps the
cookie secret under ``data_dir/secrets``), without a new OAuth round trip;
the launch made before the stop is still there and reaches ``running``."""

from __future__ import annotations

import os
import secrets
import signal
import time

import httpx
import psutil
import pytest
from harness import HubAPI, HubProcess, free_port, hub_settings_for, login, wait_for, workspace_pids
from test_catalog_hub import page, server_app
from test_catalog_unreachable import catalog_pid

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
PASSWORD = secrets.token_hex(12)
AUTHORIZE = "GET /hub/api/oauth2/authorize"


@pytest.fixture(scope="module")
def world(tmp_path_factory, proxy_command):
    tmp = tmp_path_factory.mktemp("catalog-restart")
    token = secrets.token_hex(16)
    settings = hub_settings_for(tmp / "data", proxy_command, token)
    settings["auth"] = {"user_password": PASSWORD}
    web = server_app("web", page(tmp / "web-site", "catalog web app"), kind="proxied")
    settings["catalog"] = {"enabled": True, "port": free_port(), "apps": [web]}
    hub = HubProcess(tmp, settings)
    api = None
    try:
        hub.start()
        api = HubAPI(hub.url, token)
        api.create_user("ada")
        api.started.add("ada")
        yield {"hub": hub, "api": api}
    finally:
        if api:
            api.stop_all()
            api.close()
        hub.stop()
        for pid in workspace_pids(tmp / "data" / "users"):
            os.kill(pid, signal.SIGKILL)


def signed_in(world) -> httpx.Client:
    """Ada's browser, signed in to the hub and, through OAuth, to the catalog."""
    browser = login(world["hub"].url, "ada", PASSWORD)
    r = wait_for(
        lambda: (r := browser.get("services/catalog/")).status_code == 200 and r,
        60,
        what="the catalog page through OAuth",
    )
    assert "catalog" in r.text.lower()
    assert browser.cookies.get("service-catalog"), "no catalog cookie after OAuth"
    return browser


def test_sigterm_stops_it_within_2s_and_a_restart_keeps_sign_in(world):
    hub = world["hub"]
    browser = signed_in(world)
    authorized = hub.log().count(AUTHORIZE)
    assert authorized >= 1
    # a launch being followed (its progress stream open) while the service stops
    xsrf = {"X-XSRFToken": browser.cookies.get("_xsrf", path="/services/catalog/")}
    r = browser.post("services/catalog/api/apps/web/launch", json={}, headers=xsrf)
    assert r.status_code == 202, r.text
    launch = r.json()
    pid = catalog_pid(hub)
    proc = psutil.Process(pid)
    began = time.monotonic()
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: _exited(proc), 10, 0.02, what="the catalog exiting")
    took = time.monotonic() - began
    assert took < 2.0, f"the catalog took {took:.2f} s to stop"
    # the hub notices (it polls its services) and starts it again
    wait_for(lambda: _other_pid(hub, pid), 120, 1, what="the catalog started again")
    # the same cookie: the page answers at once, no OAuth redirect
    no_redirects = httpx.Client(
        base_url=hub.url, cookies=browser.cookies, follow_redirects=False, timeout=30
    )
    # (while it starts, its page answers 200 with a Refresh header, the API 503)
    wait_for(
        lambda: no_redirects.get("services/catalog/api/apps").status_code != 503,
        60,
        what="the catalog answering",
    )
    r = no_redirects.get("services/catalog/")
    assert r.status_code == 200, (r.status_code, r.headers.get("Location"))
    assert "Refresh" not in r.headers and "ada" in r.text
    assert hub.log().count(AUTHORIZE) == authorized

    # nothing lost: the launch made before the stop is there and runs
    def running():
        r = no_redirects.get(f"services/catalog/api/launches/{launch['id']}")
        assert r.status_code == 200, r.text
        return r.json()["state"] == "running"

    wait_for(running, 120, 1, what="the launch running")
    no_redirects.close()
    browser.close()


def _exited(proc: psutil.Process) -> bool:
    """Gone, or a zombie its parent (the hub) has not reaped yet."""
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _other_pid(hub: HubProcess, old: int) -> bool:
    try:
        return catalog_pid(hub) != old
    except AssertionError:
        return False
