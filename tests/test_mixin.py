"""Pure parts of the spawner mixin: the start-queue allowance and hooks named
by import string."""

from __future__ import annotations

import pytest
from offline import build_spawner, settings_from
from traitlets import TraitError
from traitlets.config import Config

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
