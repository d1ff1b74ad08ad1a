"""``labspace up``: run the hub in the foreground until Ctrl-C.

The hub is a child process: JupyterHub with the packaged config. It is started
first (``Hub``) and spends its first seconds importing JupyterHub while this
process checks the settings, the data folder, the proxy and the ports; only
then does it get its go (environment and folder, on a pipe) and read its
config. A check costs the start no time, and a failed one leaves nothing
behind. This process then waits for ``/hub/health``, prints where to log in,
forwards SIGINT/SIGTERM and exits with the hub's status.

The hub runs with SIGINT at its default even where this process was started
with SIGINT ignored (a service wrapper, a script's ``&``): the services the hub
starts inherit it, so JupyterHub's SIGINT stops them at once.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import NoReturn

from . import rules
from . import settings as settings_mod
from .settings import Settings, SettingsError
from .state import State, StateError, private_umask


class LaunchError(Exception):
    """Labspace cannot start; the message says why and what to do."""


class Hub:
    """The hub's process, started at once: it imports JupyterHub and waits for
    ``go``; ``cancel`` ends it if it never got one (a failed check)."""

    def __init__(self) -> None:
        # -P: the current folder is not searched for modules (it may hold another
        # labspace); a session of its own, so a terminal's Ctrl-C reaches it once
        self.proc = subprocess.Popen(
            [sys.executable, "-P", "-m", "labspace.launcher"],
            stdin=subprocess.PIPE,
            start_new_session=True,
        )
        self.released = False

    def go(self, env: dict[str, str], cwd: Path) -> subprocess.Popen:
        message = {"env": env, "cwd": str(cwd), "config": config_file()}
        self.released = True
        try:
            self.proc.stdin.write(json.dumps(message).encode())
            self.proc.stdin.close()
        except BrokenPipeError:  # it has died; proc.wait() tells the status
            pass
        return self.proc

    def signal(self, signum: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)

    def stop_services(self) -> None:
        """SIGTERM to each Labspace service the hub runs, all at once: JupyterHub
        stops its services one after another (each up to 2 s), and finds these
        already gone. Other children (the proxy, workspaces) are the hub's to stop."""
        pid = self.proc.pid
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:  # not Linux, or the hub is gone
            return
        for child in children:
            try:
                if SERVICE_MODULE in Path(f"/proc/{child}/cmdline").read_bytes():
                    os.kill(int(child), signal.SIGTERM)
            except OSError:  # it has exited meanwhile
                continue

    def cancel(self) -> None:
        if self.released:
            return
        if self.proc.poll() is None:
            self.proc.kill()  # still importing: nothing of its own to clean up
        self.proc.wait()
        self.proc.stdin.close()


SERVICE_MODULE = b"-m\0labspace.services."  # how the hub starts each service


def config_file() -> str:
    return str(resources.files("labspace").joinpath("jupyterhub_config.py"))


def hub_main() -> None:
    """The hub's process (``python -m labspace.launcher``): import JupyterHub,
    then wait for the launcher's go; run the hub with it, or end quietly."""
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if it came ignored
    try:
        from labspace.hubapp import (
            LabspaceHub,
        )  # JupyterHub: the long part, while the launcher checks

        message = sys.stdin.buffer.read()
    except KeyboardInterrupt:
        raise SystemExit(128 + signal.SIGINT) from None
    if not message:
        return  # the launcher found a problem, or went away
    go = json.loads(message)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.environ.clear()
    os.environ.update(go["env"])
    os.chdir(go["cwd"])
    private_umask()
    LabspaceHub.launch_instance(["-f", go["config"]])
    end(0)  # JupyterHub has stopped its services and proxy, and committed


