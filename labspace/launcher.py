"""``labspace up``: run the hub in the foreground until Ctrl-C.

The hub runs as a child process (``python -m jupyterhub -f <packaged config>``);
this process validates the settings first, waits for ``/hub/health``, prints
where to log in, forwards SIGINT/SIGTERM and exits with the hub's status.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import httpx

from . import reference
from . import settings as settings_mod
from .hubconfig import ProxyNotFound, find_proxy
from .settings import Settings, SettingsError
from .state import State, StateError


class LaunchError(Exception):
    """Labspace cannot start; the message says why and what to do."""


@dataclass
class Prepared:
    settings: Settings
    state: State
    wrote_default: Path | None


def prepare(config: str | None) -> Prepared:
    """Validate everything a start needs, writing a default settings file if
    the default path has none."""
    path = settings_mod.config_path(config)
    wrote = None
    if config is None and not os.environ.get(settings_mod.CONFIG_ENV) and not path.exists():
        path.write_text(reference.default_yaml())
        wrote = path
    try:
        settings = settings_mod.load(path)
        state = State(settings)
        state.prepare()
        find_proxy(settings)
    except SettingsError as e:
        raise LaunchError(e.report()) from None
    except (StateError, ProxyNotFound) as e:
        raise LaunchError(f"Labspace cannot start: {e}") from None
    return Prepared(settings, state, wrote)


def public_url(settings: Settings, port: int | None = None) -> str:
    """Where users reach Labspace: ``hub.public_url``, else the proxy's address."""
    return settings.get("hub.public_url") or local_url(settings, port)


def local_url(settings: Settings, port: int | None = None) -> str:
    """The proxy's address as seen from this machine."""
    ip = settings.get("hub.ip")
    host = "127.0.0.1" if ip in ("", "0.0.0.0", "::") else ip  # noqa: S104
    return f"http://{host}:{port or settings.get('hub.port')}{settings.get('hub.base_url')}"


def hub_command(port: int | None) -> list[str]:
    config_file = resources.files("labspace").joinpath("jupyterhub_config.py")
    cmd = [sys.executable, "-m", "jupyterhub", "-f", str(config_file)]
    if port:
        cmd.append(f"--JupyterHub.port={port}")
    return cmd


def wait_healthy(proc: subprocess.Popen, url: str, timeout: float) -> bool:
    """Poll ``url`` until it answers 200; False if the hub exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    return False


def run(prepared: Prepared, port: int | None, echo) -> int:
    """Start the hub, announce it, and wait for it to end; returns its status."""
    settings, state = prepared.settings, prepared.state
    env = dict(os.environ)
    env[settings_mod.CONFIG_ENV] = str(settings.source)
    # a session of its own, so a terminal's Ctrl-C reaches it once, through us
    proc = subprocess.Popen(hub_command(port), env=env, cwd=state.data_dir, start_new_session=True)

    def forward(signum, _frame):
        if proc.poll() is None:
            proc.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    url = public_url(settings, port)
    # the hub itself first, so the proxy is not asked before it has a route
    hub_health = f"http://127.0.0.1:{settings.get('hub.hub_port')}{settings.get('hub.base_url')}"
    if wait_healthy(proc, hub_health + "hub/health", timeout=120) and wait_healthy(
        proc, local_url(settings, port) + "hub/health", timeout=30
    ):
        admin = settings.get("hub.admin_users")[0]
        if state.admin_password_generated:
            how = f"password {state.admin_password()}"
            where = f"(kept in {state.secrets_dir / 'admin-password'})"
        else:
            how = "the password from auth.admin_password"
            where = ""
        echo(f"Labspace is running at {url} — log in as '{admin}' with {how} {where}".rstrip())
        echo("Press Ctrl-C to stop.")
    elif proc.poll() is None:
        echo(f"Labspace has not answered at {url}hub/health after 120 s; see the log above.")
    return proc.wait()
