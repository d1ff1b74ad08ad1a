"""The proxy's pid file under data_dir: JupyterHub stops whatever process a
leftover one names, so a number that now belongs to another process (after a
reboot, or in a restarted container whose PIDs count from 1 again) is forgotten
before the hub starts (``State.forget_stale_proxy_pid``). Real processes."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from harness import wait_for

from labspace.settings import load
from labspace.state import PROXY_PROGRAM, State


@pytest.fixture
def state(tmp_path) -> State:
    path = tmp_path / "labspace.yaml"
    path.write_text(f"data_dir: {tmp_path / 'data'}\n")
    state = State(load(path, environ={}))
    state.prepare()
    return state


@pytest.fixture
def proxy_like():
    """A running process whose command line names the proxy (argv[0])."""
    proc = subprocess.Popen(["bash", "-c", f"exec -a {PROXY_PROGRAM} sleep 60"])
    cmdline = Path(f"/proc/{proc.pid}/cmdline")
    # until bash has run exec, the command line is this test's or bash's
    wait_for(lambda: cmdline.read_bytes().startswith(PROXY_PROGRAM.encode()), 10, 0.02)
    yield proc
    proc.kill()
    proc.wait(timeout=10)


def test_a_pid_of_another_process_is_forgotten(state):
    state.proxy_pid_file.write_text(f"{os.getpid()}\n")  # this test: not a proxy
    state.forget_stale_proxy_pid()
    assert not state.proxy_pid_file.exists()


def test_a_running_proxy_is_kept_for_jupyterhub_to_stop(state, proxy_like):
    state.proxy_pid_file.write_text(f"{proxy_like.pid}\n")
    state.forget_stale_proxy_pid()
    assert state.proxy_pid_file.read_text().strip() == str(proxy_like.pid)


@pytest.mark.parametrize("content", ["", "not a pid", "4194305"])  # above pid_max
def test_garbage_or_a_dead_pid_is_forgotten(state, content):
    state.proxy_pid_file.write_text(content)
    state.forget_stale_proxy_pid()
    assert not state.proxy_pid_file.exists()


def test_no_pid_file_is_fine(state):
    state.forget_stale_proxy_pid()
    assert not state.proxy_pid_file.exists()