def end(status: int) -> NoReturn:
    """Exit now, with our work done: Python's own teardown collects the garbage
    of every module loaded (JupyterHub, SQLAlchemy, jsonschema...), which takes
    seconds on a busy machine and is all a stop waits for."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


@dataclass
class Prepared:
    settings: Settings
    state: State
    wrote_default: Path | None
    env: dict[str, str]  # the hub's environment: where its settings are, any --port
    hub: Hub | None = None  # started early by ``labspace up``; run() starts one if not


PORT_ENV = settings_mod.env_name("hub.port")


def busy_ports(settings: Settings) -> list[str]:
    """Problem lines for the ports Labspace needs that something else holds."""
    problems = []
    for key, ip, port in rules.ports(settings.values):
        family = socket.AF_INET6 if ":" in ip else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((ip, port))
            except OSError as e:
                if e.errno == errno.EACCES and port < 1024:
                    problems.append(
                        f"{key}: port {port} needs root or the CAP_NET_BIND_SERVICE "
                        "capability (the unit `labspace install-service` writes grants it; "
                        "see docs/how-to/https.md), or choose a port above 1023"
                    )
                    continue
                tip = "labspace up --port N" if key == "hub.port" else f"set {key}"
                problems.append(
                    f"{key}: {ip}:{port} is not free ({e.strerror}); stop what uses it "
                    f"or choose another port ({tip})"
                )
    return problems


def write_default(path: Path) -> Path:
    from . import reference

    try:
        path.write_text(reference.default_yaml())
    except OSError as e:
        raise LaunchError(
            f"{path}: no settings file, and none can be written here: {e.strerror} "
            "(run from a writable folder, or pass --config FILE)"
        ) from None
    return path


def prepare(config: str | None, port: int | None = None) -> Prepared:
    """Validate everything a start needs, writing a default settings file if
    the default path has none. ``port`` overrides ``hub.port``."""
    from . import needs
    from .hubconfig import ProxyNotFound, proxy_command

    env = dict(os.environ)
    # the hub runs programs of this environment by name (JupyterHub's upgrade_db
    # runs `alembic`): its bin folder first, as if the venv were activated
    bindir = str(Path(sys.executable).parent)
    rest = [p for p in env.get("PATH", os.defpath).split(os.pathsep) if p and p != bindir]
    env["PATH"] = os.pathsep.join([bindir, *rest])
    if port:
        env[PORT_ENV] = str(port)
    path = settings_mod.config_path(config)
    wrote = None
    if config is None and not env.get(settings_mod.CONFIG_ENV) and not path.exists():
        wrote = write_default(path)
    try:
        settings = settings_mod.load(path, environ=env)
        # what is not installed, before anything is made
        lacking = needs.missing(settings)
        if lacking:
            raise SettingsError(str(settings.source), lacking)
        proxy_command(settings)  # none to find when the proxy runs apart
        state = State(settings, environ=env)
        state.prepare()
        if settings.get("auth.type") == "shared-password":
            state.admin_password()  # made here, so the banner knows it is new
        busy = busy_ports(settings)
        if busy:
            raise SettingsError(str(settings.source), busy)
    except SettingsError as e:
        raise LaunchError(e.report()) from None
    except (StateError, ProxyNotFound) as e:
        raise LaunchError(f"Labspace cannot start: {e}") from None
    env[settings_mod.CONFIG_ENV] = str(settings.source)
    return Prepared(settings, state, wrote, env)


def wait_healthy(proc: subprocess.Popen, url: str, timeout: float) -> bool:
    """Poll ``url`` until it answers 200; False if the hub exits first."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    return False


def where(settings: Settings) -> str:
    """Where users reach Labspace: its public URL; with the proxy run apart
    (``hub.proxy_api_url``) and no ``hub.public_url``, the hub behind that proxy."""
    if rules.proxy_runs_apart(settings.values) and not settings.get("hub.public_url"):
        api = settings.get("hub.proxy_api_url")
        return (
            f"{settings.hub_local_url()} behind the proxy whose API is {api} "
            "(set hub.public_url to the address users open)"
        )
    return settings.public_url()


def banner(settings: Settings, state: State) -> str:
    """The line that says where Labspace runs and how to get in."""
    url = where(settings)
    if settings.get("auth.type") != "shared-password":
        from .auth import display_name

        return f"Labspace is running at {url} — sign in with {display_name(settings.get('auth'))}"
    admin = settings.get("hub.admin_users")[0]
    if not state.admin_password_generated:
        how = "the password from auth.admin_password"
    elif state.admin_password_created and not rules.proxy_runs_apart(settings.values):
        # shown once, on the start that made it; later starts say where it is
        # (never with the chart's proxy apart: a pod's log is kept and shared)
        how = f"password {state.admin_password()} (kept in {state.admin_password_file})"
    else:
        how = f"the password kept in {state.admin_password_file}"
    return f"Labspace is running at {url} — log in as '{admin}' with {how}"


def run(prepared: Prepared, echo) -> NoReturn:
    """Start the hub, announce it, wait for it to end, and exit with its status."""
    settings, state = prepared.settings, prepared.state
    private_umask()  # the hub sets it again in its config
    hub = prepared.hub or Hub()

    def forward(signum, _frame):
        hub.signal(signum)
        hub.stop_services()

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    proc = hub.go(prepared.env, state.data_dir)
    # the hub itself first, so the proxy is not asked before it has a route;
    # a proxy run apart (hub.proxy_api_url) is not ours to ask, nor to front
    apart = rules.proxy_runs_apart(settings.values)
    urls = (settings.hub_local_url() + "health",)
    if not apart:
        urls += (settings.local_url() + "hub/health",)
    if not all(wait_healthy(proc, u, timeout=120) for u in urls) and proc.poll() is None:
        # a busy machine: say so, and keep waiting for as long as the hub runs
        echo(f"Labspace has not answered at {urls[-1]} after 120 s; still waiting (see the log).")
    from . import tls

    front = None
    if all(wait_healthy(proc, u, timeout=math.inf) for u in urls):
        front = None if apart else tls.start_front(settings, state)
        if front is None or not front.failed:
            echo(banner(settings, state))
            echo("Press Ctrl-C to stop.")
    status = proc.wait()
    try:
        tls.stop_front(front)
    except SystemExit as e:  # Caddy failed: status 1, so a service manager restarts us
        status = e.code if isinstance(e.code, int) else 1
    end(status)


if __name__ == "__main__":
    hub_main()
