"""Proxy latency: a small request to a proxied app, four ways, in one run.

A Labspace hub on the local backend runs one workspace whose catalog app is the
demo app (``labspace.extensions.demo_app``: a tiny JSON page and a websocket
echo). Each path is timed from the client, sequentially, with one kept-alive
connection per path, after a warm-up; the paths take turns request by request,
so other work on the machine weighs on all of them alike:

- ``hub``: hub proxy (configurable-http-proxy) → workspace (Labspace's proxy
  handler, authenticated) → app; what a user's browser does;
- ``workspace``: straight to the workspace's port → Labspace's proxy handler
  (``labspace.extensions.apps``, built on jupyter-server-proxy) → app;
- ``plain``: the same, through plain upstream: a jupyter-server started by this
  script with Labspace's workspace extension (``labspace.extensions.apps``) off,
  so jupyter-server-proxy's own handlers serve the demo app, registered with
  ``c.ServerProxy.servers`` and the same command (token in a header);
- ``direct``: straight to the app's port.

HTTP: ``GET /healthz`` (p50/p99 ms). Websocket: round-trip time of a 32-byte
message on one open socket. "Added" is hub − direct; the target is an added
p50 of at most 5 ms. "workspace" vs "plain" compares Labspace's proxy handler
with upstream jupyter-server-proxy's. Writes ``bench/results/proxy.json`` and ``.md``.

    python bench/proxy.py [--requests 500] [--messages 500]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import secrets
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from harness import HubAPI, HubProcess, Managed, free_port  # noqa: E402

RESULTS = REPO / "bench" / "results"
PROXY = str(REPO / "node_modules" / ".bin" / "configurable-http-proxy")
TARGET_MS = 5.0
DEMO = {
    "id": "demo",
    "title": "Demo",
    "launch": {
        "command": [sys.executable, "-m", "labspace.extensions.demo_app", "--port={port}"],
        "ready_path": "/healthz",
        "ready_status": 200,
        "timeout": 30,
    },
}


class PlainWorkspace(Managed):
    """A single-user jupyter-server as upstream ships it: the environment's
    ``jupyter_server_config.d`` as the workspace sees it, but with
    ``labspace.extensions.apps`` off (an explicit ``jpserver_extensions`` entry
    wins over config.d), so its link hook never turns jupyter_server_proxy's
    loader off; the demo app comes from ``c.ServerProxy.servers``."""

    name = "plain jupyter-server"

    def __init__(self, workdir: Path, token: str):
        self.workdir = workdir
        self.log_path = workdir / "plain-server.log"
        self.port = free_port()
        self.token = token
        self.url = f"http://127.0.0.1:{self.port}/user/plain/"

    def start(self) -> PlainWorkspace:
        config = {
            "ServerApp": {"jpserver_extensions": {"labspace.extensions.apps": False}},
            "ServerProxy": {"servers": {"demo": {"command": DEMO["launch"]["command"]}}},
        }
        config_file = self.workdir / "plain_server_config.json"
        config_file.write_text(json.dumps(config))
        (self.workdir / "plain-root").mkdir(exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "jupyter_server",
            f"--config={config_file}",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            "--ServerApp.base_url=/user/plain/",
            f"--ServerApp.root_dir={self.workdir / 'plain-root'}",
            # as the local spawner starts a workspace (spawners/local.py)
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ]
        if os.geteuid() == 0:
            cmd.append("--ServerApp.allow_root=True")
        env = {
            **os.environ,
            "JUPYTER_TOKEN": self.token,  # from the environment: not on a command line
            "JUPYTER_RUNTIME_DIR": str(self.workdir / "plain-runtime"),
        }
        env.pop("LABSPACE_CATALOG_APPS", None)
        self.launch(cmd, self.workdir, env, 60)
        return self

    @property
    def headers(self) -> dict:
        return {"Authorization": f"token {self.token}"}

    def ready(self) -> bool:
        try:
            r = httpx.get(self.url + "api/status", headers=self.headers, timeout=2)
        except httpx.HTTPError:
            return False
        return r.status_code == 200

    def check_upstream(self) -> dict:
        """Proof that upstream's handlers serve here, not Labspace's: its log
        loads jupyter_server_proxy and not labspace.extensions.apps, and
        Labspace's lifecycle API is absent."""
        log = self.log()
        loaded = "{} | extension was successfully loaded"
        checks = {
            "jupyter_server_proxy_loaded": loaded.format("jupyter_server_proxy") in log,
            "labspace_apps_loaded": loaded.format("labspace.extensions.apps") in log
            or "labspace-apps:" in log,
            "labspace_apps_api_status": httpx.get(
                self.url + "labspace-apps/api/apps", headers=self.headers, timeout=30
            ).status_code,
        }
        if (
            not checks["jupyter_server_proxy_loaded"]
            or checks["labspace_apps_loaded"]
            or checks["labspace_apps_api_status"] != 404
        ):
            raise RuntimeError(f"the plain server is not plain upstream: {checks}")
        return checks

    def stop(self, timeout: float = 30) -> int | None:
        """Stops the server, then any of its children (the demo app) still there."""
        children = []
        if self.proc is not None and self.proc.poll() is None:
            path = f"/proc/{self.proc.pid}/task/{self.proc.pid}/children"
            with contextlib.suppress(OSError):
                children = [int(p) for p in Path(path).read_text().split()]
        code = super().stop(timeout)
        for pid in children:  # only if the PID is still the demo app it started
            with contextlib.suppress(OSError):
                if b"demo_app" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, signal.SIGTERM)
        return code


