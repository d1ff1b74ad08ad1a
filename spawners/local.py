"""The embedded default backend: each workspace is a local process.

Unlike JupyterHub's ``LocalProcessSpawner`` it needs no system users and no root:
every workspace runs as the hub's own OS user, with its home in
``<home_root>/<safe name>``. Workspaces are therefore not isolated from each
other; use the docker or kubernetes backend where users must be kept apart.

Warm starts (``backend.warm_pool``): ``LocalWarmProvider`` runs one fork server
(``labspace.warm.forkserver``) that has imported the workspace server once;
each pool member is a fork of it, waiting for its claim. ``start_warm`` builds
the command, environment and home a cold ``start()`` would and hands them to a
member, which becomes that workspace; the spawner keeps its pid as after a cold
start, so poll, stop and a hub restart work the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import posixpath
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from jupyterhub.slugs import safe_slug
from jupyterhub.spawner import LocalProcessSpawner
from jupyterhub.utils import random_port
from traitlets import Unicode, default, validate

from labspace.profiles import Mount, WorkspaceSpec
from labspace.state import user_dir_name
from labspace.warm import forkserver
from labspace.warm import member as warm_member
from labspace.warm.pool import Member, Provider, hub_pool

from .mixin import LabspaceSpawnerMixin

# JupyterLab settings every new home starts with: no prompt to fetch news from the
# internet (research networks often have none)
LAB_DEFAULTS = {"@jupyterlab/apputils-extension/notification": {"fetchNews": "false"}}

WARM_KEY = "local"  # one pool: every local workspace runs the hub's interpreter
WARM_FOLDER = ".warm"  # under runtime_root; no user's folder starts with a dot
WORKSPACE_MODULE = ["-m", "labspace.singleuser"]
# the fork server's environment: what LocalProcessSpawner keeps of the hub's
# (its env_keep), nothing else: no hub secret, no user
FORKSERVER_ENV_KEEP = (
    "CONDA_DEFAULT_ENV",
    "CONDA_ROOT",
    "JUPYTERHUB_SINGLEUSER_APP",
    "LANG",
    "LC_ALL",
    "LD_LIBRARY_PATH",
    "PATH",
    "PYTHONPATH",
    "VIRTUAL_ENV",
)
FORKSERVER_START_TIMEOUT = 60.0  # s to preload (3 s on an idle machine)
STOP_TIMEOUT = 10.0


def forkserver_env() -> dict[str, str]:
    """The fork server's environment: the hub's ``FORKSERVER_ENV_KEEP``, and
    room for a workspace's environment as /proc shows it (``member.show_as``)."""
    env = {k: os.environ[k] for k in FORKSERVER_ENV_KEEP if k in os.environ}
    env[warm_member.ROOM_VARIABLE] = "x" * warm_member.ROOM_SIZE
    return env


