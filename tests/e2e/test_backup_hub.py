"""A backup made while a real hub runs, restored into a new ``data_dir`` and
started as a new hub (tier 4, the local backend, accounting and catalog on):

- the first hub has users in a project group, a top-up, a finished session
  (usage charged), a running workspace with its session open, and a catalog app
  with two versions; ``labspace backup --homes`` copies it while it runs;
- the first hub stops leaving the workspace running (``hub.cleanup_servers:
  false``), ``labspace restore`` puts the backup into a new ``data_dir`` for
  new ports, and a hub starts there: the users and groups, a token made before,
  the admin password, the running workspace and its open session (same key),
  every ledger transaction, the project's balance and the app's two versions
  are what the first hub had; stopping the workspace closes that session.
"""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path

import pytest
import yaml
from harness import LABSPACE, HubAPI, HubProcess, demo_app, free_port, service_client, wait_for
from test_accounting_e2e_support import Accounting, accounting_settings

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
CATALOG_SCOPES = ["custom:labspace-catalog:admin", "access:services!service=catalog"]


def labspace(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*LABSPACE, *args], capture_output=True, text=True, timeout=300)


def snapshot(hub: HubProcess, api: HubAPI, token: str) -> dict:
    """What the tests compare between the two hubs, read through the APIs."""
    acct = Accounting(hub, token)
    try:
        ledger = acct.api.get("ledger", params={"limit": 1000})
        assert ledger.status_code == 200, ledger.text
        body = ledger.json()
        rows = body["transactions"] if isinstance(body, dict) else body
        project = acct.api.get("projects/lab-a")
        assert project.status_code == 200, project.text
        sessions = {s["user"]: s for s in acct.sessions()}
    finally:
        acct.close()
    with service_client(hub.url, token, "catalog") as catalog:
        versions = catalog.get("apps/viewer/versions")
        assert versions.status_code == 200, versions.text
    users = {u["name"]: u for u in api.request("GET", "users").json()}
    return {
        "users": sorted(users),
        "groups": {g["name"]: g["users"] for g in api.request("GET", "groups").json()},
        "transactions": sorted(json.dumps(t, sort_keys=True) for t in rows),
        "balance": project.json()["balance"],
        "sessions": {
            u: (s["key"], s["status"], s["cost"], s["reserved"]) for u, s in sessions.items()
        },
        "versions": [v["version"] for v in versions.json()["versions"]],
        "alice_running": bool(users["alice"]["servers"].get("", {}).get("ready")),
    }


def renumbered(settings: dict, data_dir: Path) -> dict:
    """``settings`` for a second hub: another data_dir, every port new."""
    out = copy.deepcopy(settings)
    out["data_dir"] = str(data_dir)
    for key in ("port", "hub_port", "proxy_api_port"):
        out["hub"][key] = free_port()
    for name in ("accounting", "catalog"):
        out[name]["port"] = free_port()
    return out


def fill(hub: HubProcess, api: HubAPI, token: str) -> str:
    """Users in project ``lab-a``, a top-up, bob's finished session, alice's
    running workspace, app ``viewer`` in two versions; returns a token of alice."""
    acct = Accounting(hub, token)
    try:
        acct.wait_up()
        for name in ("alice", "bob"):
            api.create_user(name)
        api.add_to_group("lab-a", "alice", "bob")
        acct.topup("lab-a", "100.00")
        api.start_server("bob")
        api.stop_server("bob")
        api.start_server("alice")
        with service_client(hub.url, token, "catalog") as catalog:
            wait_for(lambda: catalog.get("apps").status_code == 200, 90, 1, what="the catalog")
            made = catalog.post("apps", json=demo_app("viewer"))
            assert made.status_code == 201, made.text
            changed = catalog.patch("apps/viewer", json={"version": "2", "title": "Viewer 2"})
            assert changed.status_code == 200, changed.text
        wait_for(lambda: acct.outbox_depth() == 0, 60, 0.5, what="the outbox delivered")
        wait_for(
            lambda: (
                {s["user"]: s["status"] == "closed" for s in acct.sessions()}
                == {"alice": False, "bob": True}
            ),
            60,
            0.5,
            what="bob's session closed, alice's open",
        )
    finally:
        acct.close()
    return api.token("alice")


