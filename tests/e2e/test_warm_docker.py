"""Warm starts on the docker backend, on one real hub and a real Docker daemon
(tier 4): an empty pool starts cold; a waiting member has no token, no
person's environment and listens on no port; two people claim members in a
row and each gets only their own home, data mount, environment and token (403
across), with the profile's limits; stopping a workspace removes its container
and leaves no mount on the host; the hub stopping removes every waiting
member; a hub that was killed leaves members that the next run removes before
it fills again. The tests run in order on one hub.

Needs Docker, root and ``make images``; skipped without them.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import time
from pathlib import Path

import docker_env
import httpx
import psutil
import pytest
from harness import wait_for

from labspace.spawners import docker_warm

pytestmark = [pytest.mark.e2e]

SIZE = 1
PROFILE = {
    "slug": "small",
    "display_name": "Small",
    "cpu": {"limit": 0.5, "guarantee": 0.25},
    "memory": {"limit": "512M", "guarantee": "256M"},
}
MiB = 1024**2


@pytest.fixture(scope="module")
def warm(module_hub_factory, tmp_path_factory, need):
    why = docker_env.problem()
    need("Docker", why is None, why or "")
    need("root", os.geteuid() == 0, "the docker warm pool mounts homes on the host (root)")
    reference = tmp_path_factory.mktemp("reference")
    reference.chmod(0o755)
    (reference / "README.txt").write_text("shared reference data\n")

    def edit(settings):
        settings["profiles"] = [PROFILE]
        settings["backend"] = {
            "type": "docker",
            "image": docker_env.WORKSPACE_IMAGE,
            "docker": {"network": "host"},
            "mounts": [
                {
                    "name": "reference",
                    "type": "host",
                    "source": str(reference),
                    "target": "/home/jovyan/reference",
                }
            ],
            "warm_pool": {"enabled": True, "size": SIZE},
        }

    client = docker_env.client()
    users = [f"wd{secrets.token_hex(3)}" for _ in range(3)]
    state = {"client": client, "users": users, "times": {}}
    try:
        hub, api = module_hub_factory(edit)
        data = hub.workdir / "data"
        state.update(hub=hub, api=api, data=data, hub_id=docker_warm.hub_id(data))
        yield state
    finally:
        if "hub" in state:  # before removing homes: a running workspace holds its mount
            state["api"].stop_all()
            state["hub"].stop()
        if state.get("data"):  # after a failed test only: the hub unmounts it
            docker_warm.unmount_all(str(state["data"] / "warm"))
        for name in users:
            for c in client.containers.list(all=True, filters={"name": f"labspace-{name}"}):
                c.remove(force=True)
            for v in client.volumes.list(filters={"name": f"labspace-home-{name}"}):
                v.remove(force=True)
        hub_id = state.get("hub_id")
        if hub_id:
            for c in pool_containers(client, hub_id):
                c.remove(force=True)
        client.close()


def pool_containers(client, hub_id: str, waiting_only: bool = False) -> list:
    found = client.containers.list(
        all=True, filters={"label": ["org.labspace.role=pool", f"org.labspace.hub={hub_id}"]}
    )
    if waiting_only:
        found = [c for c in found if c.name.startswith(docker_warm.NAME_PREFIX)]
    return found


def ready_member(warm) -> object:
    """A waiting member the hub's pool holds (its folder says ``ready``)."""

    def ready():
        for c in pool_containers(warm["client"], warm["hub_id"], waiting_only=True):
            mid = c.labels["org.labspace.member"]
            if (warm["data"] / "warm" / mid / docker_warm.READY_FILE).exists():
                return c
        return None

    return wait_for(ready, 60, 0.1, what="a ready pool member")


def server_pid(container) -> int:
    """The host pid of the container's Python (tini's child)."""
    tini = container.attrs["State"]["Pid"]
    (child,) = psutil.Process(tini).children()
    return child.pid


def environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)


def start(warm, name: str) -> tuple[object, str, float]:
    """Start ``name``'s server; its container, a token of theirs, seconds to ready."""
    api = warm["api"]
    api.create_user(name)
    token = api.token(name)
    began = time.monotonic()
    try:
        api.start_server(name, timeout=60)
    except TimeoutError:
        container = warm["client"].containers.get(f"labspace-{name}")
        raise AssertionError(container.logs(tail=30).decode(errors="replace")) from None
    took = time.monotonic() - began
    container = warm["client"].containers.get(f"labspace-{name}")
    return container, token, took


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"token {token}"}


def sh(container, cmd: str) -> tuple[int, str]:
    code, out = container.exec_run(["sh", "-c", cmd])
    return code, out.decode(errors="replace")


def warm_mounts(data: Path) -> list[str]:
    root = str(data / "warm") + "/"
    return [p for p in docker_warm.mount_points() if p.startswith(root)]


def test_an_empty_pool_starts_cold(warm):
    """The first start races the pool's first member: it may not wait for it."""
    name = warm["users"][0]
    container, _, took = start(warm, name)
    warm["times"]["cold"] = took
    # cold or warm, the workspace is the same container; this one is cold
    # unless the member was ready in time (then the label says pool)
    assert container.name == f"labspace-{name}"
    if container.labels["org.labspace.role"] != "workspace":
        pytest.skip("the pool filled before the first start (no cold start to see)")
    warm["api"].stop_server(name)


