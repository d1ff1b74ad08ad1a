"""The local backend's fork server (``labspace.warm.forkserver``) and the member
it forks (``labspace.warm.member``), as real processes.

A member that is claimed must be the process a cold start makes: the same
environment (and nothing else), working folder, argv, ``sys.path``, umask,
session and signal handlers. The probe is a real ``jupyter_server_config.py``
(the server reads it at startup, in its own process, cold or warm) that writes
what the server's process sees and ends it; the same claim is started cold
with ``Popen`` as ``LocalProcessSpawner`` does, and both reports must be equal.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from labspace.spawners.local import FORKSERVER_ENV_KEEP, LocalWarmProvider, forkserver_env
from labspace.warm import forkserver
from labspace.warm.forkserver import ForkServerError, request
from labspace.warm.member import ROOM_ARGUMENT
from labspace.warm.pool import WarmPool

PROBE = """
import json, os, signal, sys, time
out = {
    "forked": "labspace.warm.member" in sys.modules,  # preloaded, not exec'd
    "tz": time.tzname,
    "env": dict(os.environ),
    "cwd": os.getcwd(),
    "argv": sys.argv,
    "path": sys.path,
    "umask": os.umask(0),
    "session_leader": os.getsid(0) == os.getpid(),
    "fds": sorted(int(fd) for fd in os.listdir("/proc/self/fd")),
    "signals": {
        name: str(signal.getsignal(getattr(signal, name)))
        for name in ("SIGINT", "SIGTERM", "SIGPIPE", "SIGCHLD", "SIGHUP", "SIGXFSZ")
    },
    "blocked": sorted(signal.pthread_sigmask(signal.SIG_BLOCK, [])),
    # what ps and /proc show
    "cmdline": open("/proc/self/cmdline", "rb").read().rstrip(b"\\0").split(b"\\0"),
    "environ": sorted(
        item for item in open("/proc/self/environ", "rb").read().split(b"\\0") if item
    ),
}
out["cmdline"] = [a.decode() for a in out["cmdline"]]
out["environ"] = [e.decode() for e in out["environ"]]
with open(os.environ["PROBE_OUT"], "w") as f:
    json.dump(out, f)
os._exit(0)
"""


def kept() -> dict[str, str]:
    """What the hub passes on to a workspace and to the fork server of its
    own environment (``LocalProcessSpawner.env_keep``)."""
    return {k: os.environ[k] for k in FORKSERVER_ENV_KEEP if k in os.environ}


class Server:
    """A fork server in its own session, its lifeline held by the test."""

    def __init__(self, folder: Path):
        folder.mkdir(mode=0o700)
        self.socket = str(folder / forkserver.SOCKET_NAME)
        read, self.lifeline = os.pipe()
        self.proc = subprocess.Popen(  # as LocalWarmProvider starts it
            [sys.executable, "-m", "labspace.warm.forkserver", ROOM_ARGUMENT]
            + ["--socket", self.socket, "--lifeline", str(read)],
            pass_fds=(read,),
            start_new_session=True,
            cwd=folder,
            env={**forkserver_env(), "POOL_ONLY": "the pool's"},
        )
        os.close(read)
        deadline = time.monotonic() + 60
        while not os.path.exists(self.socket):
            assert self.proc.poll() is None, "the fork server exited"
            assert time.monotonic() < deadline, "the fork server did not start"
            time.sleep(0.05)

    def ask(self, **message) -> dict:
        return asyncio.run(request(self.socket, message))

    def hang_up(self) -> int:
        if self.lifeline is not None:
            os.close(self.lifeline)
            self.lifeline = None
        return self.proc.wait(15)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.hang_up()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("fs") / "warm")
    yield server
    server.stop()


@pytest.fixture
def workspace(tmp_path):
    """A home, a config folder with the probe, and the claim a spawner would send."""
    home, config = tmp_path / "home", tmp_path / "config"
    home.mkdir()
    config.mkdir()
    (config / "jupyter_server_config.py").write_text(PROBE)
    env = {
        **kept(),
        "HOME": str(home),
        "USER": "ada",
        "JUPYTER_CONFIG_DIR": str(config),
        "JUPYTERHUB_USER": "ada",
        "JUPYTERHUB_API_TOKEN": "token-of-ada",
        "JUPYTERHUB_API_URL": "http://127.0.0.1:9/hub/api",
        "JUPYTERHUB_SERVICE_PREFIX": "/user/ada/",
        "JUPYTERHUB_CLIENT_ID": "jupyterhub-user-ada",
        "TZ": "Pacific/Auckland",
    }
    argv = [sys.executable, "-m", "labspace.singleuser", "--port=9", "--ServerApp.allow_root=True"]
    return {"argv": argv, "env": env, "cwd": str(home), "umask": 0o027}, tmp_path


def report(path: Path, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while not path.exists() or not path.stat().st_size:
        assert time.monotonic() < deadline, "the workspace never read its config"
        time.sleep(0.05)
    time.sleep(0.1)
    return json.loads(path.read_text())


def gone(pid: int, timeout: float = 10) -> bool:
    """``pid`` has ended and been reaped (a zombie counts as there)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not psutil.pid_exists(pid):
            return True
        time.sleep(0.05)
    return False


