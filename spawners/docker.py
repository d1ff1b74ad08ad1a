"""The docker backend: each workspace is a container on this host (DockerSpawner).

``LabspaceDockerSpawner`` maps a resolved ``WorkspaceSpec`` and the
``backend.docker`` settings onto DockerSpawner's traits. The mapping is a few
pure functions (``container_name``, ``home_volume_name``, ``mounts_for``,
``host_config_for``); the spawner only orchestrates.

What a workspace gets:

- a container named ``labspace-{user}`` (``labspace-{user}--{server}`` for a
  named server), from JupyterHub's safe slugs, so user ``user-has`` + server
  ``dash`` and user ``user-has-dash`` never share a name; it is deleted when the
  workspace stops;
- a home at ``/home/jovyan`` that outlives it: the named volume
  ``labspace-home-{user}`` (``home: volume``), or the folder
  ``<home_root>/{user}`` (``home: bind``), shared by all of the user's servers
  and owned by the workspace user;
- the settings' uid (group 100, ``users``), never root, with no capabilities
  and ``no-new-privileges``;
- with ``network: host`` (the default) the host's network, listening on its own
  free loopback port; nothing is published;
- the profile's memory and CPU limits (and guarantees as reservation and
  shares), GPUs as device requests, and its mounts (``host`` folders as bind
  mounts, ``volume`` as named volumes, a ``sub_path`` of a volume with Docker 26
  or later), read-only unless ``read_only: false``;
- the spec's files (e.g. a data grant's credentials) in ``/run/labspace``, put
  into the created container before it starts (0600, the workspace user's), so
  they are never in the home and go with the container.

With ``backend.warm_pool`` a start may instead claim a running pool container
(``spawners.docker_warm``, ``start_warm``): the same name, home, mounts,
limits, files, command and environment, given to a container that has already
imported the workspace server.

Every value is a ``@default``, and ``extra_create_kwargs`` / ``extra_host_config``
set through ``hub.config`` are merged over Labspace's, so one site may still
override any of them.
"""

from __future__ import annotations

import asyncio
import inspect
import io
import os
import posixpath
import secrets
import tarfile
import time
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import docker.errors
import docker.utils
from docker.types import Mount as DockerMount
from dockerspawner import DockerSpawner
from jupyterhub.slugs import safe_slug
from jupyterhub.utils import random_port
from tornado import web
from traitlets import default

from labspace.profiles import FILES_DIR, Mount, WorkspaceFile, WorkspaceSpec
from labspace.state import user_dir_name
from labspace.warm.pool import Member, hub_pool

from . import docker_warm
from .mixin import LabspaceSpawnerMixin

HOME = "/home/jovyan"
GID = 100  # "users": the workspace user's group, as in the workspace image
PREFIX = "labspace"
LABEL = "org.labspace"
MOUNT_TYPES = {"host": "bind", "volume": "volume"}
SUBPATH_API = "1.45"  # Docker 26: a volume mount's VolumeOptions.Subpath
LAB_ARGS = (
    # no news feed or update check from inside a workspace (the image's
    # overrides.json says so too, for images that are not Labspace's)
    "--LabApp.news_url=None",
    "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
)


# -- pure mapping -------------------------------------------------------------


def container_name(prefix: str, username: str, server: str = "") -> str:
    """``labspace-{user}`` or ``labspace-{user}--{server}``.

    Slugs never contain ``--``, so the separator cannot occur inside either part.
    """
    name = f"{prefix}-{user_dir_name(username)}"
    return f"{name}--{safe_slug(server)}" if server else name


def home_volume_name(prefix: str, username: str) -> str:
    """The named volume that holds a user's home, shared by all their servers."""
    return f"{prefix}-home-{user_dir_name(username)}"


