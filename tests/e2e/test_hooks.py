"""The spawner hook points, in a real hub: ``before_start`` and ``after_stop``
hooks named in labspace.yaml (``hub.config``) run at the right moments, a
``before_start`` hook can refuse a start with its own status and message, and
``after_stop`` also runs for a failed start and for a workspace that died."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from harness import REPO, wait_for, workspace_pids

pytestmark = [pytest.mark.e2e]


@pytest.fixture
def hooked(hub_factory, hub_settings, tmp_path, service_token):
    from harness import HubAPI

    log = tmp_path / "hooks.jsonl"
    hub_settings["hub"]["config"]["LabspaceSpawnerMixin"] = {
        "before_start": ["recording_hooks.before_start"],
        "after_stop": ["recording_hooks.after_stop"],
    }
    hub_settings["hub"]["config"]["Spawner"] = {"poll_interval": 1}
    env = {
        "PYTHONPATH": str(REPO / "tests" / "hooks"),
        "LABSPACE_TEST_HOOK_LOG": str(log),
    }
    hub = hub_factory(hub_settings, env=env).start()
    api = HubAPI(hub.url, service_token)
    yield hub, api, log
    api.stop_all()
    api.close()


def events(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_hooks_run_around_a_workspace(hooked):
    _, api, log = hooked
    api.create_user("ann")
    api.start_server("ann")
    assert events(log) == [{"event": "before_start", "user": "ann", "profile": "default"}]
    api.stop_server("ann")
    assert events(log)[-1] == {"event": "after_stop", "user": "ann"}


def test_before_start_hook_refuses_with_its_message(hooked):
    hub, api, log = hooked
    api.create_user("broke1")
    r = api.request("POST", "users/broke1/server")
    assert r.status_code == 402, r.text
    assert r.json()["message"] == "Your budget is spent (ask your project lead for more)"
    assert not api.user("broke1").json()["servers"]
    assert workspace_pids(hub.workdir / "data" / "users") == []
    # the failed start still owes its after_stop (a reservation to release)
    wait_for(lambda: events(log)[-1]["event"] == "after_stop", 30, what="after_stop")


def test_after_stop_runs_when_a_workspace_dies(hooked):
    hub, api, log = hooked
    api.create_user("cleo")
    api.start_server("cleo")
    (pid,) = workspace_pids(hub.workdir / "data" / "users" / "cleo")
    os.kill(pid, signal.SIGKILL)
    wait_for(
        lambda: events(log)[-1] == {"event": "after_stop", "user": "cleo"},
        60,
        what="after_stop for the dead workspace",
    )
    wait_for(lambda: not api.user("cleo").json()["servers"], 30, what="server gone")
    api.started.discard("cleo")