def test_a_claimed_member_is_the_process_a_cold_start_makes(server, workspace):
    claim, tmp = workspace
    member = server.ask(op="fork", id="m-same")
    claim["env"]["PROBE_OUT"] = str(tmp / "warm.json")
    assert server.ask(op="claim", id="m-same", claim=claim)["pid"] == member["pid"]
    warm = report(tmp / "warm.json")

    cold_env = {**claim["env"], "PROBE_OUT": str(tmp / "cold.json")}
    old = os.umask(claim["umask"])
    try:  # as LocalProcessSpawner.start runs it (its preexec_fn: chdir home)
        cold_proc = subprocess.Popen(
            claim["argv"],
            env=cold_env,
            preexec_fn=lambda: os.chdir(claim["cwd"]),
            start_new_session=True,
        )
    finally:
        os.umask(old)
    cold = report(tmp / "cold.json")
    cold_proc.wait(10)

    assert warm.pop("forked") and not cold.pop("forked")
    cold["env"]["PROBE_OUT"] = warm["env"]["PROBE_OUT"]
    cold["environ"] = sorted(e.replace("cold.json", "warm.json") for e in cold["environ"])
    assert warm == cold
    assert "POOL_ONLY" not in warm["env"]
    assert warm["cwd"] == claim["cwd"] and warm["umask"] == 0o027
    assert warm["argv"][1:] == claim["argv"][3:]
    assert warm["session_leader"]  # and no descriptor of the fork server (== cold)
    assert gone(member["pid"]), "the ended workspace was not reaped"


def test_a_member_listens_on_no_port_before_its_claim(server):
    pid = server.ask(op="fork", id="m-quiet")["pid"]
    try:
        proc = psutil.Process(pid)
        assert proc.net_connections(kind="inet") == []  # no TCP/UDP socket at all
        unix = proc.net_connections(kind="unix")
        assert len(unix) == 1  # its end of the socketpair its claim comes on
        assert proc.cwd() == os.path.dirname(server.socket)  # no home, no user
        assert proc.num_threads() == 1
        assert proc.environ() == {**forkserver_env(), "POOL_ONLY": "the pool's"}
    finally:
        server.ask(op="destroy", id="m-quiet")


def test_destroy_ends_and_reaps_a_member_and_is_idempotent(server):
    pid = server.ask(op="fork", id="m-gone")["pid"]
    assert any(m["id"] == "m-gone" for m in server.ask(op="list")["members"])
    server.ask(op="destroy", id="m-gone")
    assert gone(pid), "a destroyed member is still there (or a zombie)"
    assert server.ask(op="destroy", id="m-gone") == {"ok": True}
    assert all(m["id"] != "m-gone" for m in server.ask(op="list")["members"])


@pytest.mark.parametrize(
    "claim, message",
    [
        ({"argv": [], "env": {}, "cwd": "/"}, "claim.argv: expected a non-empty list"),
        ({"argv": ["x"], "env": {"A": 1}, "cwd": "/"}, "claim.env: expected an object"),
        ({"argv": ["x"], "env": {}, "cwd": "home"}, "claim.cwd: expected an absolute path"),
        ({"argv": ["x"], "env": {}, "cwd": "/nope/x"}, "claim.cwd: /nope/x is not a folder"),
        ({"argv": ["x"], "env": {}, "cwd": "/", "uid": 0}, "unknown key(s) 'uid'"),
        ("argv", "claim: expected an object"),
    ],
    ids=["argv", "env", "relative-cwd", "missing-cwd", "unknown-key", "not-a-dict"],
)
def test_a_bad_claim_is_refused_and_the_member_keeps_waiting(server, claim, message):
    pid = server.ask(op="fork", id="m-bad")["pid"]
    try:
        with pytest.raises(ForkServerError) as refused:
            server.ask(op="claim", id="m-bad", claim=claim)
        assert message in str(refused.value)
        assert "Traceback" not in str(refused.value)
        member = next(m for m in server.ask(op="list")["members"] if m["pid"] == pid)
        assert member["state"] == "ready" and psutil.Process(pid).status() != "zombie"
    finally:
        server.ask(op="destroy", id="m-bad")