def mount_for(mount: Mount, subpath_ok: bool = False) -> dict[str, Any]:
    """``docker.types.Mount`` arguments for one settings mount; a volume's
    ``sub_path`` is ``volume_subpath`` (``VolumeOptions.Subpath``, which only
    Docker 26 and later honour: ``subpath_ok`` says the daemon is one). An older
    daemon would mount the whole volume, so that is refused (ValueError)."""
    if mount.type not in MOUNT_TYPES:
        raise ValueError(
            f"mount {mount.name!r}: {mount.type!r} mounts do not work on the docker "
            "backend (use host or volume)"
        )
    out = {
        "type": MOUNT_TYPES[mount.type],
        "source": mount.source,
        "target": mount.target,
        "read_only": mount.read_only,
    }
    sub = posixpath.normpath(mount.sub_path) if mount.sub_path else ""
    if sub and (sub.startswith(("/", "..")) or sub == "."):
        raise ValueError(f"mount {mount.name!r}: sub_path {mount.sub_path!r} leaves the source")
    if sub and mount.type == "host":
        out["source"] = posixpath.join(mount.source, sub)
    elif sub:
        if not subpath_ok:
            raise ValueError(
                f"mount {mount.name!r}: this Docker host cannot mount a folder of a volume "
                f"(sub_path needs Docker 26, API {SUBPATH_API}, or later)"
            )
        out["volume_subpath"] = sub
    return out


def mounts_for(
    spec: WorkspaceSpec, home_kind: str, home_source: str, subpath_ok: bool = False
) -> list[dict[str, Any]]:
    """The home (read-write) and the spec's mounts, as ``docker.types.Mount`` arguments."""
    home = {"type": home_kind, "source": home_source, "target": HOME, "read_only": False}
    return [home, *(mount_for(m, subpath_ok) for m in spec.mounts)]


def docker_mount(args: dict[str, Any]) -> DockerMount:
    """A ``docker.types.Mount`` from ``mount_for``'s arguments."""
    args = dict(args)
    subpath = args.pop("volume_subpath", "")
    mount = DockerMount(**args)
    if subpath:  # docker-py has no argument for it: the API's field itself
        mount.setdefault("VolumeOptions", {})["Subpath"] = subpath
    return mount


def files_archive(files: tuple[WorkspaceFile, ...], uid: int, gid: int) -> bytes:
    """A tar of ``run/labspace/<name>`` for each file (the folder 0700, each file
    0600, both the workspace user's), to put at ``/`` of a created container
    (Docker makes the missing parents)."""
    buf = io.BytesIO()
    now = int(time.time())
    top = FILES_DIR.strip("/")
    with tarfile.open(fileobj=buf, mode="w") as tar:
        folder = tarfile.TarInfo(top)
        folder.type, folder.mode, folder.uid, folder.gid, folder.mtime = (
            tarfile.DIRTYPE,
            0o700,
            uid,
            gid,
            now,
        )
        tar.addfile(folder)
        for f in files:
            if "/" in f.name or f.name in ("", ".", ".."):
                raise ValueError(f"workspace file {f.name!r} is not a plain file name")
            data = f.content.encode()
            info = tarfile.TarInfo(f"{top}/{f.name}")
            info.size, info.mode, info.uid, info.gid, info.mtime = len(data), 0o600, uid, gid, now
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def host_config_for(spec: WorkspaceSpec) -> dict[str, Any]:
    """What DockerSpawner does not map itself: no privileges, no swap beyond the
    memory limit, guarantees and GPUs.

    (It sets ``mem_limit`` and ``cpu_quota`` from the limits.)
    """
    config: dict[str, Any] = {
        # a non-root Jupyter server needs no capability and never gains one
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
    }
    if spec.mem_limit:
        config["memswap_limit"] = spec.mem_limit
    if spec.mem_guarantee:
        config["mem_reservation"] = spec.mem_guarantee
    if spec.cpu_guarantee:
        # relative weight under contention; 1024 is one full share
        config["cpu_shares"] = max(2, int(1024 * spec.cpu_guarantee))
    if spec.gpus:
        config["device_requests"] = [{"count": spec.gpus, "capabilities": [["gpu"]]}]
    return config


