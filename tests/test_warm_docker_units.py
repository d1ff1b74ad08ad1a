"""The docker warm pool's pure parts (spawners.docker_warm, labspace.warm.container):
names and labels of members, which specs can start warm, the mount plan, the
limits a claim applies, and the member listener's protocol over a real unix
socket (no Docker needed)."""

from __future__ import annotations

import json
import os
import socket
import threading

import pytest

from labspace.profiles import Mount, WorkspaceSpec
from labspace.spawners import docker_warm as dw
from labspace.warm import container

MiB = 1024**2


def spec(**kw) -> WorkspaceSpec:
    base = {"profile": "small", "display_name": "Small", "image": "img:1"}
    return WorkspaceSpec(**{**base, **kw})


def mount(target: str, type_: str = "host", **kw) -> Mount:
    return Mount(name="m", type=type_, source=kw.pop("source", "/srv/m"), target=target, **kw)


def test_names_and_labels_tie_a_member_to_its_pool_and_hub(tmp_path):
    hub = dw.hub_id(tmp_path)
    assert hub == dw.hub_id(str(tmp_path) + "/")  # one folder, one id
    assert hub != dw.hub_id(tmp_path / "other") and len(hub) == 12
    assert dw.member_name("wabc") == "labspace-pool-wabc"
    assert dw.member_labels("img:1", hub, "wabc") == {
        "org.labspace.role": "pool",
        "org.labspace.pool": "img:1",
        "org.labspace.hub": hub,
        "org.labspace.member": "wabc",
    }
    cmd = dw.member_command()
    assert cmd[:3] == ["python", "-m", "labspace.warm.container"]
    assert cmd[-2:] == ["--socket", "/run/labspace-pool/claim.sock"]


@pytest.mark.parametrize(
    ("kw", "why"),
    [
        ({}, None),
        ({"mounts": (mount("/home/jovyan/data"),)}, None),
        ({"mounts": (mount("/home/jovyan/data", "volume", source="v"),)}, None),
        ({"gpus": 1}, "GPUs"),
        ({"mounts": (mount("/ref"),)}, "outside"),
        ({"mounts": (mount("/home/jovyan"),)}, "outside"),
        ({"mounts": (mount("/home/jovyan/../etc"),)}, "outside"),
        ({"mounts": (mount("/home/jovyanx/d"),)}, "outside"),
        ({"mounts": (mount("/home/jovyan/d", "volume", source="v", sub_path="a"),)}, "volume"),
        ({"mounts": (mount("/home/jovyan/d", "s3"),)}, "s3"),
    ],
    ids=[
        "plain",
        "host-in-home",
        "volume-in-home",
        "gpu",
        "outside",
        "home-itself",
        "dotdot",
        "prefix-only",
        "volume-subpath",
        "s3",
    ],
)
def test_what_starts_cold(kw, why):
    got = dw.warm_refusal(spec(**kw))
    assert (got is None) if why is None else (why in got)


def test_warm_keys_are_the_images_of_pooled_profiles_that_can_start_warm():
    backend = {"image": "base:1"}
    profiles = [
        {"slug": "a"},
        {"slug": "b", "image": "big:2"},
        {"slug": "gpu", "image": "gpu:3", "gpus": 1},
        {"slug": "c"},
    ]
    assert dw.warm_keys(profiles, backend, [], "default") == ["base:1", "big:2"]
    assert dw.warm_keys(profiles, backend, ["b"], "default") == ["big:2"]
    assert dw.warm_keys([], {}, [], "default:latest") == ["default:latest"]


def test_mount_plan_is_relative_to_the_home_and_keeps_read_only():
    s = spec(
        mounts=(
            mount("/home/jovyan/ref", source="/srv/ref", sub_path="x/y"),
            mount("/home/jovyan/scratch/", "volume", source="vol", read_only=False),
        )
    )
    assert dw.mount_plan(s, {"vol": "/var/lib/docker/volumes/vol/_data"}) == [
        ("/srv/ref/x/y", "ref", True),
        ("/var/lib/docker/volumes/vol/_data", "scratch", False),
    ]
    with pytest.raises(ValueError, match="outside"):
        dw.mount_plan(spec(mounts=(mount("/data"),)), {})


def test_limits_are_those_a_cold_start_creates_with():
    s = spec(cpu_limit=0.5, cpu_guarantee=0.25, mem_limit=512 * MiB, mem_guarantee=256 * MiB)
    assert dw.limits_update(s) == {
        "cpu_period": 100_000,
        "cpu_quota": 50_000,
        "cpu_shares": 256,
        "mem_limit": 512 * MiB,
        "memswap_limit": 512 * MiB,
        "mem_reservation": 256 * MiB,
    }
    assert dw.limits_update(spec()) == {}


def test_env_list_splits_on_the_first_equals():
    assert dw.env_list(["A=1", "B=x=y", "junk"]) == {"A": "1", "B": "x=y"}
    assert dw.env_list(None) == {}


def test_release_folder_never_deletes_a_home_with_files(tmp_path):
    folder = tmp_path / "w1"
    (folder / "home").mkdir(parents=True)
    (folder / "sock").mkdir()
    (folder / "home" / "notes.txt").write_text("mine")  # as if still mounted
    assert dw.release_folder(str(folder)) is False
    assert (folder / "home" / "notes.txt").read_text() == "mine"
    (folder / "home" / "notes.txt").unlink()
    (folder / dw.READY_FILE).touch()
    assert dw.release_folder(str(folder)) is True
    assert not folder.exists()


def ask(path: str, message) -> dict:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(path)
        s.sendall((message if isinstance(message, bytes) else json.dumps(message).encode()) + b"\n")
        return json.loads(s.makefile().readline())


def test_the_listener_answers_pings_and_returns_one_good_claim(tmp_path):
    path = str(tmp_path / "claim.sock")
    got = {}
    thread = threading.Thread(target=lambda: got.setdefault("claim", container.serve(path, ["x"])))
    thread.start()
    try:
        for _ in range(100):
            if (tmp_path / "claim.sock").exists():
                break
            threading.Event().wait(0.02)
        assert oct((tmp_path / "claim.sock").stat().st_mode & 0o777) == "0o700"
        assert ask(path, {"op": "ping"})["missing"] == ["x"]
        assert ask(path, b"not json")["error"].startswith("bad message: ")
        assert ask(path, {"op": "exec"})["error"] == "op: expected ping or claim"
        claim = {"argv": ["python", "-m", "labspace.singleuser"], "env": {}, "cwd": str(tmp_path)}
        assert ask(path, {"op": "claim", "claim": claim})["ok"] is True
    finally:
        thread.join(10)
    assert got["claim"] == claim
    assert not (tmp_path / "claim.sock").exists()  # nobody else can claim it


def test_listener_args_ignore_the_room_argument():
    args = container.parse_args(["--room=    ", "--socket", "/run/x.sock"])
    assert args.socket == "/run/x.sock"


def test_a_mount_point_in_a_home_never_follows_a_link(tmp_path):
    """A person's home may hold a link named like a mount target: the hub
    (root) must not mount through it onto the host."""
    home, outside = tmp_path / "home", tmp_path / "outside"
    home.mkdir()
    outside.mkdir()
    (home / "data").symlink_to(outside)
    with pytest.raises(OSError):
        dw._open_beneath(str(home), "data")
    with pytest.raises(OSError):
        dw._open_beneath(str(home), "data/deeper")
    assert list(outside.iterdir()) == []
    fd = dw._open_beneath(str(home), "new/dir")  # missing parts are made
    try:
        assert (home / "new" / "dir").is_dir()
    finally:
        os.close(fd)
