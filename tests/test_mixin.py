"""Pure parts of the spawner mixin: the start-queue allowance and hooks named
by import string."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import pytest
from offline import build_spawner, settings_from
from traitlets import TraitError
from traitlets.config import Config

from labspace.profiles import Mount, WorkspaceFile, WorkspaceSpec
from labspace.spawners.local import LabspaceLocalSpawner
from labspace.spawners.mixin import (
    START_QUEUE,
    StartQueue,
    default_concurrency,
    hub_start_queue,
    queue_allowance,
)


@pytest.mark.parametrize(
    ("ahead", "limit", "extra"),
    [
        pytest.param(0, 4, 0, id="none-ahead"),
        pytest.param(3, 4, 0, id="fits-this-round"),
        pytest.param(4, 4, 60, id="one-round"),
        pytest.param(19, 4, 240, id="burst-of-20"),
        pytest.param(5, 1, 300, id="one-slot"),
    ],
)
def test_queue_allowance(ahead, limit, extra):
    assert queue_allowance(ahead, limit, 60) == extra


def test_start_queue_counts_and_never_goes_negative():
    queue = StartQueue()  # one hub's
    before = queue.pending
    assert queue.join() == before
    assert queue.join() == before + 1
    queue.leave()
    queue.leave()
    assert queue.pending == before
    queue.pending = 0
    queue.leave()
    assert queue.pending == 0
    queue.pending = before


def spawner_of(hub_settings: dict, name: str):
    spawner = build_spawner(LabspaceLocalSpawner, name, "", settings_from("{}"), Config())
    spawner.user.settings = hub_settings  # jupyterhub.user.User.settings: the hub's
    return spawner


async def test_each_hub_has_its_own_start_queue_and_slots():
    """No process-wide state: every spawner of one hub counts in that hub's queue
    (kept in its tornado settings), and two hubs in one process do not share one."""
    one, other = {}, {}
    ann, bob, cid = spawner_of(one, "ann"), spawner_of(one, "bob"), spawner_of(other, "cid")
    assert ann.start_queue is bob.start_queue is one[START_QUEUE] is hub_start_queue(one)
    assert cid.start_queue is other[START_QUEUE] and cid.start_queue is not ann.start_queue
    ann._allow_for_queue()
    bob._allow_for_queue()
    cid._allow_for_queue()
    assert (one[START_QUEUE].pending, other[START_QUEUE].pending) == (2, 1)
    async with ann.start_queue.slot(1):
        assert bob.start_queue.slot(1).locked() and not cid.start_queue.slot(1).locked()
    ann._leave_queue()
    ann._leave_queue()  # once per start
    assert (one[START_QUEUE].pending, other[START_QUEUE].pending) == (1, 1)


def test_default_concurrency_is_two_per_core(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert default_concurrency() == 16
    monkeypatch.setattr("os.cpu_count", lambda: None)
    assert default_concurrency() == 2


def hook(spawner, spec):
    """A hook a test names by its import string."""


def test_hooks_by_import_string():
    config = Config()
    config.LabspaceSpawnerMixin.before_start = ["test_mixin.hook"]
    spawner = build_spawner(LabspaceLocalSpawner, "ann", "", settings_from("{}"), config)
    assert spawner.before_start == [hook]


def test_hook_that_cannot_be_imported_names_itself():
    config = Config()
    config.LabspaceSpawnerMixin.after_stop = ["no_such_module.close_usage"]
    with pytest.raises(TraitError, match="after_stop hook 'no_such_module.close_usage' cannot"):
        build_spawner(LabspaceLocalSpawner, "ann", "", settings_from("{}"), config)


def test_start_failed_only_when_a_start_ended_without_the_workspace_up():
    from labspace.spawners.mixin import StartProgress

    spawner = build_spawner(LabspaceLocalSpawner, "ann", "", settings_from("{}"), Config())
    assert not spawner.start_failed  # no start in this hub process
    progress = spawner._start_progress()
    progress.started = True
    assert not spawner.start_failed  # still starting
    progress.finish()
    assert spawner.start_failed
    spawner._progress = up = StartProgress()
    up.started, up.up = True, True
    up.finish()
    assert not spawner.start_failed


# -- a before_start hook that replaces the spec (data grants) ---------------------------


class Grants:
    """A before_start hook as the data service's: adds this start's mounts and
    files to the spec it is given (a new spec each time)."""

    def __init__(self):
        self.mounts: tuple[Mount, ...] = ()
        self.files: tuple[WorkspaceFile, ...] = ()
        self.seen: list[WorkspaceSpec] = []

    def __call__(self, spawner, spec):
        self.seen.append(spec)
        spawner.extra_env["GRANTED"] = ",".join(m.name for m in self.mounts)
        spawner.workspace_spec = dataclasses.replace(
            spec, mounts=spec.mounts + self.mounts, files=spec.files + self.files
        )


def local_spawner(tmp_path, hooks, name="ann", server=""):
    config = Config()
    config.LabspaceSpawnerMixin.before_start = hooks
    config.LabspaceSpawnerMixin.home_root = str(tmp_path / "users")
    values = settings_from("backend: {env: {SITE: test}}")
    spawner = build_spawner(LabspaceLocalSpawner, name, server, values, config)
    spawner.user.settings = {}
    # a real process stands in for JupyterLab: the start is real, nothing answers HTTP
    spawner.cmd = [sys.executable, "-c", "import time; time.sleep(60)"]
    spawner.http_timeout = 1
    spawner.api_token = "not-a-real-token"  # noqa: S105
    return spawner


async def test_a_hook_replaced_spec_is_applied_then_forgotten(tmp_path):
    """The mixin applies the spec a before_start hook left (links, files, env),
    and the next start begins again from the profile's spec: a grant gone since
    leaves no link, no file."""
    data = tmp_path / "srv" / "genomes"
    (data / "hg38").mkdir(parents=True)
    grants = Grants()
    grants.mounts = (
        Mount("data-genomes", "host", str(data), "~/data/genomes"),
        Mount("data-hg", "host", str(data), "~/data/hg", sub_path="hg38"),
    )
    grants.files = (WorkspaceFile("data-credentials.ini", "[labspace-s]\n"),)
    spawner = local_spawner(tmp_path, [grants])
    home = Path(spawner.home_dir)
    files_dir = Path(spawner.files_dir)
    assert files_dir == tmp_path / "runtime" / "ann"  # outside the home
    seen_files = {}

    def look(spawner, spec):  # a later hook sees the replaced spec, the files not yet
        seen_files["before"] = files_dir.exists()

    spawner.before_start = [grants, look]
    env = await start_and_stop_keeping(spawner, seen_files)
    assert env["GRANTED"] == "data-genomes,data-hg"
    assert env["SITE"] == "test"
    assert seen_files["before"] is False
    assert seen_files["links"] == {"genomes": str(data), "hg": str(data / "hg38")}
    assert seen_files["mode"] == (0o700, 0o600)
    assert seen_files["content"] == "[labspace-s]\n"
    assert not files_dir.exists()  # removed when the workspace ended
    # the next start: no grant any more
    grants.mounts, grants.files = (), ()
    env = await start_and_stop_keeping(spawner, seen_files)
    assert seen_files["links"] == {}
    assert not (home / "data" / "genomes").is_symlink()
    assert env["GRANTED"] == ""
    # every start's hook got the profile's spec, not the last start's
    assert all(spec.mounts == () for spec in grants.seen)
    assert grants.seen[0] == grants.seen[1]


async def start_and_stop_keeping(spawner, seen):
    """A start and a stop; what the home and files folder held while it ran."""
    await spawner._run_apply_user_options({})
    await spawner.start()
    try:
        folder = Path(spawner.home_dir, "data")
        seen["links"] = (
            {p.name: os.readlink(p) for p in folder.iterdir() if p.is_symlink()}
            if folder.exists()
            else {}
        )
        files_dir = Path(spawner.files_dir)
        if files_dir.exists():
            (f,) = files_dir.iterdir()
            seen["mode"] = (files_dir.stat().st_mode & 0o777, f.stat().st_mode & 0o777)
            seen["content"] = f.read_text()
        return dict(spawner.get_env())
    finally:
        await spawner.stop(now=True)
        await spawner.run_post_stop_hook()


def test_links_made_before_a_hub_restart_are_still_removed(tmp_path):
    """The links a start made are kept in the spawner's state (the hub's database)."""
    data = tmp_path / "srv"
    data.mkdir()
    one = local_spawner(tmp_path, [])
    one.workspace_spec = WorkspaceSpec(
        "default", "Default", mounts=(Mount("data-x", "host", str(data), "~/data/x"),)
    )
    one.prepare_workspace()
    link = Path(one.home_dir, "data", "x")
    assert link.is_symlink()
    state = one.get_state()
    assert state["labspace_links"] == ["data/x"]
    again = local_spawner(tmp_path, [])  # after a restart: a new spawner, the saved state
    again.load_state(state)
    again.workspace_spec = WorkspaceSpec("default", "Default")
    again.prepare_workspace()
    assert not link.is_symlink()
    assert "labspace_links" not in again.get_state()


def test_a_link_is_never_made_outside_the_home(tmp_path):
    """A user's own link ``~/data -> elsewhere`` does not lead the hub's links out."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    spawner = local_spawner(tmp_path, [])
    Path(spawner.home_dir).mkdir(parents=True)
    Path(spawner.home_dir, "data").symlink_to(elsewhere)
    spawner.workspace_spec = WorkspaceSpec(
        "default", "Default", mounts=(Mount("data-x", "host", str(tmp_path), "~/data/x"),)
    )
    spawner.prepare_workspace()
    assert list(elsewhere.iterdir()) == []


def test_named_servers_get_their_own_files_folder(tmp_path):
    a = local_spawner(tmp_path, [], server="")
    b = local_spawner(tmp_path, [], server="dash")
    assert a.files_dir != b.files_dir
    assert Path(b.files_dir).parent == tmp_path / "runtime"