def _alive(pid: int, starttime: int | None) -> bool:
    """``pid`` is still the process that started at ``starttime`` (not a zombie)."""
    if not pid or forkserver.proc_starttime(pid) != starttime:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def _umask() -> int:
    """This process's umask, read without changing it."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status") as f:
        for line in f:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class LocalWarmProvider(Provider):
    """The local backend's pool members: forks of one fork server, a child of
    the hub in a session of its own, whose folder (``<runtime_root>/.warm``,
    0700) holds its socket and the pids a killed hub would leave behind."""

    kind = "local"

    def __init__(self, folder: str, log):
        self.folder = folder
        self.socket_path = os.path.join(folder, forkserver.SOCKET_NAME)
        self.log = log
        self.proc: subprocess.Popen | None = None
        self._lifeline: int | None = None
        self._left: list[Member] = []
        self._launching = asyncio.Lock()  # one fork server at a time

    def keys(self) -> list[str]:
        return [WARM_KEY]

    async def start(self) -> None:
        os.makedirs(self.folder, mode=0o700, exist_ok=True)
        os.chmod(self.folder, 0o700)
        self._left = await self._end_earlier_run()
        await self._launch()

    async def _launch(self) -> None:
        """Start the fork server and wait until it answers (it preloads first)."""
        self._hang_up()
        read, self._lifeline = os.pipe()
        try:
            cmd = [sys.executable, "-m", "labspace.warm.forkserver", warm_member.ROOM_ARGUMENT]
            cmd += ["--socket", self.socket_path, "--lifeline", str(read)]
            env = forkserver_env()
            self.proc = subprocess.Popen(
                cmd, env=env, cwd=self.folder, pass_fds=(read,), start_new_session=True
            )
        finally:
            os.close(read)
        deadline = time.monotonic() + FORKSERVER_START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the fork server exited with {self.proc.returncode}")
            with contextlib.suppress(forkserver.ForkServerError):
                await forkserver.request(self.socket_path, {"op": "list"}, timeout=5)
                self.log.info("Warm pool: fork server %d is up", self.proc.pid)
                return
            await asyncio.sleep(0.1)
        await self.close()
        raise RuntimeError(f"the fork server did not answer in {FORKSERVER_START_TIMEOUT:.0f}s")

    async def _end_earlier_run(self) -> list[Member]:
        """Stop the fork server an earlier hub run left (it ends its members);
        return the members it may not have ended."""
        state = self._read(forkserver.STATE_FILE) or {}
        pid, starttime = state.get("pid"), state.get("starttime")
        if isinstance(pid, int) and _alive(pid, starttime):
            self.log.info("Warm pool: stopping fork server %d of an earlier run", pid)
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + STOP_TIMEOUT
            while _alive(pid, starttime) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if _alive(pid, starttime):
                os.kill(pid, signal.SIGKILL)
        left = []
        for entry in self._read(forkserver.MEMBERS_FILE) or []:
            if isinstance(entry, dict) and _alive(entry.get("pid"), entry.get("starttime")):
                handle = {"pid": entry["pid"], "starttime": entry["starttime"], "leftover": True}
                left.append(Member(WARM_KEY, id=str(entry.get("id")), handle=handle))
        return left

    def _read(self, name: str):
        try:
            with open(os.path.join(self.folder, name)) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    async def leftovers(self) -> list[Member]:
        return self._left

    async def create(self, key: str) -> Member:
        async with self._launching:  # concurrent refills start one, not several
            if self.proc is None or self.proc.poll() is not None:
                code = self.proc.returncode if self.proc else None
                self.log.warning("Warm pool: the fork server ended (%s); starting a new one", code)
                await self._launch()
        member = Member(key)
        answer = await forkserver.request(self.socket_path, {"op": "fork", "id": member.id})
        pid = answer["pid"]
        member.handle = {"pid": pid, "starttime": forkserver.proc_starttime(pid)}
        return member

    async def alive(self, member: Member) -> bool:
        return _alive(member.handle.get("pid"), member.handle.get("starttime"))

    async def claim(self, member: Member, claim: dict) -> int:
        """Hand ``member`` its workspace; the workspace's pid once it has it.
        A claim that fails leaves nothing running: a member that did get it
        (the answer was lost) is killed, as the start goes on cold."""
        message = {"op": "claim", "id": member.id, "claim": claim}
        try:
            answer = await forkserver.request(self.socket_path, message, timeout=30)
        except forkserver.ForkServerError:
            pid, starttime = member.handle.get("pid"), member.handle.get("starttime")
            if _alive(pid, starttime):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            raise
        return answer["pid"]

    async def destroy(self, member: Member) -> None:
        pid, starttime = member.handle.get("pid"), member.handle.get("starttime")
        if not member.handle.get("leftover") and self.proc and self.proc.poll() is None:
            with contextlib.suppress(forkserver.ForkServerError):
                await forkserver.request(self.socket_path, {"op": "destroy", "id": member.id})
                return
        if _alive(pid, starttime):  # the fork server is gone: a waiting member ends by itself
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def _hang_up(self) -> None:
        if self._lifeline is not None:
            os.close(self._lifeline)
            self._lifeline = None

    async def close(self) -> None:
        """Close the lifeline: the fork server ends its unclaimed members and exits."""
        self._hang_up()
        if self.proc is None:
            return
        deadline = time.monotonic() + STOP_TIMEOUT
        while self.proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self.proc.poll() is None:
            self.log.warning("Warm pool: fork server %d did not stop; killing it", self.proc.pid)
            self.proc.kill()
            self.proc.wait(5)


class LabspaceLocalSpawner(LabspaceSpawnerMixin, LocalProcessSpawner):
    """Run each workspace as a local process of the hub's OS user.

    From a profile it applies the environment and reports CPU and memory limits
    to the workspace (``CPU_LIMIT``, ``MEM_LIMIT``, shown by resource monitors),
    but cannot enforce them: that needs the docker or kubernetes backend. GPUs
    are whatever the host has. Mounts become links in the home folder: at their
    target when it is ``~/<path>`` (a data grant's ``~/data/<id>``), else
    ``~/<mount name>``; read-only is not enforced (a process without root cannot
    make a read-only view). A link this spawner made and the next start does not
    want is removed. The spec's files (e.g. a data grant's credentials) go to a
    per-server folder under ``runtime_root`` (0700, files 0600), outside the
    home, removed when the workspace ends.
    """

    runtime_root = Unicode(
        help="""
        Folder on the host for what one start of a workspace gets outside its home
        (``<runtime_root>/<user>[--<server>]``, removed at stop). Default:
        ``runtime`` next to ``home_root`` (``<data_dir>/runtime``).
        """,
    ).tag(config=True)

    @default("runtime_root")
    def _default_runtime_root(self):
        return str(Path(self.home_root).parent / "runtime")

    @validate("runtime_root")
    def _validate_runtime_root(self, proposal):
        if not os.path.isabs(proposal.value):
            raise ValueError(f"runtime_root must be an absolute path, not {proposal.value!r}")
        return proposal.value

    _links: list[str] | None = None  # links made in the home, relative to it (kept in the state)

    @default("cmd")
    def _default_cmd(self):
        # the hub's own interpreter, so workspaces find jupyterhub-singleuser
        # without relying on PATH; through labspace.singleuser, which starts
        # without jsonschema's IRI grammar (2 CPU-seconds)
        return [sys.executable, "-m", "labspace.singleuser"]

    def get_args(self):
        # no news feed or update check from inside a workspace: research networks
        # often have no internet, and the popup asks every new user
        args = [
            *super().get_args(),
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ]
        if os.geteuid() == 0:
            # jupyter-server refuses root unless told; the hub runs as root only
            # in containers and CI
            args.append("--ServerApp.allow_root=True")
        return args

    # -- warm starts ---------------------------------------------------------

    @classmethod
    def warm_provider(cls, hub_app) -> LocalWarmProvider | None:
        """The fork server's provider, in ``<runtime_root>/.warm``; None where no
        start could be warm (not Linux; internal SSL: certificates are made per
        start)."""
        if sys.platform != "linux":  # /proc, SO_PEERCRED, O_PATH: Linux only
            hub_app.log.info(
                "backend.warm_pool: the local fork server needs Linux; every start is cold"
            )
            return None
        if hub_app.internal_ssl:
            hub_app.log.warning("backend.warm_pool: off with internal_ssl (every start is cold)")
            return None
        config = hub_app.config
        runtime_root = config.get("LabspaceLocalSpawner", {}).get("runtime_root")
        if not runtime_root:
            home_root = config.get("LabspaceSpawnerMixin", {}).get("home_root")
            if not home_root:
                raise ValueError("no home_root: set data_dir")
            runtime_root = str(Path(home_root).parent / "runtime")
        return LocalWarmProvider(os.path.join(runtime_root, WARM_FOLDER), hub_app.log)

    def warm_key(self, spec: WorkspaceSpec) -> str | None:
        """``"local"``, or None where a fork of the pool could not be the very
        process a cold start makes (another command, a shell, Popen options,
        internal SSL)."""
        if self.internal_ssl or self.shell_cmd or self.popen_kwargs:
            return None
        if len(self.cmd) < 3 or list(self.cmd[1:3]) != WORKSPACE_MODULE:
            return None
        if os.path.realpath(self.cmd[0]) != os.path.realpath(sys.executable):
            return None
        return WARM_KEY

    async def start_warm(self, member: Member):
        """``LocalProcessSpawner.start`` with a pool member instead of Popen: the
        same command, environment (this server's token and OAuth client), home
        and port; the member's pid becomes this spawner's."""
        pool = hub_pool(self.user.settings)
        if pool is None or not isinstance(pool.provider, LocalWarmProvider):
            raise RuntimeError("no local warm pool")
        if self.port == 0:
            self.port = random_port()
        env = self.get_env()
        cmd = [*self.cmd, *self.get_args()]
        self.log.info("Spawning %s (warm: member %s)", shlex.join(cmd), member.id)
        claim = {"argv": cmd, "env": env, "cwd": self.home_dir, "umask": _umask()}
        self.proc = None  # poll() by pid (a Popen of an earlier cold start is done)
        self.pid = await pool.provider.claim(member, claim)
        return (self.ip or "127.0.0.1", self.port)

    def make_preexec_fn(self, name):
        home = self.home_dir

        def preexec():
            os.chdir(home)

        return preexec

    def user_env(self, env):
        env["USER"] = self.user.name
        env["HOME"] = self.home_dir
        env.setdefault("SHELL", "/bin/bash")
        return env

    def move_certs(self, paths):
        """Internal SSL certificates stay where the hub wrote them."""
        return paths

    def seed_lab_settings(self) -> None:
        """First start: JupyterLab settings a platform wants by default, written
        once into the user's settings so the user may change them later."""
        for plugin, values in LAB_DEFAULTS.items():
            path = Path(
                self.home_dir, ".jupyter/lab/user-settings", plugin + ".jupyterlab-settings"
            )
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(values, indent=2) + "\n")

    def apply_workspace_spec(self, spec: WorkspaceSpec) -> None:
        super().apply_workspace_spec(spec)
        if spec.gpus:
            self.log.info(
                "local backend: %s asks for %d GPU(s); the host's are shared",
                self._log_name,
                spec.gpus,
            )

    @staticmethod
    def link_place(mount: Mount) -> str:
        """Where a mount's link goes, relative to the home."""
        if mount.target.startswith("~/"):
            return posixpath.normpath(mount.target[2:])
        return mount.name

    @staticmethod
    def link_source(mount: Mount) -> str:
        return posixpath.join(mount.source, mount.sub_path) if mount.sub_path else mount.source

    def _inside_home(self, link: Path) -> bool:
        """The link's folder is the home or inside it (no link of the user's leads out)."""
        home = os.path.realpath(self.home_dir)
        parent = os.path.realpath(link.parent)
        return parent == home or parent.startswith(home + os.sep)

    def link_mounts(self) -> None:
        """Each mount as a link in the home (``link_place``) to its source folder;
        the links an earlier start made that this one does not want are removed."""
        spec = self.workspace_spec
        wanted = {self.link_place(m): m for m in (spec.mounts if spec else ())}
        for place in set(self._links or ()) - set(wanted):
            link = Path(self.home_dir, place)
            if link.is_symlink():
                link.unlink()
                self.log.info("Removed link %s of %s: no longer granted", place, self._log_name)
        made = []
        for place, mount in wanted.items():
            if place in ("", ".") or place.startswith(".."):
                self.log.warning("Not linking mount %s: %r is not in the home", mount.name, place)
                continue
            link, source = Path(self.home_dir, place), self.link_source(mount)
            link.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not self._inside_home(link):
                self.log.warning("Not linking mount %s: %s leads out of the home", mount.name, link)
                continue
            if link.is_symlink() and os.readlink(link) != source:
                link.unlink()
            if link.is_symlink():
                made.append(place)
                continue
            if link.exists():
                self.log.warning("Not linking mount %s: %s exists", mount.name, link)
                continue
            link.symlink_to(source, target_is_directory=True)
            made.append(place)
        self._links = sorted(made)

    @property
    def files_dir(self) -> str:
        name = user_dir_name(self.user.name)
        if self.name:
            name += f"--{safe_slug(self.name)}"
        return os.path.join(self.runtime_root, name)

    def write_files(self) -> None:
        """The spec's files, afresh each start: ``files_dir`` 0700, each file 0600."""
        self.remove_files()
        spec = self.workspace_spec
        if not spec or not spec.files:
            return
        os.makedirs(self.runtime_root, mode=0o700, exist_ok=True)
        os.mkdir(self.files_dir, mode=0o700)
        for f in spec.files:
            if "/" in f.name or f.name in ("", ".", ".."):
                raise ValueError(f"workspace file {f.name!r} is not a plain file name")
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
            fd = os.open(os.path.join(self.files_dir, f.name), flags, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(f.content)

    def remove_files(self) -> None:
        path = self.files_dir
        if os.path.islink(path):
            os.unlink(path)
        elif os.path.lexists(path):
            shutil.rmtree(path)

    def prepare_workspace(self) -> None:
        os.makedirs(self.home_dir, mode=0o700, exist_ok=True)
        self.seed_lab_settings()
        self.link_mounts()
        self.write_files()
        self.log.info("Starting local workspace for %s in %s", self.user.name, self.home_dir)

    async def run_post_stop_hook(self):
        try:
            await super().run_post_stop_hook()
        finally:
            self.remove_files()  # a grant's credentials never outlive the workspace

    def get_state(self):
        state = super().get_state()
        if self._links:
            state["labspace_links"] = list(self._links)
        return state

    def load_state(self, state):
        super().load_state(state)
        if "labspace_links" in state:
            self._links = list(state["labspace_links"])
