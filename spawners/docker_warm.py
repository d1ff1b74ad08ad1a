"""Warm starts on the docker backend: running containers waiting for a person.

A pool member is a container ``labspace-pool-<member>`` from a profile's image
(the pool key), labelled with the pool and a hash of the hub's data folder (two
hubs on one daemon never touch each other's members). It runs
``python -m labspace.warm.container`` as the workspace user, with the usual
``cap_drop ALL`` / ``no-new-privileges`` and the host's network, has imported
the workspace server and waits on a unix socket for one claim. It has no
token, no user environment, listens on no port and its home is an empty
placeholder.

Docker cannot add a mount to a running container, so the home arrives by
mount propagation: the host folder ``<data_dir>/warm`` is made a shared mount
once, and each member gets ``<data_dir>/warm/<member>/home`` at
``/home/jovyan`` with ``rslave`` propagation. At the claim the hub (root on
the host) bind-mounts the person's home (the volume's mount point or their
host folder) onto that folder, then each data mount beneath it, read-only ones
through a read-only staging mount (a remount is not propagated; a new mount
carries its flags). The container sees them at once. Only targets inside the
home can be given this way: a spec with another mount, GPUs or a volume
``sub_path`` starts cold (``warm_refusal``).

The spawner part (``LabspaceDockerSpawner.start_warm``) applies the profile's
limits with ``docker update``, puts the spec's files into ``/run/labspace``,
renames the container to the cold start's name and sends the claim (command,
environment with the token, folder); afterwards the workspace is the same
container a cold start makes, and its stop unmounts and removes the member's
folder (``release_folder``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import hashlib
import json
import os
import posixpath
import time
from pathlib import Path
from typing import Any

import docker
import docker.errors
from docker.utils import kwargs_from_env

from labspace.profiles import WorkspaceSpec, all_profiles, spec_for
from labspace.warm import member as warm_member
from labspace.warm.pool import Member, Provider

HOME = "/home/jovyan"
GID = 100
LABEL = "org.labspace"
POOL_ROLE = "pool"
NAME_PREFIX = "labspace-pool-"
SOCKET_DIR = "/run/labspace-pool"
SOCKET_NAME = "claim.sock"
READY_FILE = "ready"  # in the member's folder once the pool has it
WARM_FOLDER = "warm"
READY_TIMEOUT_S = 120.0
CLAIM_TIMEOUT_S = 30.0
PING_TIMEOUT_S = 5.0

# mount(2)
MS_RDONLY, MS_REMOUNT, MS_BIND, MS_REC, MS_SHARED = 1, 32, 4096, 16384, 1 << 20
MNT_DETACH = 2


# -- pure ---------------------------------------------------------------------


def hub_id(data_dir: str | os.PathLike) -> str:
    """A short, stable name for one hub's data folder (label values)."""
    return hashlib.sha256(os.path.realpath(data_dir).encode()).hexdigest()[:12]


def member_name(member_id: str) -> str:
    return f"{NAME_PREFIX}{member_id}"


def member_labels(key: str, hub: str, member_id: str) -> dict[str, str]:
    return {
        f"{LABEL}.role": POOL_ROLE,
        f"{LABEL}.pool": key,
        f"{LABEL}.hub": hub,
        f"{LABEL}.member": member_id,
    }


def member_command() -> list[str]:
    """The member's command (after the image's entrypoint, tini): room for
    the workspace's command line in /proc, the listener, its socket."""
    socket_path = posixpath.join(SOCKET_DIR, SOCKET_NAME)
    return [
        "python",
        "-m",
        "labspace.warm.container",
        warm_member.ROOM_ARGUMENT,
        "--socket",
        socket_path,
    ]


def warm_refusal(spec: WorkspaceSpec) -> str | None:
    """Why ``spec`` cannot start warm on docker (None: it can)."""
    if spec.gpus:
        return "GPUs are given when a container is created"
    for m in spec.mounts:
        if m.type not in ("host", "volume"):
            return f"mount {m.name!r}: {m.type} mounts do not work on docker"
        if m.type == "volume" and m.sub_path:
            return f"mount {m.name!r}: a folder of a volume is mounted by Docker only"
        if home_relative(m.target) is None:
            return f"mount {m.name!r}: {m.target} is outside {HOME}"
    return None


def home_relative(target: str) -> str | None:
    """``target`` relative to the home (a folder strictly inside it), else None."""
    norm = posixpath.normpath(target)
    if not norm.startswith(HOME + "/"):
        return None
    rel = norm[len(HOME) + 1 :]
    return rel if rel and ".." not in rel.split("/") else None


