"""The embedded default backend: each workspace is a local process.

Unlike JupyterHub's ``LocalProcessSpawner`` it needs no system users and no root:
every workspace runs as the hub's own OS user, with its home in
``<home_root>/<safe name>``. Workspaces are therefore not isolated from each
other; use the docker or kubernetes backend where users must be kept apart.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from jupyterhub.spawner import LocalProcessSpawner
from traitlets import default

from labspace.profiles import WorkspaceSpec

from .mixin import LabspaceSpawnerMixin

# JupyterLab settings every new home starts with: no prompt to fetch news from the
# internet (research networks often have none)
LAB_DEFAULTS = {"@jupyterlab/apputils-extension/notification": {"fetchNews": "false"}}


class LabspaceLocalSpawner(LabspaceSpawnerMixin, LocalProcessSpawner):
    """Run each workspace as a local process of the hub's OS user.

    From a profile it applies the environment and reports CPU and memory limits
    to the workspace (``CPU_LIMIT``, ``MEM_LIMIT``, shown by resource monitors),
    but cannot enforce them: that needs the docker or kubernetes backend. GPUs
    are whatever the host has. Mounts become links in the home folder
    (``~/<mount name>``), and read-only is not enforced.
    """

    @default("cmd")
    def _default_cmd(self):
        # the hub's own interpreter, so workspaces find jupyterhub-singleuser
        # without relying on PATH
        return [sys.executable, "-m", "jupyterhub.singleuser"]

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

    def link_mounts(self) -> None:
        """Each mount as a link ``~/<name>`` to its source folder."""
        spec = self.workspace_spec
        for mount in spec.mounts if spec else ():
            link = Path(self.home_dir, mount.name)
            if link.is_symlink() and os.readlink(link) == mount.source:
                continue
            if link.is_symlink():
                link.unlink()
            if link.exists():
                self.log.warning("Not linking mount %s: %s exists", mount.name, link)
                continue
            link.symlink_to(mount.source, target_is_directory=True)

    def prepare_workspace(self) -> None:
        os.makedirs(self.home_dir, mode=0o700, exist_ok=True)
        self.seed_lab_settings()
        self.link_mounts()
        self.log.info("Starting local workspace for %s in %s", self.user.name, self.home_dir)
