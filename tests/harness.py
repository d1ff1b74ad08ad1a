"""Drive a real Labspace hub: a ``labspace up`` subprocess on free loopback ports.

``HubProcess`` starts and stops the hub (by PID, even on failure); ``HubAPI`` is a
thin REST client with helpers to create users and start and stop servers, as an
automation script would.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

# the console script a user runs, from the same environment as the tests
LABSPACE = [str(Path(sys.executable).with_name("labspace"))]
REPO = Path(__file__).resolve().parent.parent
BANNER = re.compile(
    r"Labspace is running at (\S+) — (?:log in as '([^']+)' with "
    r"(?:password (\S+)|the password from auth.admin_password|the password kept in (\S+))"
    r"|sign in with .+)"
)


TEST_SERVICE_SCOPES = [
    "admin:users",
    "admin:groups",
    "admin:servers",
    "access:servers",
    "read:users",
    "list:users",
    "tokens",
]


def hub_settings_for(data_dir: Path, proxy_command: list[str], token: str) -> dict[str, Any]:
    """Settings for a test hub: free loopback ports, ``data_dir``, the accounting,
    catalog and data services, idle culling and the warm pool off (tests about
    them turn them on), and a ``test``
    service whose ``token`` may manage users, groups, servers and tokens."""
    return {
        "data_dir": str(data_dir),
        "accounting": {"enabled": False},
        "catalog": {"enabled": False},
        "data": {"enabled": False},
        # no warm pool (`auto` is on for local); tests about it turn it on
        "backend": {"warm_pool": {"enabled": False}},
        "hub": {
            "ip": "127.0.0.1",
            "port": free_port(),
            "hub_port": free_port(),
            "proxy_api_port": free_port(),
            "proxy_command": proxy_command,
            "culling": {"enabled": False},  # tests about culling turn it on
            "config": {
                "JupyterHub": {
                    "services": [{"name": "test", "api_token": token}],
                    "load_roles": [
                        {
                            "name": "test-service",
                            "scopes": list(TEST_SERVICE_SCOPES),
                            "services": ["test"],
                        }
                    ],
                },
            },
        },
    }


def demo_app(app_id: str = "demo", *, python: str = sys.executable, launch=None, **fields):
    """A catalog definition of the bundled demo app (an HTML page and a websocket
    echo, ``labspace.extensions.demo_app``) on a unix socket; ``launch`` adds
    keys to its ``launch``, ``fields`` to the definition (``kind``, ``icon``...)."""
    return {
        "id": app_id,
        "version": "1",
        "title": app_id.replace("-", " ").title(),
        "kind": "proxied",
        **fields,
        "launch": {
            "command": [
                python,
                "-m",
                "labspace.extensions.demo_app",
                "--unix-socket={unix_socket}",
            ],
            "unix_socket": True,
            "ready_path": "/healthz",
            **(launch or {}),
        },
    }


def lab_datasets(root: Path, uid: int = 1000, gid: int = 100) -> list[dict[str, Any]]:
    """The issue's two host datasets under ``root`` (a ``data.roots`` entry), their
    folders made: ``genomes`` (a README, group ``lab-a`` may read) and
    ``lab-a-scratch`` (empty, owned by ``uid``:``gid`` when run as root, so a
    container's user may write; ``lab-a`` may write)."""
    genomes, scratch = root / "genomes", root / "lab-a-scratch"
    for folder in (genomes, scratch):
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o755)
    (genomes / "README.txt").write_text("reference genomes\n")
    (genomes / "README.txt").chmod(0o644)
    if os.geteuid() == 0:
        os.chown(scratch, uid, gid)
    scratch.chmod(0o775)
    return [
        {
            "id": "genomes",
            "title": "Reference genomes",
            "kind": "host",
            "source": str(genomes),
            "grants": [{"group": "lab-a", "level": "read"}],
        },
        {
            "id": "lab-a-scratch",
            "title": "Lab A scratch",
            "kind": "host",
            "source": str(scratch),
            "grants": [{"group": "lab-a", "level": "write"}],
        },
    ]


