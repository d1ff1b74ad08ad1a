"""The embedded default backend: each workspace is a local process.

Unlike JupyterHub's ``LocalProcessSpawner`` it needs no system users and no root:
every workspace runs as the hub's own OS user, with its home in
``<home_root>/<safe name>``. Workspaces are therefore not isolated from each
other; use the docker or kubernetes backend where users must be kept apart.
"""

from __future__ import annotations

import json
import os
import posixpath
import shutil
import sys
from pathlib import Path

from jupyterhub.slugs import safe_slug
from jupyterhub.spawner import LocalProcessSpawner
from traitlets import Unicode, default, validate

from labspace.profiles import Mount, WorkspaceSpec
from labspace.state import user_dir_name

from .mixin import LabspaceSpawnerMixin

# JupyterLab settings every new home starts with: no prompt to fetch news from the
# internet (research networks often have none)
LAB_DEFAULTS = {"@jupyterlab/apputils-extension/notification": {"fetchNews": "false"}}


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
