"""The spawner hook points, in a real hub: ``before_start`` and ``after_stop``
hooks named in labspace.yaml (``hub.config``) run at the right moments, a
``before_start`` hook can refuse a start with its own status and message, and
``after_stop`` also runs for a failed start and for a workspace that died.
``check_options`` hooks see the options named in ``option_keys``, can refuse
them before anything starts and add environment variables; ``form_parts`` add
to the spawn form."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from harness import REPO, server_pid, wait_for, workspace_pids

pytestmark = [pytest.mark.e2e]


@pytest.fixture(scope="module")
def hooked(module_hub_factory, tmp_path_factory):
    """One hub for the module (each test has users of its own) whose hooks
    record every call, with the user's name, in ``log``."""
    log = tmp_path_factory.mktemp("hooks") / "hooks.jsonl"

    def edit(settings):
        settings["hub"]["config"]["LabspaceSpawnerMixin"] = {
            "before_start": ["recording_hooks.before_start"],
            "after_stop": ["recording_hooks.after_stop"],
            "check_options": ["recording_hooks.check_options"],
            "form_parts": ["recording_hooks.form_part"],
            "option_keys": {"app": "an app to run"},
        }
        settings["hub"]["config"]["Spawner"] = {"poll_interval": 1}

    env = {
        "PYTHONPATH": str(REPO / "tests" / "hooks"),
        "LABSPACE_TEST_HOOK_LOG": str(log),
    }
    hub, api = module_hub_factory(edit, env)
    return hub, api, log


def events(log: Path, user: str) -> list[dict]:
    """The hook calls recorded for ``user``, in order."""
    found = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return [e for e in found if e["user"] == user]


def test_before_start_hook_refuses_with_its_message(hooked):
    # first in the module: no workspace of the shared hub has started yet
    hub, api, log = hooked
    api.create_user("broke1")
    r = api.request("POST", "users/broke1/server")
    assert r.status_code == 402, r.text
    assert r.json()["message"] == "Your budget is spent (ask your project lead for more)"
    assert not api.user("broke1").json()["servers"]
    assert workspace_pids(hub.workdir / "data" / "users") == []
    # the failed start still owes its after_stop (a reservation to release)
    wait_for(lambda: events(log, "broke1")[-1]["event"] == "after_stop", 30, what="after_stop")


def test_hooks_run_around_a_workspace(hooked):
    _, api, log = hooked
    api.create_user("ann")
    api.start_server("ann")
    assert events(log, "ann") == [
        {"event": "check_options", "user": "ann", "options": {}},
        {"event": "before_start", "user": "ann", "profile": "default"},
    ]
    api.stop_server("ann")
    assert events(log, "ann")[-1] == {"event": "after_stop", "user": "ann"}


def test_after_stop_runs_when_a_workspace_dies(hooked):
    hub, api, log = hooked
    api.create_user("cleo")
    api.start_server("cleo")
    pid = server_pid(hub.workdir / "data" / "users" / "cleo")
    os.kill(pid, signal.SIGKILL)
    wait_for(
        lambda: events(log, "cleo")[-1] == {"event": "after_stop", "user": "cleo"},
        60,
        what="after_stop for the dead workspace",
    )
    wait_for(lambda: not api.user("cleo").json()["servers"], 30, what="server gone")
    api.started.discard("cleo")


def environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def test_check_options_hook_refuses_or_passes_an_option(hooked):
    hub, api, log = hooked
    api.create_user("dora")
    r = api.request("POST", "users/dora/server", json={"app": "forbidden"})
    assert r.status_code == 403, r.text
    assert r.json()["message"] == "App 'forbidden' is not open to your groups"
    assert not api.user("dora").json()["servers"]
    assert "before_start" not in [e["event"] for e in events(log, "dora")]
    r = api.request("POST", "users/dora/server", json={"bogus": 1})
    assert r.status_code == 400
    assert "Unknown option 'bogus'" in r.json()["message"]
    assert "'app'" in r.json()["message"]
    r = api.request("POST", "users/dora/server", json={"app": "viewer"})
    assert r.status_code in (201, 202), r.text
    api.started.add("dora")
    wait_for(
        lambda: api.user("dora").json()["servers"].get("", {}).get("ready"),
        90,
        what="dora's workspace",
    )
    pid = server_pid(hub.workdir / "data" / "users" / "dora")
    assert environ(pid)["LABSPACE_TEST_APP"] == "viewer"


def test_form_parts_add_to_the_spawn_form(hooked):
    from harness import login

    hub, api, _ = hooked
    client = login(hub.url, "admin", hub.admin_password)
    try:
        page = client.get("hub/spawn/admin")
    finally:
        client.close()
    assert page.status_code == 200
    assert '<select name="app">' in page.text
    assert "1.00 credits/hour" in page.text