def test_backup_while_running_then_restore_into_a_new_data_dir(
    hub_factory, hub_settings, service_token, tmp_path
):
    settings = accounting_settings(
        hub_settings,
        prices={"profiles": {"small": 2.0}},
        min_period_hours=1,  # the start reserves an hour; nothing else moves in the test
        charge_interval=3600,
        grace_period=0,
    )
    (role,) = settings["hub"]["config"]["JupyterHub"]["load_roles"]
    role["scopes"] += CATALOG_SCOPES
    settings["hub"]["cleanup_servers"] = False
    settings["catalog"] = {"enabled": True, "port": free_port()}
    old = hub_factory(settings).start()
    api = HubAPI(old.url, service_token)
    try:
        alice_token = fill(old, api, service_token)
        before = snapshot(old, api, service_token)
        assert before["versions"] == ["2", "1"] and before["alice_running"], before
        assert before["balance"] not in ("100.00", "100"), before  # usage and a reservation
        made = labspace(
            "backup", "--homes", "--config", str(old.config_path), "--to", str(tmp_path / "bk")
        )
        assert made.returncode == 0, made.stderr
        assert snapshot(old, api, service_token) == before  # the hub ran on, unchanged
    except BaseException:
        api.stop_all()  # the hub keeps workspaces: stop them before it stops
        raise
    finally:
        api.close()
    for part in ("outbox:", "hub: databases/hub.sqlite", "accounting:", "catalog:", "secrets:"):
        assert part in made.stdout, made.stdout
    assert "homes: homes.tar.gz (2 users)" in made.stdout, made.stdout
    (folder,) = (tmp_path / "bk").iterdir()
    old.stop()  # hub.cleanup_servers false: alice's workspace runs on

    new_dir = tmp_path / "new"
    new_dir.mkdir()
    new_settings = renumbered(settings, new_dir / "data")
    new = HubProcess(new_dir, new_settings)
    new_api = HubAPI(new.url, service_token)
    new_api.started.add("alice")  # the new hub stops her workspace, whatever happens
    try:
        (new_dir / "labspace.yaml").write_text(yaml.safe_dump(new_settings))
        done = labspace("restore", str(folder), "--config", str(new_dir / "labspace.yaml"))
        assert done.returncode == 0, done.stderr
        assert "files match their sha256" in done.stdout
        assert (new_dir / "data" / "users" / "alice").is_dir()
        new.start()
        assert new.admin_password == old.admin_password
        check_restored(new, new_api, service_token, before, alice_token)
    finally:
        new_api.stop_all()
        new_api.close()
        new.stop()


def check_restored(hub, api, token: str, before: dict, alice_token: str) -> None:
    acct = Accounting(hub, token)
    try:
        acct.wait_up()
        with service_client(hub.url, token, "catalog") as catalog:
            wait_for(lambda: catalog.get("apps").status_code == 200, 90, 1, what="the catalog")
        after = snapshot(hub, api, token)
        # the new hub's charger may charge alice's running session from its hold
        # at once: new charge rows that leave the project's balance as it was
        new_rows = [json.loads(t) for t in set(after["transactions"]) - set(before["transactions"])]
        assert all(t["kind"] == "charge" and "alice//" in t["reason"] for t in new_rows), new_rows
        after["transactions"] = [t for t in after["transactions"] if t in before["transactions"]]
        for snap in (before, after):
            snap["sessions"] = {
                u: (k, st, reserved) for u, (k, st, _, reserved) in snap["sessions"].items()
            }
        differ = {k: (before[k], after[k]) for k in before if before[k] != after[k]}
        assert not differ, json.dumps(differ, indent=1)
        me = api.client.get("hub/api/user", headers={"Authorization": f"token {alice_token}"})
        assert me.status_code == 200 and me.json()["name"] == "alice", me.text
        # the restored hub runs the workspace on: stopping it closes the same session
        api.stop_server("alice")
        wait_for(
            lambda: {s["user"]: s["status"] for s in acct.sessions()}["alice"] == "closed",
            60,
            0.5,
            what="alice's session closed by the new hub",
        )
    finally:
        acct.close()
