"""Spawn-to-ready: Labspace and plain JupyterHub side by side, in one run.

For each hub and scenario, every user's time runs from the POST that asks for a
server to the first 200 from ``/user/<name>/api/status`` through the proxy.
Scenarios: one user at a time (repeated), 10 users at once, a burst of 20.

Hubs, each on the ``local`` or ``docker`` backend (``<hub>/<backend>``):
- ``plain``: JupyterHub with upstream's spawner and defaults
  (``bench/plain_jupyterhub_config.py``): SimpleLocalProcessSpawner, or
  DockerSpawner with only what host networking needs (``bench/plain_docker.py``);
- ``labspace``: ``labspace up`` with ``backend.type`` set, nothing else;
- ``labspace-noiri``: the same, with the workspace's ``rfc3987_syntax`` import
  blocked: the effect of the workspace environment, reported apart from
  Labspace's own overhead. (jupyter_events → jsonschema[format-nongpl] imports
  it, ~0.9 s of CPU per workspace start; without it jsonschema skips IRI
  format checks.)

Writes ``bench/results/spawn.json`` and ``bench/results/spawn.md``.
Every wait is bounded (``--timeout``); every process started is stopped by PID.

    python bench/spawn.py [--repeat 5] [--users 10] [--burst 20] [--hubs plain/local,...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from harness import HubProcess, Managed, free_port  # noqa: E402

RESULTS = REPO / "bench" / "results"
PROXY = str(REPO / "node_modules" / ".bin" / "configurable-http-proxy")
IMAGE = "labspace/workspace:latest"
# a module that fails to import: the workspace then runs as if rfc3987_syntax
# were not installed (jsonschema skips its IRI format checks)
NOIRI_SHIM = "raise ImportError('rfc3987_syntax left out of this workspace')\n"


class PlainHub(Managed):
    """``jupyterhub -f bench/plain_jupyterhub_config.py`` on free ports."""

    name = "plain hub"

    def __init__(self, workdir: Path, token: str, backend: str):
        self.workdir = workdir
        self.log_path = workdir / "hub.log"
        self.port = free_port()
        self.env = {
            **os.environ,
            "BENCH_BACKEND": backend,
            "BENCH_IMAGE": IMAGE,
            "BENCH_PORT": str(self.port),
            "BENCH_HUB_PORT": str(free_port()),
            "BENCH_PROXY_API_PORT": str(free_port()),
            "BENCH_PROXY": PROXY,
            "BENCH_DIR": str(workdir),
            "BENCH_TOKEN": token,
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


def labspace_hub(workdir: Path, token: str, noiri: bool, backend: str) -> HubProcess:
    config = {
        "JupyterHub": {
            "services": [{"name": "bench", "api_token": token}],
            "load_roles": [
                {
                    "name": "bench-role",
                    "scopes": ["admin:users", "admin:servers", "access:servers", "list:users"],
                    "services": ["bench"],
                }
            ],
        }
    }
    if noiri:
        shim = workdir / "noiri"
        shim.mkdir(parents=True, exist_ok=True)
        (shim / "rfc3987_syntax.py").write_text(NOIRI_SHIM)
        config["Spawner"] = {"environment": {"PYTHONPATH": str(shim)}}
    settings = {
        "backend": {"type": backend, "image": IMAGE},
        "data_dir": str(workdir / "data"),
        "hub": {
            "port": free_port(),
            "hub_port": free_port(),
            "proxy_api_port": free_port(),
            "proxy_command": [PROXY],
            "config": config,
            "log_level": "WARNING",
        },
    }
    return HubProcess(workdir, settings)


async def spawn_one(client: httpx.AsyncClient, name: str, timeout: float) -> float | None:
    """Seconds from the spawn request to a 200 through the proxy; None if it failed."""
    t0 = time.monotonic()
    r = await client.post(f"hub/api/users/{name}/server")
    if r.status_code not in (201, 202):
        return None
    while time.monotonic() - t0 < timeout:
        status = await client.get(f"user/{name}/api/status", follow_redirects=False)
        if status.status_code == 200:
            return time.monotonic() - t0
        model = (await client.get(f"hub/api/users/{name}")).json()
        server = model["servers"].get("")
        if not server:  # the spawn failed and the hub gave up
            return None
        await asyncio.sleep(0.2)
    return None


async def stop_all(client: httpx.AsyncClient, names: list[str], timeout: float) -> None:
    await asyncio.gather(*(client.delete(f"hub/api/users/{n}/server") for n in names))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        models = await asyncio.gather(*(client.get(f"hub/api/users/{n}") for n in names))
        if all(not m.json()["servers"] for m in models):
            return
        await asyncio.sleep(0.5)


async def scenario(url: str, token: str, names: list[str], timeout: float) -> list[float | None]:
    headers = {"Authorization": f"token {token}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as client:
        for name in names:
            await client.post(f"hub/api/users/{name}")
        times = await asyncio.gather(*(spawn_one(client, n, timeout) for n in names))
        await stop_all(client, names, timeout)
        for name in names:
            await client.delete(f"hub/api/users/{name}")
    return list(times)


def summary(times: list[float | None]) -> dict:
    ok = sorted(t for t in times if t is not None)
    p95 = ok[min(len(ok) - 1, max(0, round(0.95 * len(ok)) - 1))] if ok else None
    return {
        "ready": len(ok),
        "total": len(times),
        "p50": statistics.median(ok) if ok else None,
        "p95": p95,
        "times": [round(t, 3) if t is not None else None for t in times],
    }


def run_hub(kind: str, args, token: str) -> dict:
    """``kind`` is ``<hub>/<backend>``, e.g. ``plain/local`` or ``labspace/docker``."""
    hub_kind, backend = kind.split("/")
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{hub_kind}-{backend}-"))
    hub = (
        PlainHub(workdir, token, backend)
        if hub_kind == "plain"
        else labspace_hub(workdir, token, hub_kind == "labspace-noiri", backend)
    )
    run = "x" + secrets.token_hex(3)  # user names of this run only
    used: list[str] = []
    hub.start()
    try:
        results = {}
        single: list[float | None] = []
        for i in range(args.repeat):
            used.append(f"{run}s{i}")
            single += asyncio.run(scenario(hub.url, token, [used[-1]], args.timeout))
        results["1 user"] = summary(single)
        for label, prefix, n in (
            (f"{args.users} at once", "c", args.users),
            (f"burst of {args.burst}", "b", args.burst),
        ):
            names = [f"{run}{prefix}{i}" for i in range(n)]
            used += names
            results[label] = summary(asyncio.run(scenario(hub.url, token, names, args.timeout)))
        return results
    finally:
        hub.stop()
        if backend == "docker":  # the home volumes of this run's users
            volumes = [f"labspace-home-{name}" for name in used]
            subprocess.run(
                ["docker", "volume", "rm", "-f", *volumes],
                capture_output=True,
                check=False,
                timeout=120,
            )


def fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}"


def markdown(report: dict) -> str:
    hubs = report["hubs"]
    scenarios = list(next(iter(hubs.values())))
    lines = [
        "# Spawn-to-ready: Labspace vs plain JupyterHub",
        "",
        f"{report['machine']}; {report['date']}. Seconds from the spawn request to a 200 "
        "through the proxy. Ratios are Labspace / plain, measured in the same run.",
        "",
        "| scenario | hub | ready | p50 s | p95 s | p50 ratio | p95 ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for sc in scenarios:
        for name, res in hubs.items():
            r = res[sc]
            base = hubs.get("plain/" + name.split("/")[1], {}).get(sc, {})
            plain = name.startswith("plain/")
            ratio50 = (
                f"{r['p50'] / base['p50']:.2f}"
                if base.get("p50") and r["p50"] and not plain
                else ""
            )
            ratio95 = (
                f"{r['p95'] / base['p95']:.2f}"
                if base.get("p95") and r["p95"] and not plain
                else ""
            )
            lines.append(
                f"| {sc} | {name} | {r['ready']}/{r['total']} | {fmt(r['p50'])} | "
                f"{fmt(r['p95'])} | {ratio50} | {ratio95} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="single-user runs (default 5)")
    parser.add_argument("--users", type=int, default=10, help="concurrent users (default 10)")
    parser.add_argument("--burst", type=int, default=20, help="burst size (default 20)")
    parser.add_argument("--timeout", type=float, default=180, help="per-user bound, seconds")
    parser.add_argument(
        "--hubs",
        default="plain/local,labspace/local,labspace-noiri/local,plain/docker,labspace/docker",
        help="<hub>/<backend> list; hubs: plain, labspace, labspace-noiri",
    )
    parser.add_argument("--out", default=str(RESULTS / "spawn"))
    args = parser.parse_args()
    token = secrets.token_hex(16)
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}",
        "hubs": {},
    }
    for kind in args.hubs.split(","):
        print(f"benchmarking {kind} ...", flush=True)
        report["hubs"][kind] = run_hub(kind, args, token)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