def settings(tmp: Path, token: str) -> dict:
    return {
        "data_dir": str(tmp / "data"),
        "accounting": {"enabled": False},
        "catalog": {"enabled": False},
        "hub": {
            "ip": "127.0.0.1",
            "port": free_port(),
            "hub_port": free_port(),
            "proxy_api_port": free_port(),
            "proxy_command": [PROXY],
            "config": {
                "JupyterHub": {
                    "services": [{"name": "bench", "api_token": token}],
                    "load_roles": [
                        {
                            "name": "bench",
                            "scopes": ["admin:users", "admin:servers", "tokens"],
                            "services": ["bench"],
                        }
                    ],
                },
                "Spawner": {
                    "environment": {"LABSPACE_CATALOG_APPS": json.dumps([DEMO])},
                },
            },
        },
    }


def stats(samples: list[float]) -> dict:
    ms = sorted(s * 1000 for s in samples)
    return {
        "n": len(ms),
        "p50_ms": round(statistics.median(ms), 3),
        "p99_ms": round(ms[min(len(ms) - 1, int(len(ms) * 0.99))], 3),
        "mean_ms": round(statistics.fmean(ms), 3),
    }


def time_http(urls: dict[str, str], headers: dict, count: int, warmup: int) -> dict:
    """Interleaved: one request on each path in turn, so load from other work on
    the machine falls on every path alike."""
    samples: dict[str, list[float]] = {name: [] for name in urls}
    clients = {name: httpx.Client(headers=headers.get(name, {}), timeout=30) for name in urls}
    try:
        for i in range(warmup + count):
            for name, url in urls.items():
                start = time.perf_counter()
                r = clients[name].get(url)
                elapsed = time.perf_counter() - start
                if r.status_code != 200:
                    raise RuntimeError(f"{url}: {r.status_code} {r.text[:200]}")
                if i >= warmup:
                    samples[name].append(elapsed)
    finally:
        for client in clients.values():
            client.close()
    return {name: stats(s) for name, s in samples.items()}


async def time_ws(urls: dict[str, str], headers: dict, count: int, warmup: int) -> dict:
    """Websocket round trips, interleaved across the paths like time_http."""
    sockets = {}
    samples: dict[str, list[float]] = {name: [] for name in urls}
    message = "x" * 32
    try:
        for name, url in urls.items():
            request = HTTPRequest(url, headers=headers.get(name, {}), connect_timeout=30)
            sockets[name] = await websocket_connect(request)
        for i in range(warmup + count):
            for name, ws in sockets.items():
                start = time.perf_counter()
                await ws.write_message(message)
                reply = await asyncio.wait_for(ws.read_message(), 30)
                elapsed = time.perf_counter() - start
                if reply != message:
                    raise RuntimeError(f"{urls[name]}: echo returned {reply!r}")
                if i >= warmup:
                    samples[name].append(elapsed)
    finally:
        for ws in sockets.values():
            ws.close()
    return {name: stats(s) for name, s in samples.items()}


