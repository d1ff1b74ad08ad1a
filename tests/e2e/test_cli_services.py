"""The CLI against a real hub with the accounting and catalog services on: what a
user and an admin do with their own tokens, and the roles Labspace grants
(every user reads their own usage and launches apps; only `labspace-admin`
members top up budgets)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from harness import HubAPI, free_port

pytestmark = [pytest.mark.e2e]
LABSPACE = str(Path(sys.executable).parent / "labspace")


@pytest.fixture
def hub(hub_factory, hub_settings, service_token):
    hub_settings["accounting"] = {
        "enabled": True,
        "port": free_port(),
        "projects": {"prefix": "proj-"},
        "prices": {"profiles": {"default": 2}},
    }
    hub_settings["catalog"] = {"enabled": True, "port": free_port()}
    hub = hub_factory(hub_settings).start()
    api = HubAPI(hub.url, service_token)
    yield hub, api
    api.close()


def token_for(api: HubAPI, name: str) -> str:
    if api.user(name).status_code == 404:
        api.create_user(name)
    r = api.request("POST", f"users/{name}/tokens", json={"note": "cli test"})
    assert r.status_code == 201, r.text
    return r.json()["token"]


def run(hub, token, *args):
    env = {**os.environ, "LABSPACE_URL": hub.url, "LABSPACE_TOKEN": token}
    return subprocess.run([LABSPACE, *args], capture_output=True, text=True, env=env, timeout=60)


def test_user_and_admin_through_the_cli(hub):
    hub, api = hub
    ann = token_for(api, "ann")
    admin = token_for(api, "admin")
    assert run(hub, admin, "groups", "add", "proj-a", "ann").returncode == 0

    apps = run(hub, ann, "apps", "list", "--json")
    assert apps.returncode == 0, apps.stderr
    assert {"data-explorer", "dashboards"} <= {a["id"] for a in json.loads(apps.stdout)}

    me = run(hub, ann, "usage", "me")
    assert me.returncode == 0, me.stderr
    assert "proj-a" in me.stdout

    refused = run(hub, ann, "usage", "top-up", "proj-a", "50", "--reason", "please")
    assert refused.returncode == 1
    assert refused.stderr.startswith("error: 403")
    assert ann not in refused.stderr

    done = run(hub, admin, "usage", "top-up", "proj-a", "50", "--reason", "grant 2026")
    assert done.returncode == 0, done.stderr
    assert "balance 50.00" in done.stdout

    report = run(
        hub,
        admin,
        "usage",
        "report",
        "--from",
        "2026-01-01",
        "--to",
        "2027-01-01",
        "--by",
        "project",
        "--format",
        "csv",
    )
    assert report.returncode == 0, report.stderr
    assert report.stdout.splitlines()[0].startswith("project")

    bad = run(hub, admin, "usage", "report", "--from", "yesterday", "--to", "2027-01-01")
    assert bad.returncode == 1
    assert "'from' and 'to' must be dates" in bad.stderr