def test_unknown_requests_are_refused(server):
    with pytest.raises(ForkServerError, match="no member nobody waiting"):
        server.ask(op="claim", id="nobody", claim={})
    with pytest.raises(ForkServerError, match="unknown op 'exec'"):
        server.ask(op="exec", id="x")
    with pytest.raises(ForkServerError, match="'id' must be a non-empty string"):
        server.ask(op="fork")


def test_the_hub_going_ends_waiting_members_not_claimed_ones(tmp_path):
    server = Server(tmp_path / "warm")
    try:
        waiting = server.ask(op="fork", id="m-wait")["pid"]
        claimed = server.ask(op="fork", id="m-work")["pid"]
        # a command other than the workspace server: the member execs it
        work = [sys.executable, "-c", "import time; time.sleep(60)"]
        claim = {"argv": work, "env": {"PATH": os.environ["PATH"]}, "cwd": str(tmp_path)}
        server.ask(op="claim", id="m-work", claim=claim)
        assert server.hang_up() == 0
        assert gone(waiting), "an unclaimed member outlived the fork server"
        assert psutil.Process(claimed).cmdline() == work  # the user's workspace lives on
        assert not os.path.exists(server.socket)
        assert not os.path.exists(os.path.join(tmp_path / "warm", forkserver.MEMBERS_FILE))
    finally:
        server.stop()
        for pid in (waiting, claimed):
            if psutil.pid_exists(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.slow  # three fork servers preload: ~12 s
def test_the_provider_replaces_an_earlier_runs_fork_server_and_a_dead_one(tmp_path):
    """``LocalWarmProvider`` under a real ``WarmPool``: it stops a fork server an
    earlier run left in the same folder (whose members end with it), fills the
    pool, starts a new fork server when its own died, and leaves nothing once
    drained."""
    earlier = Server(tmp_path / "warm")
    left = earlier.ask(op="fork", id="m-left")["pid"]
    lifeline, earlier.lifeline = earlier.lifeline, None  # its hub end stays open
    provider = LocalWarmProvider(str(tmp_path / "warm"), logging.getLogger("test"))
    try:
        asyncio.run(_drive(provider, earlier, left))
    finally:
        os.close(lifeline)
        earlier.stop()
    assert provider.proc.poll() is not None
    assert not os.path.exists(provider.socket_path)


async def _drive(provider, earlier, left):
    pool = WarmPool(provider, {"local": 1})
    await pool.start()
    try:
        assert earlier.proc.wait(15) == 0 and gone(left)
        deadline = time.monotonic() + 30
        while not pool.ready["local"]:
            assert time.monotonic() < deadline, "the pool did not fill"
            await asyncio.sleep(0.05)
        member = pool.ready["local"][0]
        assert await provider.alive(member)
        first = provider.proc
        first.kill()  # the fork server dies: its waiting member ends with it
        first.wait(10)
        assert gone(member.handle["pid"]) and not await provider.alive(member)
        fresh = await provider.create("local")  # a new fork server
        assert provider.proc.pid != first.pid and await provider.alive(fresh)
        await provider.destroy(fresh)
        assert gone(fresh.handle["pid"])
    finally:
        await pool.drain()


def test_a_command_found_on_the_claims_path_is_still_served_warm(server, workspace):
    """A cold start runs ``python`` found on PATH (a docker image's CMD); the
    member takes it as its own interpreter and shows it as given."""
    claim, tmp = workspace
    folder = os.path.dirname(sys.executable)
    claim["argv"][0] = os.path.basename(sys.executable)
    claim["env"]["PATH"] = f"{folder}:{claim['env'].get('PATH', os.defpath)}"
    claim["env"]["PROBE_OUT"] = str(tmp / "onpath.json")
    server.ask(op="fork", id="m-path")
    server.ask(op="claim", id="m-path", claim=claim)
    seen = report(tmp / "onpath.json")
    assert seen["forked"]  # preloaded, not exec'd
    assert seen["cmdline"] == claim["argv"]


def test_a_process_group_leader_keeps_its_session(tmp_path):
    """In a container, python under tini leads its process group: setsid()
    is refused (EPERM) and a cold start keeps the session; so does become()."""
    code = (
        "import os; from labspace.warm import member; "
        "sid = os.getsid(0); member._reset_process('/', None); "
        "print(os.getsid(0) == sid, os.getpgid(0) == os.getpid())"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], process_group=0, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True"]