def service_client(hub_url: str, token: str, name: str) -> httpx.Client:
    """An HTTP client for ``services/<name>/api/`` of the hub at ``hub_url``
    with ``token`` (a person's or a service's)."""
    return httpx.Client(
        base_url=f"{hub_url}services/{name}/api/",
        headers={"Authorization": f"token {token}"},
        timeout=60,
    )


def service_answers(hub_url: str, token: str, name: str, path: str = "") -> bool:
    """Whether service ``name``'s API answers ``GET <path>`` with 200 (a service
    answers its API with 503 while it starts, after the hub is up)."""
    with service_client(hub_url, token, name) as client:
        return client.get(path or "openapi.json").status_code == 200


_handed_out: set[int] = set()


def free_port() -> int:
    """A free port on 127.0.0.1, never one this process handed out before (the
    kernel may give the same free port twice in a row: a hub's two ports clashed)."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port
    raise RuntimeError("no free port that was not handed out before (100 tries)")


def wait_for(predicate, timeout: float, interval: float = 0.25, what: str = "condition"):
    """Call ``predicate`` until it returns a truthy value or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def workspace_pids(root: Path) -> list[int]:
    """PIDs of processes whose working folder is ``root`` or below it: the local
    workspaces of a hub whose ``data_dir/users`` is ``root``."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cwd = os.readlink(f"/proc/{entry}/cwd").removesuffix(" (deleted)")
        except OSError:
            continue
        if cwd == str(root) or cwd.startswith(f"{root}/"):
            pids.append(int(entry))
    return pids


def server_pid(root: Path) -> int:
    """The one workspace server under ``root`` (a user's home): its other
    processes (kernels, jupyter_lsp's ``npm`` scan at start-up, which a start
    noticed within 30 ms may still see) are left out."""
    servers = []
    for pid in workspace_pids(root):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"labspace.singleuser" in argv or any(b"jupyterhub-singleuser" in a for a in argv):
            servers.append(pid)
    (pid,) = servers
    return pid


def outliving_workspaces(root: Path, grace: float = 15.0) -> list[int]:
    """``workspace_pids(root)`` still there ``grace`` seconds after their hub
    stopped. A kernel leaves on its own a moment after its server (ipykernel
    polls its parent every second), later on a loaded machine; what is still
    there after ``grace`` has really outlived its hub."""
    deadline = time.monotonic() + grace
    while (pids := workspace_pids(root)) and time.monotonic() < deadline:
        time.sleep(0.25)
    return pids


def environ(pid: int) -> dict[str, str]:
    """The environment process ``pid`` started with (``/proc/<pid>/environ``)."""
    raw = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
    return dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)


def server_environ(home: Path, server: str = "") -> dict[str, str]:
    """The environment of a local workspace's server ``server`` (``""``: the
    default one) whose home is ``home``: one of its processes (server or kernel)."""
    for pid in workspace_pids(home):
        try:
            env = environ(pid)
        except OSError:  # it just ended
            continue
        if env.get("JUPYTERHUB_SERVER_NAME", "") == server and "JUPYTERHUB_API_TOKEN" in env:
            return env
    raise AssertionError(f"no process of server {server!r} in {home}")


def run_python(code: str, env: dict[str, str], cwd: Path, timeout: float = 120) -> Any:
    """Run ``code`` with this Python (a local workspace's), ``env`` and ``cwd``,
    as the workspace's own code runs; it prints JSON on its last line, returned."""
    r = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def service_pid(hub: HubProcess, name: str) -> int:
    """The process of Labspace service ``name`` (``python -m labspace.services.<name>``)
    under ``hub``'s ``labspace up``."""
    import psutil

    module = f"labspace.services.{name}"
    for proc in psutil.Process(hub.proc.pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if module in proc.cmdline():
                return proc.pid
    raise AssertionError(f"no {name} service process under the hub")


@contextlib.contextmanager
def paused(pid: int):
    """Process ``pid`` stopped (SIGSTOP) for the block, then continued: its port
    still accepts connections and nothing answers (the worst case for a caller,
    which waits for its timeout); the hub does not restart a stopped service."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield pid
    finally:
        os.kill(pid, signal.SIGCONT)


class Managed:
    """A subprocess in a session of its own, logging to ``log_path``, waited for
    with ``ready()`` and stopped by PID: SIGTERM, then SIGKILL of its group."""

    name = "process"
    proc: subprocess.Popen | None = None
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def launch(self, cmd: list[str], cwd: Path, env: dict[str, str], timeout: float) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                cmd,
                cwd=cwd,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_for(self._ready, timeout, what=self.name)
        except (TimeoutError, RuntimeError):
            self.stop()
            raise

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(
                f"{self.name} exited with {self.proc.returncode}:\n{self.log()[-4000:]}"
            )
        return self.ready()

    def ready(self) -> bool:
        raise NotImplementedError

    def stop(self, timeout: float = 30) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        return self.proc.returncode


class HubProcess(Managed):
    """One ``labspace up`` run against a settings file in ``workdir``; stopping
    it (SIGTERM to the launcher) stops hub, proxy and workspaces."""

    def __init__(self, workdir: Path, settings: dict[str, Any], env: dict[str, str] | None = None):
        self.workdir = workdir
        self.settings = settings
        self.env = env or {}
        self.proc: subprocess.Popen | None = None
        self.log_path = workdir / f"hub-{secrets.token_hex(3)}.log"
        self.config_path = workdir / "labspace.yaml"

    @property
    def url(self) -> str:
        hub = self.settings.get("hub", {})
        return f"http://127.0.0.1:{hub['port']}{hub.get('base_url', '/')}"

    def start(self, timeout: float = 120) -> HubProcess:
        # a hub with both services takes 45-65 s on a loaded 2-core machine; a hub
        # that exits is reported at once (_ready), so a roomy bound costs nothing
        self.name = f"hub at {self.url}"
        # no warm pool unless a test asks for one (`auto` would start a fork
        # server in every local test hub)
        backend = self.settings.setdefault("backend", {})
        backend.setdefault("warm_pool", {}).setdefault("enabled", False)
        self.config_path.write_text(yaml.safe_dump(self.settings))
        env = {**os.environ, **self.env}
        env.pop("LABSPACE_CONFIG", None)
        self.launch([*LABSPACE, "up", "--config", str(self.config_path)], REPO, env, timeout)
        return self

    def ready(self) -> bool:
        return bool(BANNER.search(self.log()))

    @property
    def banner(self) -> re.Match:
        match = BANNER.search(self.log())
        assert match, self.log()[-2000:]
        return match

    @property
    def admin_password(self) -> str:
        """The generated admin password: printed on the start that made it, read
        from the file the banner names on later starts."""
        match = self.banner
        return match.group(3) or Path(match.group(4)).read_text().strip()


class HubAPI:
    """The hub REST API with a service token, plus workspace helpers."""

    def __init__(self, hub_url: str, token: str):
        self.hub_url = hub_url
        self.client = httpx.Client(
            base_url=hub_url, headers={"Authorization": f"token {token}"}, timeout=30
        )
        self.started: set[str] = set()

    def request(self, method: str, path: str, **kw) -> httpx.Response:
        return self.client.request(method, f"hub/api/{path.lstrip('/')}", **kw)

    def create_user(self, name: str) -> dict:
        r = self.request("POST", f"users/{name}")
        assert r.status_code == 201, r.text
        return r.json()

    def user(self, name: str) -> httpx.Response:
        return self.request("GET", f"users/{name}")

    def token(self, name: str, note: str = "test") -> str:
        """A new API token of user ``name`` (with all of that user's permissions)."""
        r = self.request("POST", f"users/{name}/tokens", json={"note": note})
        assert r.status_code == 201, r.text
        return r.json()["token"]

    def add_to_group(self, group: str, *users: str) -> None:
        """Put ``users`` in ``group``, creating the group if it is not there yet."""
        r = self.request("POST", f"groups/{group}", json={"users": list(users)})
        if r.status_code == 409:  # the group exists
            r = self.request("POST", f"groups/{group}/users", json={"users": list(users)})
        assert r.status_code in (200, 201), r.text

    def start_server(self, name: str, timeout: float = 90, body: dict | None = None) -> dict:
        """Start ``name``'s default server (with options ``body``) and wait until it
        is ready; returns its model."""
        r = self.request("POST", f"users/{name}/server", json=body)
        assert r.status_code in (201, 202), r.text
        self.started.add(name)

        def ready():
            server = self.user(name).json()["servers"].get("", {})
            return server if server.get("ready") else None

        return wait_for(ready, timeout, 0.5, what=f"{name}'s server")

    def stop_server(self, name: str, timeout: float = 60) -> None:
        r = self.request("DELETE", f"users/{name}/server")
        assert r.status_code in (202, 204), r.text
        wait_for(lambda: not self.user(name).json()["servers"], timeout, what=f"{name} stopped")
        self.started.discard(name)

    def stop_all(self) -> None:
        for name in list(self.started):
            with contextlib.suppress(AssertionError, TimeoutError, httpx.HTTPError):
                self.stop_server(name)

    def close(self) -> None:
        self.client.close()


def login(hub_url: str, username: str, password: str) -> httpx.Client:
    """Sign in through the login form, as a browser does; returns the session."""
    client = httpx.Client(base_url=hub_url, follow_redirects=True, timeout=30)
    page = client.get("hub/login")
    assert page.status_code == 200
    xsrf = client.cookies.get("_xsrf")
    r = client.post(
        "hub/login",
        data={"username": username, "password": password, "_xsrf": xsrf},
        follow_redirects=False,
    )
    assert r.status_code == 302, f"login as {username} failed: {r.status_code}"
    return client


def progress(hub_url: str, token: str, name: str, timeout: float = 120) -> list[dict]:
    """The events of ``GET .../server/progress`` for a start under way: asks
    until the start is pending, then reads the event stream to its end."""
    deadline = time.monotonic() + timeout
    headers = {"Authorization": f"token {token}"}
    with httpx.Client(base_url=hub_url, headers=headers, timeout=timeout) as client:
        while time.monotonic() < deadline:
            with client.stream("GET", f"hub/api/users/{name}/server/progress") as r:
                if r.status_code in (400, 404):  # not requested yet
                    time.sleep(0.01)
                    continue
                assert r.status_code == 200, r.read()
                assert r.headers["content-type"].startswith("text/event-stream")
                events = []
                for line in r.iter_lines():
                    if line.startswith("data:"):
                        events.append(json.loads(line.removeprefix("data:")))
                        if events[-1].get("ready") or events[-1].get("failed"):
                            break
                return events
    raise TimeoutError(f"{name}'s start never became pending")


@contextlib.contextmanager
def jupyter_server(home: Path, token: str, env: dict[str, str]):
    """A real jupyter-server with the apps extension, no hub (token auth), in
    ``home`` with ``env`` added to this process's environment; yields its URL
    and log file once ``/api/status`` answers, and stops it by PID."""
    port = free_port()
    env = {
        **os.environ,
        "HOME": str(home),
        "JUPYTER_CONFIG_DIR": str(home / ".jupyter"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        **env,
    }
    cmd = [
        sys.executable,
        "-m",
        "jupyter_server",
        "--no-browser",
        f"--port={port}",
        "--ServerApp.ip=127.0.0.1",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={home}",
        "--ServerApp.jpserver_extensions",
        "labspace.extensions.apps=True",
    ]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            status = httpx.get(url + "/api/status", timeout=2).status_code
        except httpx.HTTPError:
            return False
        return status in (200, 403)

    with open(home / "server.log", "wb") as log:
        proc = subprocess.Popen(cmd, env=env, cwd=home, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for(up, 120, what="jupyter-server")  # 30+ s on a loaded machine
            yield {"url": url, "home": home, "proc": proc, "log": home / "server.log"}
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