def workspace_port(hub: HubProcess, user: str) -> int:
    match = re.search(rf"http://127\.0\.0\.1:(\d+)/user/{user}/", hub.log())
    if not match:
        raise RuntimeError("the workspace's port is not in the hub's log")
    return int(match.group(1))


def labspace_paths(hub: HubProcess, api: HubAPI) -> tuple[dict, dict]:
    """The Labspace user's token, workspace started and demo app up: the URLs of
    the ``hub``, ``workspace`` and ``direct`` paths and their headers."""
    api.create_user("bench")
    r = api.request("POST", "users/bench/tokens", json={"note": "bench"})
    auth = {"Authorization": f"token {r.json()['token']}"}
    api.start_server("bench")
    base = hub.url.rstrip("/") + "/user/bench/"
    httpx.get(base + "demo/", headers=auth, timeout=60).raise_for_status()
    apps = httpx.get(base + "labspace-apps/api/apps", headers=auth, timeout=30).json()
    app_port = next(a["port"] for a in apps if a["id"] == "demo")
    ws_port = workspace_port(hub, "bench")
    urls = {
        "hub": base + "demo",
        "workspace": f"http://127.0.0.1:{ws_port}/user/bench/demo",
        "direct": f"http://127.0.0.1:{app_port}",
    }
    return urls, {"hub": auth, "workspace": auth}


def measure(args) -> dict:
    token = secrets.token_hex(16)
    with tempfile.TemporaryDirectory(prefix="labspace-bench-proxy-") as tmp:
        hub = HubProcess(Path(tmp), settings(Path(tmp), token))
        plain = PlainWorkspace(Path(tmp), secrets.token_hex(16))
        api = None
        try:
            plain.start()
            hub.start()
            api = HubAPI(hub.url, token)
            urls, headers = labspace_paths(hub, api)
            # upstream starts the app on the first request and waits until it answers
            httpx.get(plain.url + "demo/", headers=plain.headers, timeout=60).raise_for_status()
            checks = plain.check_upstream()
            urls = {
                "hub": urls["hub"],
                "workspace": urls["workspace"],
                "plain": plain.url + "demo",
                "direct": urls["direct"],
            }
            headers["plain"] = plain.headers
            ws_urls = {k: u.replace("http", "ws", 1) + "/echo" for k, u in urls.items()}
            http_urls = {k: u + "/healthz" for k, u in urls.items()}
            return {
                "http": time_http(http_urls, headers, args.requests, 50),
                "websocket": asyncio.run(time_ws(ws_urls, headers, args.messages, 50)),
                "plain_checks": checks,
            }
        finally:
            if api:
                api.stop_all()
                api.close()
            hub.stop()
            plain.stop()


def added(result: dict, kind: str, stat: str, path: str = "hub") -> float:
    return round(result[kind][path][stat] - result[kind]["direct"][stat], 3)


def handler_comparison(result: dict) -> dict:
    """Labspace's proxy handler ("workspace") vs upstream jupyter-server-proxy's
    ("plain"), per kind: the ratio of p50s and each one's p50 above direct."""
    out = {}
    for kind in ("http", "websocket"):
        labspace, upstream = result[kind]["workspace"], result[kind]["plain"]
        out[kind] = {
            "p50_ratio": round(labspace["p50_ms"] / upstream["p50_ms"], 2),
            "p99_ratio": round(labspace["p99_ms"] / upstream["p99_ms"], 2),
            "labspace_added_p50_ms": added(result, kind, "p50_ms", "workspace"),
            "upstream_added_p50_ms": added(result, kind, "p50_ms", "plain"),
        }
    return out