def warm_keys(profiles: list[dict], backend: dict, pooled: list[str], default_image: str) -> list:
    """The images of the pooled profiles (``[]``: all) that can start warm."""
    keys: list[str] = []
    for profile in all_profiles(profiles, backend):
        if pooled and profile["slug"] not in pooled:
            continue
        spec = spec_for(profile, backend)
        image = spec.image or default_image
        if warm_refusal(spec) is None and image not in keys:
            keys.append(image)
    return keys


def mount_plan(spec: WorkspaceSpec, volume_paths: dict[str, str]) -> list[tuple[str, str, bool]]:
    """(host source, path relative to the home, read-only) per data mount;
    ``volume_paths`` maps a volume name to its mount point on the host."""
    plan = []
    for m in spec.mounts:
        rel = home_relative(m.target)
        if rel is None:
            raise ValueError(f"mount {m.name!r}: {m.target} is outside {HOME}")
        if m.type == "host":
            source = m.source
            if m.sub_path:
                source = posixpath.join(source, posixpath.normpath(m.sub_path))
        else:
            source = volume_paths[m.source]
        plan.append((source, rel, m.read_only))
    return plan


def limits_update(spec: WorkspaceSpec) -> dict[str, Any]:
    """``docker update`` arguments: the limits a cold start creates with."""
    out: dict[str, Any] = {}
    if spec.cpu_limit:
        out["cpu_period"] = 100_000
        out["cpu_quota"] = int(spec.cpu_limit * 100_000)
    if spec.cpu_guarantee:
        out["cpu_shares"] = max(2, int(1024 * spec.cpu_guarantee))
    if spec.mem_limit:
        out["mem_limit"] = spec.mem_limit
        out["memswap_limit"] = spec.mem_limit
    if spec.mem_guarantee:
        out["mem_reservation"] = spec.mem_guarantee
    return out


def env_list(items: list[str] | None) -> dict[str, str]:
    return dict(item.split("=", 1) for item in items or () if "=" in item)


# -- host mounts (root) ----------------------------------------------------------

_libc = None


def _mount(source: str | None, target: str, flags: int) -> None:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    src = source.encode() if source is not None else None
    if _libc.mount(src, target.encode(), None, ctypes.c_ulong(flags), None) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"mount {source or ''} on {target}: {os.strerror(e)}")


def _umount(target: str) -> bool:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.umount2(target.encode(), MNT_DETACH) == 0:
        return True
    e = ctypes.get_errno()
    if e in (errno.EINVAL, errno.ENOENT):  # not a mount point (any more)
        return False
    raise OSError(e, f"umount {target}: {os.strerror(e)}")


def mount_points() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4].encode().decode("unicode_escape") for line in f if line.strip()]


def make_shared(folder: str) -> None:
    """``folder`` as a shared mount of its own (``mount --bind X X; mount
    --make-rshared X``), once."""
    if folder in mount_points():
        return
    _mount(folder, folder, MS_BIND | MS_REC)
    _mount(None, folder, MS_REC | MS_SHARED)


def _open_beneath(root: str, rel: str) -> int:
    """An O_PATH descriptor of ``root/rel``, each part made a folder if missing
    (root's, 0755, as Docker makes a mount point), never following a symbolic
    link (the person's home is theirs to fill with links)."""
    flags = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(root, flags)
    try:
        for part in rel.split("/"):
            if part in ("", ".", ".."):
                raise ValueError(f"{rel!r} is not a plain path")
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, 0o755, dir_fd=fd)
            nxt = os.open(part, flags, dir_fd=fd)
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd


def give_mounts(folder: str, home_source: str, plan: list[tuple[str, str, bool]]) -> None:
    """The person's home on ``folder/home``, their data mounts beneath it; on
    failure nothing stays mounted."""
    home = os.path.join(folder, "home")
    stage = os.path.join(folder, "stage")
    os.makedirs(stage, mode=0o700, exist_ok=True)
    try:
        _mount(home_source, home, MS_BIND)
        for source, rel, read_only in plan:
            fd = _open_beneath(home, rel)
            try:
                target = f"/proc/self/fd/{fd}"
                if read_only:
                    _mount(source, stage, MS_BIND)
                    try:
                        _mount(None, stage, MS_BIND | MS_REMOUNT | MS_RDONLY)
                        _mount(stage, target, MS_BIND)
                    finally:
                        _umount(stage)
                else:
                    _mount(source, target, MS_BIND)
            finally:
                os.close(fd)
    except BaseException:
        unmount_all(folder)
        raise


