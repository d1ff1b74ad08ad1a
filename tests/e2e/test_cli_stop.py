"""``labspace up`` stops at once however it was started. A service wrapper or a
script (``cmd &``) starts it with SIGINT ignored, and an ignored signal is
inherited: the hub and the services it starts would ignore JupyterHub's SIGINT
and JupyterHub would wait for them before it escalates. ``labspace up`` gives
the hub SIGINT at its default, so a SIGTERM or a SIGINT to ``labspace up``
ends the hub, both services and the proxy within 3 s."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from harness import HubProcess, free_port, wait_for

pytestmark = [pytest.mark.e2e]
STOP_BOUND_S = 3.0
SIGINT_BIT = 1 << (signal.SIGINT - 1)


def ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class WrappedHub(HubProcess):
    """``labspace up`` as a service wrapper runs it: SIGINT ignored."""

    def launch(self, cmd, cwd, env, timeout) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                cmd,
                cwd=cwd,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=ignore_sigint,  # noqa: PLW1509 - as a wrapper does
            )
        try:
            wait_for(self._ready, timeout, what=self.name)
        except (TimeoutError, RuntimeError):
            self.stop()
            raise


def descendants(pid: int) -> dict[int, str]:
    """Every process below ``pid``: PID -> its command line."""
    found, todo = {}, [pid]
    while todo:
        parent = todo.pop()
        with contextlib.suppress(OSError):
            for child in Path(f"/proc/{parent}/task/{parent}/children").read_text().split():
                with contextlib.suppress(OSError):
                    argv = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
                    found[int(child)] = argv.decode(errors="replace")
                todo.append(int(child))
    return found


def ignores_sigint(pid: int) -> bool:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            return bool(int(line.split()[1], 16) & SIGINT_BIT)
    raise AssertionError(f"no SigIgn line for {pid}")


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_up_from_a_wrapper_stops_within_3s(tmp_path, hub_settings, signum):
    hub_settings["accounting"] = {"enabled": True, "port": free_port()}
    hub_settings["catalog"] = {"enabled": True, "port": free_port()}
    hub = WrappedHub(tmp_path, hub_settings).start()
    below = {}
    try:
        below = descendants(hub.proc.pid)
        for part in ("services.accounting", "services.catalog", "configurable-http-proxy"):
            assert [p for p, cmd in below.items() if part in cmd], (part, below)
        assert [cmd for p, cmd in below.items() if ignores_sigint(p)] == []  # none inherited it
        start = time.monotonic()
        hub.proc.send_signal(signum)
        try:
            hub.proc.wait(30)
        except subprocess.TimeoutExpired:
            pytest.fail(f"labspace up still runs 30 s after {signum.name}:\n{hub.log()[-3000:]}")
        elapsed = time.monotonic() - start
        assert hub.proc.returncode == 0, hub.log()[-3000:]
        assert elapsed <= STOP_BOUND_S, f"{elapsed:.1f} s:\n{hub.log()[-3000:]}"
        deadline = time.monotonic() + 2  # the proxy's exit is not waited for by JupyterHub
        while [p for p in below if alive(p)] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [cmd for p, cmd in below.items() if alive(p)] == []
    finally:
        hub.stop()
        for pid, cmd in below.items():  # anything left, by PID, if still the same process
            with contextlib.suppress(OSError):
                if alive(pid) and Path(f"/proc/{pid}/cmdline").read_bytes().startswith(
                    cmd.split(" ")[0].encode()
                ):
                    os.kill(pid, signal.SIGKILL)