def comparison_sentence(c: dict) -> str:
    h, w = c["http"], c["websocket"]
    return (
        "Labspace's proxy handler vs upstream jupyter-server-proxy's (`workspace` ÷ `plain`, "
        f"same run): HTTP p50 **{h['p50_ratio']:.2f}×** (p99 {h['p99_ratio']:.2f}×), "
        f"websocket p50 **{w['p50_ratio']:.2f}×** (p99 {w['p99_ratio']:.2f}×). Above direct, "
        f"Labspace's handler adds {h['labspace_added_p50_ms']:.2f} ms HTTP p50 and "
        f"{w['labspace_added_p50_ms']:.2f} ms websocket p50; upstream's adds "
        f"{h['upstream_added_p50_ms']:.2f} ms and {w['upstream_added_p50_ms']:.2f} ms. "
        "The two servers differ in the proxy extension and in how a request's token is "
        "checked: the workspace is jupyterhub-singleuser (hub token, cached by HubAuth), "
        "the plain server a jupyter-server with its own token."
    )


def markdown(report: dict) -> str:
    r = report["results"]
    verdict = "met" if report["target_met"] else "missed"
    lines = [
        "# Proxy latency: hub proxy, Labspace's and upstream's app proxy, direct",
        "",
        f"{report['machine']}; {report['when']}; load average (1/5/15 min) "
        f"{report['load_before']} before, {report['load_after']} after (other work on the "
        "machine inflates every path). Sequential requests, one kept-alive connection per "
        "path, the paths interleaved (one request on each in turn), "
        f"after 50 warm-up; {report['requests']} HTTP requests "
        f"(`GET /healthz`, a tiny JSON) and {report['messages']} websocket round trips "
        "(32 bytes) per path. Milliseconds.",
        "",
        "| kind | path | p50 ms | p99 ms | mean ms |",
        "|---|---|---|---|---|",
    ]
    for kind in ("http", "websocket"):
        for path, s in r[kind].items():
            lines.append(
                f"| {kind} | {path} | {s['p50_ms']:.2f} | {s['p99_ms']:.2f} | {s['mean_ms']:.2f} |"
            )
    lines += [
        "",
        "Paths: `hub` = hub proxy (configurable-http-proxy) → workspace "
        "(Labspace's proxy handler, token checked) → app; `workspace` = the workspace's "
        "port → Labspace's handler (`labspace.extensions.apps`) → app; `plain` = a "
        "single-user jupyter-server with `labspace.extensions.apps` off → upstream "
        "jupyter-server-proxy's handler (the app from `c.ServerProxy.servers`, same "
        "command) → app; `direct` = the app's port.",
        "",
        comparison_sentence(report["handler_comparison"]),
        "The plain server loaded jupyter_server_proxy and not labspace.extensions.apps "
        "(its log; `/labspace-apps/api/apps` answered "
        f"{report['plain_checks']['labspace_apps_api_status']}).",
        "",
        f"Added by the proxies (hub − direct): HTTP p50 **{report['added_http_p50_ms']:.2f} ms**"
        f" (p99 {added(r, 'http', 'p99_ms'):.2f} ms), websocket p50 "
        f"**{report['added_ws_p50_ms']:.2f} ms** (p99 {added(r, 'websocket', 'p99_ms'):.2f} ms)."
        f" Target: added p50 ≤ {TARGET_MS:g} ms: **{verdict}**.",
        "",
        "Run: `.venv/bin/python bench/proxy.py`",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--out", type=Path, default=RESULTS / "proxy.json")
    args = parser.parse_args()
    args.requests = max(10, min(args.requests, 20000))
    args.messages = max(10, min(args.messages, 20000))
    load = [round(x, 2) for x in os.getloadavg()]
    result = measure(args)
    checks = result.pop("plain_checks")
    report = {
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores, "
        f"Python {platform.python_version()}",
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_before": load,
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "requests": args.requests,
        "messages": args.messages,
        "results": result,
        "added_http_p50_ms": added(result, "http", "p50_ms"),
        "added_ws_p50_ms": added(result, "websocket", "p50_ms"),
        "handler_comparison": handler_comparison(result),
        "plain_checks": checks,
    }
    report["target_met"] = max(report["added_http_p50_ms"], report["added_ws_p50_ms"]) <= TARGET_MS
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
