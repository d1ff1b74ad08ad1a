"""The hubs the spawn benchmarks compare, all up at once (``<hub>/<backend>``).

- ``plain``: JupyterHub with upstream's spawner and defaults
  (``bench/plain_jupyterhub_config.py``): SimpleLocalProcessSpawner, or
  DockerSpawner with only what host networking needs (``bench/plain_docker.py``),
  and the dummy authenticator with a password (for the browser);
- ``labspace``: ``labspace up`` with ``backend.type`` set and a user password;
  everything else its defaults (the accounting, catalog and data services on);
- ``labspace-warm``: the same with ``backend.warm_pool`` on, ``size`` members
  (big enough for the largest scenario);
- ``labspace-noiri`` (on request): ``labspace`` with the workspace's
  ``rfc3987_syntax`` import blocked (the environment's ~0.9 s import).

``BenchHub`` gives each the same handles: URL, service token, user password,
home of a user (local), and, for a warm hub, the pool's state from
``/hub/metrics``. Every process started is stopped by PID.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from harness import HubProcess, Managed, free_port  # noqa: E402

PROXY = str(REPO / "node_modules" / ".bin" / "configurable-http-proxy")
IMAGE = "labspace/workspace:latest"
NOIRI_SHIM = "raise ImportError('rfc3987_syntax left out of this workspace')\n"
SCOPES = ["admin:users", "admin:servers", "access:servers", "list:users", "read:metrics"]
KINDS = ("plain", "labspace", "labspace-warm", "labspace-noiri")


class PlainHub(Managed):
    """``jupyterhub -f bench/plain_jupyterhub_config.py`` on free ports."""

    name = "plain hub"

    def __init__(self, workdir: Path, token: str, password: str, backend: str):
        self.workdir = workdir
        self.log_path = workdir / "hub.log"
        self.port = free_port()
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("LABSPACE_", "BENCH_"))},
            "BENCH_BACKEND": backend,
            "BENCH_IMAGE": IMAGE,
            "BENCH_PORT": str(self.port),
            "BENCH_HUB_PORT": str(free_port()),
            "BENCH_PROXY_API_PORT": str(free_port()),
            "BENCH_PROXY": PROXY,
            "BENCH_DIR": str(workdir),
            "BENCH_TOKEN": token,
            "BENCH_PASSWORD": password,
            "CONFIGPROXY_AUTH_TOKEN": secrets.token_hex(16),
        }
        self.url = f"http://127.0.0.1:{self.port}/"

    def start(self) -> PlainHub:
        (self.workdir / "users").mkdir(parents=True, exist_ok=True)
        config = str(REPO / "bench" / "plain_jupyterhub_config.py")
        self.launch([sys.executable, "-m", "jupyterhub", "-f", config], self.workdir, self.env, 60)
        return self

    def ready(self) -> bool:
        try:
            return httpx.get(self.url + "hub/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False


def labspace_settings(
    workdir: Path, token: str, password: str, backend: str, warm: int = 0, noiri: bool = False
) -> dict:
    """``labspace.yaml`` of a Labspace hub under test; ``warm``: pool size (0: off)."""
    config: dict = {
        "JupyterHub": {
            "services": [{"name": "bench", "api_token": token}],
            "load_roles": [{"name": "bench-role", "scopes": SCOPES, "services": ["bench"]}],
        }
    }
    if noiri:
        shim = workdir / "noiri"
        shim.mkdir(parents=True, exist_ok=True)
        (shim / "rfc3987_syntax.py").write_text(NOIRI_SHIM)
        config["Spawner"] = {"environment": {"PYTHONPATH": str(shim)}}
    back: dict = {"type": backend, "image": IMAGE}
    # explicit either way (the default, auto, is on for the local backend)
    back["warm_pool"] = (
        {"enabled": True, "size": warm, "refill_concurrency": 2} if warm else {"enabled": False}
    )
    return {
        "backend": back,
        "data_dir": str(workdir / "data"),
        "auth": {"user_password": password},
        # the services on, as shipped, each on a port of its own (hubs run side by side)
        **{name: {"port": free_port()} for name in ("accounting", "catalog", "data")},
        "hub": {
            "ip": "127.0.0.1",
            "port": free_port(),
            "hub_port": free_port(),
            "proxy_api_port": free_port(),
            "proxy_command": [PROXY],
            "config": config,
            "log_level": "INFO",
        },
    }


class BenchHub:
    """One hub under test: ``kind`` (plain, labspace, labspace-warm...) on ``backend``."""

    def __init__(self, kind: str, backend: str, pool_size: int = 20):
        self.kind, self.backend = kind, backend
        self.label = f"{kind}/{backend}"
        self.workdir = Path(tempfile.mkdtemp(prefix=f"bench-{kind}-{backend}-"))
        self.token = secrets.token_hex(16)
        self.password = secrets.token_urlsafe(12)
        self.warm = kind == "labspace-warm"
        if kind == "plain":
            self.proc: Managed = PlainHub(self.workdir, self.token, self.password, backend)
            self.home_root = self.workdir / "users"
        else:
            settings = labspace_settings(
                self.workdir,
                self.token,
                self.password,
                backend,
                warm=pool_size if self.warm else 0,
                noiri=kind == "labspace-noiri",
            )
            self.proc = HubProcess(self.workdir, settings)
            self.home_root = self.workdir / "data" / "users"
        self.used: list[str] = []

    @property
    def code(self) -> str:
        """A letter per kind for user names: two Labspace hubs on one Docker
        daemon must not share a container or home volume name."""
        return {"plain": "p", "labspace": "l", "labspace-warm": "w"}.get(self.kind, "n")

    @property
    def url(self) -> str:
        return self.proc.url

    @property
    def pid(self) -> int:
        return self.proc.proc.pid

    def start(self) -> BenchHub:
        if isinstance(self.proc, HubProcess):
            self.proc.start(timeout=180)
        else:
            self.proc.start()
        return self

    def log(self) -> str:
        return self.proc.log()

    def home(self, name: str) -> str:
        return str(self.home_root / name) if self.backend == "local" else ""

    def client(self, **kw) -> httpx.AsyncClient:
        headers = {"Authorization": f"token {self.token}"}
        return httpx.AsyncClient(base_url=self.url, headers=headers, **kw)

    def pool(self) -> dict | None:
        """The warm pool from ``/hub/metrics``: ready, making, size, totals; None if none."""
        if not self.warm:
            return None
        try:
            r = httpx.get(
                self.url + "hub/metrics",
                headers={"Authorization": f"token {self.token}"},
                timeout=10,
            )
        except httpx.HTTPError:
            return None
        return parse_pool_metrics(r.text) if r.status_code == 200 else None

    def wait_pool_full(self, timeout: float) -> tuple[bool, float]:
        """Wait (bounded) until the pool has ``size`` ready members and makes none;
        (full, seconds waited)."""
        t0 = time.monotonic()
        if not self.warm:
            return True, 0.0
        while time.monotonic() - t0 < timeout:
            p = self.pool()
            if p and p["size"] and p["ready"] >= p["size"] and not p["making"]:
                return True, time.monotonic() - t0
            time.sleep(0.5)  # a scrape costs the hub ~30 ms
        return False, time.monotonic() - t0

    def stop(self) -> None:
        self.proc.stop()
        if self.backend == "docker" and self.used:  # this run's users' home volumes
            prefix = "bench-plain" if self.kind == "plain" else "labspace"
            volumes = [f"{prefix}-home-{n}" for n in self.used] + [
                f"labspace-home-{n}" for n in self.used
            ]
            subprocess.run(
                ["docker", "volume", "rm", "-f", *volumes],
                capture_output=True,
                check=False,
                timeout=120,
            )


METRIC = re.compile(r"^(labspace_hub_warm_pool\w*)\{([^}]*)\}\s+([0-9.eE+-]+)", re.M)


def parse_pool_metrics(text: str) -> dict:
    """Pool figures from a Prometheus exposition: ready, making and size summed
    over keys, and the totals (claimed, empty, made, failed, expired)."""
    out = {"ready": 0, "making": 0, "size": 0, "totals": {}}
    for name, labels, value in METRIC.findall(text):
        lab = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        v = float(value)
        if name == "labspace_hub_warm_pool_members" and lab.get("state") in ("ready", "making"):
            out[lab["state"]] += int(v)
        elif name == "labspace_hub_warm_pool_size":
            out["size"] += int(v)
        elif name == "labspace_hub_warm_pool_total" and "what" in lab:
            out["totals"][lab["what"]] = int(v)
    return out
