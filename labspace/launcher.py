"""``labspace up``: run the hub in the foreground until Ctrl-C.

The hub runs as a child process (``python -m jupyterhub -f <packaged config>``);
this process validates the settings first, waits for ``/hub/health``, prints
where to log in, forwards SIGINT/SIGTERM and exits with the hub's status.
"""

from __future__ import annotations

import os
import signal
import socket
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
from .state import State, StateError, private_umask


class LaunchError(Exception):
    """Labspace cannot start; the message says why and what to do."""


@dataclass
class Prepared:
    settings: Settings
    state: State
    wrote_default: Path | None
    env: dict[str, str]  # the hub's environment: where its settings are, any --port


PORT_ENV = settings_mod.env_name("hub.port")


def busy_ports(settings: Settings) -> list[str]:
    """Problem lines for the ports Labspace needs that something else holds."""
    wanted = [
        ("hub.port", settings.get("hub.ip") or "0.0.0.0", settings.get("hub.port")),  # noqa: S104
        ("hub.hub_port", "127.0.0.1", settings.get("hub.hub_port")),
        ("hub.proxy_api_port", "127.0.0.1", settings.get("hub.proxy_api_port")),
    ]
    for name in settings_mod.SERVICE_SECTIONS:  # the services the hub will start
        if settings.get(f"{name}.enabled"):
            wanted.append((f"{name}.port", "127.0.0.1", settings.get(f"{name}.port")))
    problems = []
    for key, ip, port in wanted:
        family = socket.AF_INET6 if ":" in ip else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((ip, port))
            except OSError as e:
                tip = "labspace up --port N" if key == "hub.port" else f"set {key}"
                problems.append(
                    f"{key}: {ip}:{port} is not free ({e.strerror}); stop what uses it "
                    f"or choose another port ({tip})"
                )
    return problems


def prepare(config: str | None, port: int | None = None) -> Prepared:
    """Validate everything a start needs, writing a default settings file if
    the default path has none. ``port`` overrides ``hub.port``."""
    env = dict(os.environ)
    if port:
        env[PORT_ENV] = str(port)
    path = settings_mod.config_path(config)
    wrote = None
    if config is None and not env.get(settings_mod.CONFIG_ENV) and not path.exists():
        try:
            path.write_text(reference.default_yaml())
        except OSError as e:
            raise LaunchError(
                f"{path}: no settings file, and none can be written here: {e.strerror} "
                "(run from a writable folder, or pass --config FILE)"
            ) from None
        wrote = path
    try:
        settings = settings_mod.load(path, environ=env)
        state = State(settings)
        state.prepare()
        if settings.get("auth.type") == "shared-password":
            state.admin_password()  # made here, so the banner knows it is new
        find_proxy(settings)
        busy = busy_ports(settings)
        if busy:
            raise SettingsError(str(settings.source), busy)
    except SettingsError as e:
        raise LaunchError(e.report()) from None
    except (StateError, ProxyNotFound) as e:
        raise LaunchError(f"Labspace cannot start: {e}") from None
    env[settings_mod.CONFIG_ENV] = str(settings.source)
    return Prepared(settings, state, wrote, env)


def hub_command() -> list[str]:
    config_file = resources.files("labspace").joinpath("jupyterhub_config.py")
    return [sys.executable, "-m", "jupyterhub", "-f", str(config_file)]


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


def banner(settings: Settings, state: State) -> str:
    """The line that says where Labspace runs and how to get in."""
    url = settings.public_url()
    if settings.get("auth.type") != "shared-password":
        from .auth import display_name

        return f"Labspace is running at {url} — sign in with {display_name(settings.get('auth'))}"
    admin = settings.get("hub.admin_users")[0]
    if not state.admin_password_generated:
        how = "the password from auth.admin_password"
    elif state.admin_password_created:
        # shown once, on the start that made it; later starts say where it is
        how = f"password {state.admin_password()} (kept in {state.admin_password_file})"
    else:
        how = f"the password kept in {state.admin_password_file}"
    return f"Labspace is running at {url} — log in as '{admin}' with {how}"


def run(prepared: Prepared, echo) -> int:
    """Start the hub, announce it, and wait for it to end; returns its status."""
    settings, state = prepared.settings, prepared.state
    private_umask()  # the hub inherits it (and sets it again in its config)
    # a session of its own, so a terminal's Ctrl-C reaches it once, through us
    proc = subprocess.Popen(
        hub_command(), env=prepared.env, cwd=state.data_dir, start_new_session=True
    )

    def forward(signum, _frame):
        if proc.poll() is None:
            proc.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    url = settings.public_url()
    # the hub itself first, so the proxy is not asked before it has a route
    hub_health = f"http://127.0.0.1:{settings.get('hub.hub_port')}{settings.get('hub.base_url')}"
    if wait_healthy(proc, hub_health + "hub/health", timeout=120) and wait_healthy(
        proc, settings.local_url() + "hub/health", timeout=30
    ):
        echo(banner(settings, state))
        echo("Press Ctrl-C to stop.")
    elif proc.poll() is None:
        echo(f"Labspace has not answered at {url}hub/health after 120 s; see the log above.")
    return proc.wait()