def test_a_member_serves_nothing_before_its_claim(warm):
    member = ready_member(warm)
    env = member.attrs["Config"]["Env"]
    assert not [e for e in env if e.startswith(("JUPYTERHUB_", "JPY_"))], env
    pid = server_pid(member)
    assert not [k for k in environ(pid) if k.startswith(("JUPYTERHUB_", "JPY_"))]
    assert psutil.Process(pid).net_connections(kind="inet") == []
    assert member.attrs["HostConfig"]["Memory"] == 0  # no profile yet
    code, out = sh(member, "ls -A /home/jovyan")
    assert (code, out.strip()) == (0, "")  # an empty placeholder


def test_two_people_start_warm_with_only_their_own(warm):
    a, b = warm["users"][1], warm["users"][2]
    found = {}
    for name in (a, b):
        member = ready_member(warm)
        container, token, took = start(warm, name)
        warm["times"].setdefault("warm", []).append(took)
        assert container.labels["org.labspace.role"] == "pool", container.labels  # warm
        # a member made before this start became the workspace
        assert container.labels["org.labspace.hub"] == member.labels["org.labspace.hub"]
        found[name] = (container, token)
    (ca, ta), (cb, _) = found[a], found[b]
    assert sh(ca, "echo secret-of-a > /home/jovyan/a.txt")[0] == 0
    assert sh(cb, "cat /home/jovyan/a.txt")[0] != 0
    assert sh(ca, "cat /home/jovyan/a.txt") == (0, "secret-of-a\n")
    # the data mount, read-only
    assert sh(cb, "cat /home/jovyan/reference/README.txt") == (0, "shared reference data\n")
    code, out = sh(cb, "touch /home/jovyan/reference/x")
    assert code != 0 and "Read-only" in out, out
    # each server's environment is its own, with its own token
    ea, eb = environ(server_pid(ca)), environ(server_pid(cb))
    assert (ea["JUPYTERHUB_USER"], eb["JUPYTERHUB_USER"]) == (a, b)
    assert ea["JUPYTERHUB_API_TOKEN"] != eb["JUPYTERHUB_API_TOKEN"]
    assert docker_warm.warm_member.ROOM_VARIABLE not in ea
    hub = warm["hub"]
    assert httpx.get(f"{hub.url}user/{a}/api/status", headers=auth(ta)).status_code == 200
    assert httpx.get(f"{hub.url}user/{b}/api/status", headers=auth(ta)).status_code == 403
    # the profile's limits, as a cold start creates them
    ca.reload()
    host = ca.attrs["HostConfig"]
    assert (host["CpuQuota"], host["CpuPeriod"]) == (50_000, 100_000)
    assert host["CpuShares"] == 256
    assert (host["Memory"], host["MemorySwap"]) == (512 * MiB, 512 * MiB)
    assert host["MemoryReservation"] == 256 * MiB
    assert (host["CapDrop"], host["SecurityOpt"]) == (["ALL"], ["no-new-privileges"])
    warm["claimed"] = {a: ca.labels["org.labspace.member"], b: cb.labels["org.labspace.member"]}


def test_stop_removes_the_container_and_its_mounts(warm):
    a = warm["users"][1]
    mid = warm["claimed"][a]
    warm["api"].stop_server(a)
    assert not warm["client"].containers.list(all=True, filters={"name": f"labspace-{a}"})
    assert not [p for p in warm_mounts(warm["data"]) if f"/{mid}/" in p + "/"]
    assert not (warm["data"] / "warm" / mid).exists()
    # the home lives on in its volume
    volume = warm["client"].volumes.get(f"labspace-home-{a}")
    assert Path(volume.attrs["Mountpoint"], "a.txt").read_text() == "secret-of-a\n"


def test_a_killed_hub_leaves_members_the_next_run_removes(warm):
    hub, client = warm["hub"], warm["client"]
    old = {c.id for c in pool_containers(client, warm["hub_id"], waiting_only=True)}
    old |= {ready_member(warm).id}
    launcher = psutil.Process(hub.proc.pid)
    procs = [*launcher.children(recursive=True), launcher]  # hub and proxy: no cleanup
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.send_signal(signal.SIGKILL)
    hub.proc.wait(10)
    psutil.wait_procs(procs, timeout=10)
    assert {c.id for c in pool_containers(client, warm["hub_id"])} >= old  # still there
    hub.start()

    def old_gone():
        ids = {c.id for c in pool_containers(client, warm["hub_id"], waiting_only=True)}
        return not ids & old

    wait_for(old_gone, 30, 0.2, what="the killed hub's members removed")
    assert ready_member(warm).id not in old  # and the pool fills again


def test_the_hub_stopping_removes_every_member(warm):
    hub, client = warm["hub"], warm["client"]
    ready_member(warm)
    warm["api"].stop_all()
    hub.stop()
    assert pool_containers(client, warm["hub_id"], waiting_only=True) == []
    data = str(warm["data"])
    assert [p for p in docker_warm.mount_points() if p.startswith(data)] == []