def labels_for(username: str, server: str, role: str, profile: str = "") -> dict[str, str]:
    """Labels that say what a Labspace container or volume is (safe slugs only)."""
    labels = {f"{LABEL}.role": role, f"{LABEL}.user": user_dir_name(username)}
    if server:
        labels[f"{LABEL}.server"] = safe_slug(server)
    if profile:
        labels[f"{LABEL}.profile"] = profile
    return labels


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``extra`` over ``base``, dicts merged key by key."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


# -- the spawner ----------------------------------------------------------------


class LabspaceDockerSpawner(LabspaceSpawnerMixin, DockerSpawner):
    """Run each workspace as a container, from the ``backend.docker`` settings.

    Profiles are Labspace's (``profiles:`` in labspace.yaml), resolved by the
    mixin; DockerSpawner's own image choice is not offered.
    """

    runs_images = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # what a site configured (hub.config) goes over Labspace's own values
        self._site_create_kwargs = self.extra_create_kwargs
        self._site_host_config = self.extra_host_config
        self.extra_create_kwargs = self._create_kwargs
        self.extra_host_config = self._host_config

    # -- settings ------------------------------------------------------------

    @property
    def docker_settings(self) -> dict[str, Any]:
        return self.backend_settings.get("docker", {})

    @property
    def uid(self) -> int:
        return self.docker_settings.get("uid", 1000)

    @property
    def home_kind(self) -> str:
        return self.docker_settings.get("home", "volume")

    @property
    def host_network(self) -> bool:
        return self.network_name == "host"

    @property
    def home_volume(self) -> str:
        return home_volume_name(self.prefix, self.user.name)

    @default("image")
    def _default_image_from_settings(self):
        return self.backend_settings.get("image") or "labspace/workspace:latest"

    @default("network_name")
    def _default_network_from_settings(self):
        return self.docker_settings.get("network", "host")

    @default("use_internal_ip")
    def _default_use_internal_ip(self):
        # never publish a port: host network → loopback, else the container's IP
        return True

    @default("ip")
    def _default_ip_for_network(self):
        return "127.0.0.1" if self.host_network else "0.0.0.0"  # noqa: S104

    @default("remove")
    def _default_remove(self):
        # containers are disposable; homes live in volumes or host folders
        return True

    @default("prefix")
    def _default_prefix(self):
        return PREFIX

    @default("object_name")
    def _object_name_default(self):
        return container_name(self.prefix, self.user.name, self.name)

    # -- profile → container ---------------------------------------------------

    def apply_workspace_spec(self, spec: WorkspaceSpec) -> None:
        super().apply_workspace_spec(spec)
        try:
            # refuse what docker cannot mount, now
            mounts_for(spec, *self._home_source(), self._subpath_ok(spec))
        except ValueError as e:
            raise web.HTTPError(
                500, f"This workspace cannot start: {e} (ask an administrator)"
            ) from None
        # the one image this start may run (DockerSpawner refuses any other)
        self.allowed_images = [spec.image]

    def _subpath_ok(self, spec: WorkspaceSpec) -> bool:
        """Whether the daemon mounts a folder of a volume (asked only when needed)."""
        if not any(m.sub_path and m.type == "volume" for m in spec.mounts):
            return False
        return docker.utils.version_gte(self.client.api_version, SUBPATH_API)

    def _home_source(self) -> tuple[str, str]:
        if self.home_kind == "bind":
            return "bind", self.home_dir
        return "volume", self.home_volume

    @property
    def mount_binds(self) -> list[DockerMount]:
        """The home and the profile's mounts, plus any ``mounts`` a site configured.

        (Unlike DockerSpawner's, paths are not templates: ``{`` in a path stays.)
        """
        spec = self.workspace_spec
        ours = mounts_for(spec, *self._home_source(), self._subpath_ok(spec)) if spec else []
        return [*super().mount_binds, *(docker_mount(m) for m in ours)]

    async def _site_value(self, value) -> dict[str, Any]:
        if callable(value):
            value = value(self)
            if inspect.isawaitable(value):
                value = await value
        return dict(value or {})

    async def _create_kwargs(self, spawner) -> dict[str, Any]:
        spec = self.workspace_spec
        ours = {
            "user": f"{self.uid}:{GID}",
            "working_dir": HOME,
            "labels": labels_for(
                self.user.name, self.name, "workspace", spec.profile if spec else ""
            ),
        }
        return _merge(ours, await self._site_value(self._site_create_kwargs))

    async def _host_config(self, spawner) -> dict[str, Any]:
        spec = self.workspace_spec
        ours = host_config_for(spec) if spec else {}
        return _merge(ours, await self._site_value(self._site_host_config))

    def get_env(self):
        env = super().get_env()
        env["HOME"] = HOME
        return env

    def get_args(self):
        args = [*super().get_args(), *LAB_ARGS]
        if self.host_network:
            # shown in `docker inspect`; JUPYTERHUB_SERVICE_URL says the same
            args = [f"--ip={self.ip}", f"--port={self.port}", *args]
        return args

    # -- start and stop --------------------------------------------------------

    async def start(self):
        if self.host_network:
            # each workspace on its own free loopback port of the shared network
            self.port = random_port()
        return await super().start()

    async def get_ip_and_port(self):
        if self.host_network:
            return self.ip, self.port
        return await super().get_ip_and_port()

    def get_state(self):
        state = super().get_state()
        if self.object_id and self.host_network:
            state["port"] = self.port
        if self.object_id and self.warm_member:
            state["warm_member"] = self.warm_member
        return state

    def load_state(self, state):
        super().load_state(state)
        if state.get("port"):
            self.port = state["port"]
        if state.get("warm_member"):
            self.warm_member = state["warm_member"]

    def clear_state(self):
        super().clear_state()
        self.warm_member = ""

    # -- warm starts (spawners.docker_warm) --------------------------------------

    warm_member = ""  # the pool member this workspace's container was

    @classmethod
    def warm_provider(cls, hub_app):
        return docker_warm.provider_for(hub_app)

    def warm_key(self, spec: WorkspaceSpec) -> str | None:
        """The image, or None where a waiting container could not become what a
        cold start creates (GPUs, a mount outside the home, another network, a
        site's own create or host options, internal SSL)."""
        if not self.host_network or self.internal_ssl or self.post_start_cmd:
            return None
        if self._site_create_kwargs or self._site_host_config or self.mounts or self.volumes:
            return None
        if docker_warm.warm_refusal(spec) is not None:
            return None
        return spec.image or self.image

    @property
    def warm_folder_root(self) -> str:
        return str(Path(self.home_root).parent / docker_warm.WARM_FOLDER)

    async def start_warm(self, member: Member):
        """Give ``member`` this start's home, mounts, limits, files, name,
        command and environment; on failure undo the name and the mounts (the
        pool then removes the member and the start goes on cold)."""
        pool = hub_pool(self.user.settings)
        provider = pool.provider if pool is not None else None
        if not isinstance(provider, docker_warm.DockerWarmProvider):
            raise RuntimeError("no docker warm pool")
        spec = self.workspace_spec
        folder = provider.folder(member.id)
        ident = member.handle["id"]
        self.port = random_port()
        home_source = await self._warm_home_source()
        volumes = {}
        for m in spec.mounts:
            if m.type == "volume":
                volumes[m.source] = await self._volume_mountpoint(m.source, create=True)
        plan = docker_warm.mount_plan(spec, volumes)
        self.log.info("Spawning %s (warm: member %s)", self.object_name, member.id)
        await asyncio.to_thread(docker_warm.give_mounts, folder, home_source, plan)
        renamed = False
        try:
            limits = docker_warm.limits_update(spec)
            if limits:
                await self.docker("update_container", ident, **limits)
            if spec.files:
                archive = files_archive(spec.files, self.uid, GID)
                await self.docker("put_archive", ident, "/", archive)
            old = await self.get_object()
            if old is not None:  # as a cold start does with remove=True
                await self.remove_object()
            await self.docker("rename", ident, self.object_name)
            renamed = True
            self.emit(f"Starting container {self.object_name}", 45)
            self.object_id = ident
            self.warm_member = member.id
            await provider.claim(member, await self._warm_claim(ident))
        except BaseException:
            self.object_id = ""
            self.warm_member = ""
            if renamed:
                with suppress(docker.errors.APIError):
                    await self.docker("rename", ident, docker_warm.member_name(member.id))
            await asyncio.to_thread(docker_warm.unmount_all, folder)
            raise
        return await self.get_ip_and_port()

    async def _warm_home_source(self) -> str:
        if self.home_kind == "bind":
            return self.home_dir
        path = await self._volume_mountpoint(self.home_volume)
        st = await asyncio.to_thread(os.stat, path)
        if (st.st_uid, st.st_gid) != (self.uid, GID):
            # a new volume: Docker fills it from the image when a container
            # first mounts it, which a claim never does; the one-off container
            # that owns a home does both
            await self._own_home_volume()
        return path

    async def _volume_mountpoint(self, name: str, create: bool = False) -> str:
        try:
            info = await self.docker("inspect_volume", name)
        except docker.errors.NotFound:
            if not create:
                raise
            info = await self.docker("create_volume", name)  # as `docker run` does
        return info["Mountpoint"]

    async def _warm_claim(self, ident: str) -> dict[str, Any]:
        """What the cold start's container would run: the command, the image's
        environment under this start's (token, OAuth client, port), the home."""
        image = await self.docker("inspect_image", self.image)
        env = docker_warm.env_list((image.get("Config") or {}).get("Env"))
        container = await self.docker("inspect_container", ident)
        hostname = (container.get("Config") or {}).get("Hostname")
        if hostname:
            env["HOSTNAME"] = hostname
        env.update({k: str(v) for k, v in self.get_env().items()})
        return {"argv": await self.get_command(), "env": env, "cwd": HOME}

    async def stop(self, now=False):
        was = self.warm_member  # DockerSpawner.stop clears the state
        try:
            await super().stop(now=now)
        finally:
            if was:
                # the container is gone: its home and data mounts on the host go too
                folder = os.path.join(self.warm_folder_root, was)
                if not await asyncio.to_thread(docker_warm.release_folder, folder):
                    self.log.warning("%s: %s is not empty; left as it is", self._log_name, folder)
                if hub_pool(self.user.settings) is None:  # the hub is past its drain
                    await asyncio.to_thread(docker_warm.drop_root_if_empty, self.warm_folder_root)
                self.warm_member = ""

    async def pull_image(self, image):
        try:
            await super().pull_image(image)
        except docker.errors.APIError as e:
            self.log.error("Image %s for %s: %s", image, self._log_name, e)
            raise RuntimeError(
                f"Image {image} is not on this Docker host and could not be pulled "
                f"({e.explanation or e}); build it (`make images`) or push it to a "
                "registry this host can reach"
            ) from None

    async def prepare_workspace(self) -> None:
        await self.pull_image(self.image)
        if self.home_kind == "bind":
            self._prepare_home_dir()
        else:
            await self._prepare_home_volume()

    def _prepare_home_dir(self) -> None:
        """``<home_root>/<user>``, owned by the workspace user."""
        path = Path(self.home_dir)
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = path.stat()
        if (st.st_uid, st.st_gid) == (self.uid, GID):
            return
        if os.geteuid() != 0:
            raise RuntimeError(
                f"Home {path} belongs to uid {st.st_uid}, but workspaces run as uid "
                f"{self.uid}, and the hub is not root to change that: `chown "
                f"{self.uid}:{GID} {path}`, or use backend.docker.home: volume"
            )
        os.chown(path, self.uid, GID)

    async def _prepare_home_volume(self) -> None:
        """Create the home volume on first start, owned by the workspace user."""
        try:
            await self.docker("inspect_volume", self.home_volume)
            return
        except docker.errors.NotFound:
            pass
        self.emit("Creating your home", 20)
        labels = labels_for(self.user.name, "", "home")
        await self.docker("create_volume", self.home_volume, labels=labels)
        if await self._image_home_owner() == f"{self.uid}:{GID}":
            # Docker fills a new volume from the image's home, owner included
            self.log.info("Created home volume %s for %s", self.home_volume, self._log_name)
            return
        try:
            await self._own_home_volume()
        except Exception:
            # a half-made home would be kept and used as it is: start afresh next time
            await self.docker("remove_volume", self.home_volume, force=True)
            raise
        self.log.info("Created home volume %s for %s", self.home_volume, self._log_name)

    async def _image_home_owner(self) -> str | None:
        """``uid:gid`` of the image's home, from its ``org.labspace.home-owner`` label."""
        info = await self.docker("inspect_image", self.image)
        labels = (info.get("Config") or {}).get("Labels") or {}
        return labels.get("org.labspace.home-owner")

    async def _own_home_volume(self) -> None:
        """Fill the new volume from the image's home (Docker copies it on first
        mount) and give it to the workspace user, in a one-off root container
        without network."""
        name = f"{self.prefix}--home-init--{user_dir_name(self.user.name)}--{secrets.token_hex(3)}"
        host_config = self.client.create_host_config(
            network_mode="none",
            mounts=[DockerMount(HOME, self.home_volume, type="volume")],
        )
        container = await self.docker(
            "create_container",
            self.image,
            entrypoint=["chown"],
            command=["-R", f"{self.uid}:{GID}", HOME],
            user="0",
            name=name,
            labels=labels_for(self.user.name, "", "home-init"),
            host_config=host_config,
        )
        try:
            await self.docker("start", container["Id"])
            result = await self.docker("wait", container["Id"], timeout=120)
            if result.get("StatusCode"):
                logs = await self.docker("logs", container["Id"], tail=20)
                raise RuntimeError(
                    f"Could not prepare home volume {self.home_volume}: "
                    f"{logs.decode(errors='replace').strip()}"
                )
        finally:
            await self.docker("remove_container", container["Id"], force=True)

    async def create_object(self):
        with self._docker_refusal("create"):
            return await super().create_object()

    async def start_object(self):
        spec = self.workspace_spec
        if spec and spec.files:
            # into the created container, outside the home: gone with the container
            archive = files_archive(spec.files, self.uid, GID)
            with self._docker_refusal("prepare"):
                await self.docker("put_archive", self.container_id, "/", archive)
        self.emit(f"Starting container {self.object_name}", 45)
        with self._docker_refusal("start"):
            await super().start_object()

    @contextmanager
    def _docker_refusal(self, verb: str):
        """Docker's reason, with what to do, instead of "Internal Server Error"."""
        try:
            yield
        except docker.errors.APIError as e:
            self.log.error("Docker could not %s %s: %s", verb, self.object_name, e)
            reason = e.explanation or str(e)
            spec = self.workspace_spec
            if spec and spec.gpus and "device driver" in str(reason):
                reason += (
                    "; this Docker host cannot give containers GPUs (install the NVIDIA "
                    "Container Toolkit) or choose a profile without GPUs"
                )
            raise web.HTTPError(500, f"Docker could not {verb} your workspace: {reason}") from None