def unmount_all(folder: str) -> None:
    """Every mount at or below ``folder`` (deepest first), detached."""
    prefix = folder.rstrip("/") + "/"
    for _ in range(64):
        mine = [p for p in mount_points() if p == folder or p.startswith(prefix)]
        if not mine:
            return
        for path in sorted(mine, key=len, reverse=True):
            _umount(path)
    raise OSError(f"{folder}: mounts remain after 64 rounds of unmounting")


def drop_root_if_empty(root: str) -> bool:
    """Undo ``make_shared`` once no member folder is left in ``root`` (a
    claimed workspace's home is never detached under it)."""
    if os.path.isdir(root) and not os.listdir(root) and root in mount_points():
        return _umount(root)
    return False


def release_folder(folder: str) -> bool:
    """Unmount and remove a member's folder. Only the folders Labspace made
    are removed, each when empty: a home still mounted is never deleted.
    False: something unexpected is left in it (and so is the folder)."""
    if not os.path.isdir(folder):
        return True
    unmount_all(folder)
    sock = os.path.join(folder, "sock")
    for path in (os.path.join(sock, SOCKET_NAME), os.path.join(folder, READY_FILE)):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    try:
        for part in ("sock", "home", "stage", ""):
            with contextlib.suppress(FileNotFoundError):
                os.rmdir(os.path.join(folder, part) if part else folder)
    except OSError as e:
        if e.errno != errno.ENOTEMPTY:
            raise
        return False
    return True


# -- the provider -------------------------------------------------------------


class DockerWarmProvider(Provider):
    """Pool members as running containers of this Docker daemon."""

    kind = "docker"

    def __init__(self, data_dir: str, images: list[str], uid: int, log):
        self.data_dir = str(data_dir)
        self.root = os.path.join(self.data_dir, WARM_FOLDER)
        self.hub = hub_id(self.data_dir)
        self.images = images
        self.uid = uid
        self.log = log
        self.client = docker.APIClient(version="auto", **kwargs_from_env())

    def keys(self) -> list[str]:
        return list(self.images)

    async def _docker(self, method: str, *args, **kwargs):
        return await asyncio.to_thread(getattr(self.client, method), *args, **kwargs)

    async def start(self) -> None:
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        os.chmod(self.root, 0o700)
        make_shared(self.root)

    def folder(self, member_id: str) -> str:
        return os.path.join(self.root, member_id)

    def socket_path(self, member_id: str) -> str:
        return os.path.join(self.folder(member_id), "sock", SOCKET_NAME)

    async def create(self, key: str) -> Member:
        member = Member(key=key)
        folder = self.folder(member.id)
        await asyncio.to_thread(make_shared, self.root)  # a workspace's stop may have undone it
        os.makedirs(folder, mode=0o700)
        os.mkdir(os.path.join(folder, "home"))
        # the container user reads the empty placeholder, whatever the hub's umask
        os.chmod(os.path.join(folder, "home"), 0o755)  # noqa: S103
        sock = os.path.join(folder, "sock")
        os.mkdir(sock, 0o700)
        os.chown(sock, self.uid, GID)
        member.handle = {"name": member_name(member.id), "folder": folder}
        try:
            host_config = self.client.create_host_config(
                network_mode="host",
                cap_drop=["ALL"],
                security_opt=["no-new-privileges"],
                mounts=[
                    docker.types.Mount(
                        HOME, os.path.join(folder, "home"), type="bind", propagation="rslave"
                    ),
                    docker.types.Mount(SOCKET_DIR, sock, type="bind"),
                ],
            )
            created = await self._docker(
                "create_container",
                key,
                command=member_command(),
                user=f"{self.uid}:{GID}",
                working_dir=HOME,
                environment={warm_member.ROOM_VARIABLE: "x" * warm_member.ROOM_SIZE},
                labels=member_labels(key, self.hub, member.id),
                name=member.handle["name"],
                host_config=host_config,
            )
            member.handle["id"] = created["Id"]
            await self._docker("start", created["Id"])
            await self._wait_ready(member)
            # for people and tests: this member is in the pool now
            Path(folder, READY_FILE).touch(mode=0o600)
        except BaseException:
            await self.destroy(member)
            raise
        return member

    async def _wait_ready(self, member: Member) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        path = self.socket_path(member.id)
        while time.monotonic() < deadline:
            if os.path.exists(path):
                try:
                    answer = await self.request(member, {"op": "ping"}, PING_TIMEOUT_S)
                except OSError:
                    answer = None
                if answer and answer.get("ok"):
                    member.handle["pid"] = answer.get("pid")
                    return
            info = await self._docker("inspect_container", member.handle["id"])
            if not info["State"]["Running"]:
                logs = await self._docker("logs", member.handle["id"], tail=10)
                raise RuntimeError(
                    f"member {member.id} exited ({info['State']['ExitCode']}): "
                    + logs.decode(errors="replace").strip()[-500:]
                )
            await asyncio.sleep(0.1)
        raise TimeoutError(f"member {member.id} not ready after {READY_TIMEOUT_S:.0f}s")

    async def request(self, member: Member, message: dict, timeout: float) -> dict:
        """One JSON line to the member's socket, its answer."""

        async def talk():
            reader, writer = await asyncio.open_unix_connection(self.socket_path(member.id))
            try:
                writer.write(json.dumps(message).encode() + b"\n")
                await writer.drain()
                line = await reader.readline()
            finally:
                writer.close()
            return json.loads(line or b"null")

        answer = await asyncio.wait_for(talk(), timeout)
        if not isinstance(answer, dict):
            raise OSError(f"member {member.id} gave no answer")
        return answer

    async def alive(self, member: Member) -> bool:
        try:
            info = await self._docker("inspect_container", member.handle.get("id") or "-")
        except docker.errors.NotFound:
            return False
        return bool(info["State"]["Running"]) and info["Name"].lstrip("/") == member_name(member.id)

    async def destroy(self, member: Member) -> None:
        ident = member.handle.get("id") or member.handle.get("name") or member_name(member.id)
        try:
            await self._docker("remove_container", ident, force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as e:
            if e.status_code != 409:  # 409: already being removed
                raise
        if not await asyncio.to_thread(release_folder, self.folder(member.id)):
            self.log.warning("Warm pool: %s is not empty; left as it is", self.folder(member.id))

    async def leftovers(self) -> list[Member]:
        """Waiting members of this hub's earlier runs, and folders no container
        of this hub uses any more."""
        found = await self._docker(
            "containers",
            all=True,
            filters={"label": [f"{LABEL}.role={POOL_ROLE}", f"{LABEL}.hub={self.hub}"]},
        )
        out, used = [], set()
        for c in found:
            labels = c.get("Labels") or {}
            mid = labels.get(f"{LABEL}.member", "")
            used.add(mid)
            names = [n.lstrip("/") for n in c.get("Names") or ()]
            if mid and member_name(mid) in names:  # not claimed (claims rename)
                handle = {"id": c["Id"], "name": member_name(mid), "folder": self.folder(mid)}
                out.append(Member(key=labels.get(f"{LABEL}.pool", ""), id=mid, handle=handle))
        if os.path.isdir(self.root):
            for mid in os.listdir(self.root):
                if mid not in used:
                    out.append(Member(key="", id=mid, handle={"folder": self.folder(mid)}))
        return out

    async def claim(self, member: Member, claim: dict) -> int:
        """Send the claim; the member's pid once it took it."""
        answer = await self.request(member, {"op": "claim", "claim": claim}, CLAIM_TIMEOUT_S)
        if not answer.get("ok"):
            raise RuntimeError(f"member {member.id} refused the claim: {answer.get('error')}")
        return int(answer.get("pid") or 0)

    async def close(self) -> None:
        """After the drain: the shared mount goes unless a claimed workspace
        still has its folder there (its stop then removes it)."""
        await asyncio.to_thread(drop_root_if_empty, self.root)
        self.client.close()


def provider_for(hub_app) -> DockerWarmProvider | None:
    """The provider ``backend.warm_pool`` asks for (``warm_provider``)."""
    config = hub_app.config
    mixin = config.get("LabspaceSpawnerMixin", {})
    backend = dict(mixin.get("backend_settings") or {})
    docker_settings = backend.get("docker") or {}
    if os.geteuid() != 0:
        raise ValueError(
            "the docker backend gives a waiting container its person's home by mounting it "
            f"on the host, which needs the hub to run as root (it runs as uid {os.geteuid()}); "
            "run the hub as root or set backend.warm_pool.enabled: false"
        )
    if docker_settings.get("network", "host") != "host":
        hub_app.log.warning(
            "backend.warm_pool: the docker backend starts warm only with "
            "backend.docker.network: host (every start is cold)"
        )
        return None
    home_root = mixin.get("home_root")
    if not home_root:
        raise ValueError("no home_root: set data_dir")
    warm = mixin.get("warm_pool") or {}
    default_image = backend.get("image") or "labspace/workspace:latest"
    images = warm_keys(
        list(mixin.get("profiles") or []), backend, list(warm.get("profiles") or []), default_image
    )
    data_dir = str(Path(home_root).parent)
    return DockerWarmProvider(data_dir, images, docker_settings.get("uid", 1000), hub_app.log)
