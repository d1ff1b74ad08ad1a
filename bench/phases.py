"""Phases of a start: where the time goes, cold and warm, local and docker.

One start per hub, alone on the machine's hubs (nothing else starting), timed
from the POST that asks for it, from four sources:

- the hub's log (its own lines and, on the local backend, the workspace's;
  on docker the container's ``docker logs``), millisecond timestamps: the
  spawner launching (``Spawning``), a warm claim (``started warm``), the
  workspace's imports (``Extension package … took``), extensions linked and
  loaded, ``is running at``, the hub's ``took … seconds to start``;
- the process's start time (``/proc/<pid>/stat``) or the container's
  ``State.StartedAt`` (docker inspect): creation;
- the spawner's progress events (``GET …/server/progress``), read from the
  start on;
- the client: the first 200 through the proxy, then a kernel through the REST
  API (``POST api/sessions``, ``1+1`` over the kernel's websocket).

``python -X importtime`` of the workspace's imports (``labspace.warm.member.preload``:
what a cold start imports) is measured apart, in the same environment (local:
this venv; docker: the workspace image), with its heaviest packages. JupyterLab's
page and assets and the first cell come from the browser turns (``bench/usable.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cpu  # noqa: E402
from figures import fmt  # noqa: E402

LINE = re.compile(r"^\[([DIWEC]) (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d[.,]\d{3}) (\S+)[^\]]*\] (.*)$")
IMPORTS = (
    "import importlib\n"
    "try:\n"
    "    from labspace.warm.member import preload\n"
    "    preload()\n"
    "except ImportError:\n"
    "    for m in ('jupyter_server.serverapp', 'jupyterhub.singleuser', 'jupyterlab',\n"
    "              'jupyter_lsp', 'jupyter_server_proxy', 'jupyter_server_terminals',\n"
    "              'notebook_shim', 'panel.io.jupyter_server_extension',\n"
    "              'voila.server_extension', 'labspace.extensions.apps'):\n"
    "        try:\n"
    "            importlib.import_module(m)\n"
    "        except Exception:\n"
    "            pass\n"
)
ROWS = (
    ("hub: request to spawner launch", "launch"),
    ("process / container creation (warm: claim)", "create"),
    ("Python imports", "imports"),
    ("server init + extension load", "init"),
    ("hub notices it up", "noticed"),
    ("proxy route + first 200", "first_200"),
    ("= spawn request to first 200", "total"),
    ("kernel start + `1+1` (REST API)", "kernel_api"),
    ("JupyterLab page and assets (browser)", "lab_page"),
    ("first cell from launcher (browser)", "first_cell"),
)


def log_times(text: str, since: float) -> list[tuple[float, str, str]]:
    """(epoch s, logger, message) of the log lines at or after ``since`` (UTC stamps)."""
    out = []
    for line in text.splitlines():
        m = LINE.match(line)
        if not m:
            continue
        stamp = datetime.strptime(m.group(2).replace(",", "."), "%Y-%m-%d %H:%M:%S.%f")
        at = stamp.replace(tzinfo=UTC).timestamp()
        if at >= since - 0.01:
            out.append((at, m.group(3), m.group(4)))
    return out


def first(lines, pattern: str, after: float = 0.0) -> float | None:
    rx = re.compile(pattern)
    return next((at for at, _, msg in lines if at >= after and rx.search(msg)), None)


def last(lines, pattern: str, before: float) -> float | None:
    rx = re.compile(pattern)
    hits = [at for at, _, msg in lines if at <= before and rx.search(msg)]
    return hits[-1] if hits else None


def marks(lines, user: str) -> dict:
    """The start's milestones (epoch s) in its log lines."""
    m = {
        "launch": first(lines, r"^Spawning |Starting local workspace|^Starting (docker|container)"),
        "claimed": first(lines, rf"{user} started warm"),
        "running": first(lines, r"is running at"),
        "ready": first(lines, rf"User {user} took [\d.]+ seconds to start"),
    }
    if m["running"]:
        m["imports_done"] = last(lines, r"^Extension package .* took", m["running"])
        m["linked"] = first(lines, r"extension was successfully linked")
    return m


def phase_durations(t0: float, m: dict, created: float | None, t200: float | None) -> dict:
    """Seconds per phase from the milestones (None where one is missing)."""

    def gap(a, b):
        return round(b - a, 3) if a is not None and b is not None else None

    start = m.get("claimed") or created
    imports_done = None if m.get("claimed") else m.get("imports_done")
    preloaded = 0.0 if m.get("claimed") else None
    return {
        "launch": gap(t0, m.get("launch")),
        "create": gap(m.get("launch"), start),
        "imports": gap(start, imports_done) if imports_done else preloaded,
        "init": gap(imports_done or start, m.get("running")),
        "noticed": gap(m.get("running"), m.get("ready")),
        "first_200": gap(m.get("ready"), t200),
        "total": gap(t0, t200),
    }


def proc_start(home: str, procs: dict) -> float | None:
    """Epoch start time of the earliest process working in ``home``."""
    # boot time to 10 ms (/proc/stat's btime is whole seconds: up to 1 s off)
    btime = time.time() - float(Path("/proc/uptime").read_text().split()[0])
    starts = []
    for pid in procs:
        if cpu.in_homes(cpu.cwd_of(pid), (home,)):
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = Path(f"/proc/{pid}/stat").read_text()
                starts.append(int(stat[stat.rindex(")") + 2 :].split()[19]) / cpu.TICK)
    return btime + min(starts) if starts else None


def container_of(user: str) -> tuple[str | None, float | None]:
    """The user's container name and its ``State.StartedAt`` (epoch s)."""
    r = subprocess.run(
        ["docker", "ps", "--format", "{{.Names}}"], capture_output=True, text=True, timeout=60
    )
    name = next((n for n in r.stdout.split() if n.endswith(user)), None)
    if not name:
        return None, None
    r = subprocess.run(
        ["docker", "inspect", "-f", "{{.State.StartedAt}}", name],
        capture_output=True,
        text=True,
        timeout=60,
    )
    stamp = r.stdout.strip()[:26].rstrip("Z")
    with contextlib.suppress(ValueError):
        return name, datetime.fromisoformat(stamp).replace(tzinfo=UTC).timestamp()
    return name, None


async def kernel_api(client: httpx.AsyncClient, hub, user: str, timeout: float) -> float | None:
    """Seconds from ``POST api/sessions`` (a notebook in the home) to the reply of ``1+1``."""
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    t0 = time.monotonic()
    body = {"path": "Untitled.ipynb", "type": "notebook", "name": "", "kernel": {}}
    r = await client.post(f"user/{user}/api/sessions", json=body)
    if r.status_code != 201:
        return None
    kid = r.json()["kernel"]["id"]
    url = hub.url.replace("http", "ws", 1) + f"user/{user}/api/kernels/{kid}/channels"
    req = HTTPRequest(url, headers={"Authorization": f"token {hub.token}"})
    ws = await asyncio.wait_for(websocket_connect(req), timeout)
    msg_id = uuid.uuid4().hex
    ws.write_message(
        json.dumps(
            {
                "header": {
                    "msg_id": msg_id,
                    "msg_type": "execute_request",
                    "session": uuid.uuid4().hex,
                    "username": user,
                    "version": "5.3",
                    "date": "",
                },
                "parent_header": {},
                "metadata": {},
                "content": {"code": "1+1", "silent": False, "store_history": True},
                "channel": "shell",
                "buffers": [],
            }
        )
    )
    try:
        while time.monotonic() - t0 < timeout:
            raw = await asyncio.wait_for(ws.read_message(), timeout)
            if raw is None:
                return None
            msg = json.loads(raw)
            if (
                msg.get("msg_type") == "execute_result"
                and msg.get("parent_header", {}).get("msg_id") == msg_id
            ):
                return round(time.monotonic() - t0, 3)
    finally:
        ws.close()
    return None


async def progress_events(client, user: str, t0: float, timeout: float, events: list) -> None:
    """The progress stream from the start on (it answers 400 until the start is pending)."""
    while time.time() - t0 < timeout:
        with contextlib.suppress(httpx.HTTPError):
            async with client.stream("GET", f"hub/api/users/{user}/server/progress") as r:
                if r.status_code == 200:
                    async for line in r.aiter_lines():
                        if line.startswith("data:"):
                            ev = json.loads(line.removeprefix("data:"))
                            events.append([round(time.time() - t0, 3), ev.get("message", "")])
                            if ev.get("ready") or ev.get("failed"):
                                return
                    return
        await asyncio.sleep(0.01)


async def one(hub, timeout: float) -> dict:
    user = "ph" + secrets.token_hex(3)
    hub.used.append(user)
    await asyncio.to_thread(hub.wait_pool_full, 180)
    docker = hub.backend == "docker"
    async with hub.client(timeout=timeout) as client:
        await client.post(f"hub/api/users/{user}")
        events: list = []
        t0 = time.time()
        reader = asyncio.ensure_future(progress_events(client, user, t0, timeout, events))
        r = await client.post(f"hub/api/users/{user}/server")
        t200 = None
        while r.status_code in (201, 202) and time.time() - t0 < timeout:
            s = await client.get(f"user/{user}/api/status", follow_redirects=False)
            if s.status_code == 200:
                t200 = time.time()
                break
            await asyncio.sleep(0.02)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(reader, 5)
        snap = cpu.snapshot(hub.pid, docker)
        name, created = container_of(user) if docker else (None, None)
        if not docker:
            created = proc_start(hub.home(user), snap.procs)
        kernel = await kernel_api(client, hub, user, timeout) if t200 else None
        text = hub.log()
        if name:
            logs = subprocess.run(
                ["docker", "logs", name], capture_output=True, text=True, timeout=60
            )
            text += "\n" + logs.stdout + logs.stderr
        lines = log_times(text, t0)
        m = marks(lines, user)
        await client.delete(f"hub/api/users/{user}/server")
    d = phase_durations(t0, m, created, t200)
    d["kernel_api"] = kernel
    return {
        "hub": hub.label,
        "phases": d,
        "marks": {k: v and round(v - t0, 3) for k, v in m.items()},
        "created": created and round(created - t0, 3),
        "events": events,
    }


def parse_importtime(stderr: str) -> list[tuple[str, int, int]]:
    """(name, self us, cumulative us) of ``-X importtime`` lines; a top-level
    import's name has no leading space, each level below two more."""
    rows = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        parts = line.removeprefix("import time:").split("|")
        if len(parts) == 3:
            rows.append((parts[2][1:], int(parts[0]), int(parts[1])))
    return rows


def importtime(backend: str, image: str) -> dict:
    """``python -X importtime`` of a cold start's imports: total and the heaviest."""
    cmd = [sys.executable, "-X", "importtime", "-c", IMPORTS]
    if backend == "docker":
        cmd = ["docker", "run", "--rm", "--network", "host", "--entrypoint", "python", image]
        cmd += ["-X", "importtime", "-c", IMPORTS]
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    wall = time.monotonic() - t0
    rows = parse_importtime(r.stderr)
    top_level = sum(c for n, _, c in rows if not n.startswith(" "))
    # self time summed per top package (every module of it, wherever imported)
    named: dict[str, float] = {}
    for n, own, _ in rows:
        root = n.strip().split(".")[0]
        named[root] = named.get(root, 0.0) + own / 1e6
    heavy = sorted(named.items(), key=lambda kv: -kv[1])[:10]
    named = {k: round(v, 3) for k, v in heavy} | {
        "rfc3987_syntax": round(named.get("rfc3987_syntax", 0.0), 3)
    }
    return {"total_s": round(top_level / 1e6, 3), "wall_s": round(wall, 3), "heaviest": named}


def run(hubs, timeout: float) -> dict:
    """One start per hub, one after the other; and the import times of the backend."""
    out: dict = {"starts": [], "importtime": None}
    for h in hubs:
        out["starts"].append(asyncio.run(one(h, timeout)))
        time.sleep(2)
    backend = hubs[0].backend
    with contextlib.suppress(subprocess.SubprocessError, ValueError):
        out["importtime"] = importtime(backend, "labspace/workspace:latest")
    return out


def table(res: dict, browser: dict | None = None) -> list[str]:
    """Markdown rows: a column per hub (one start each)."""
    starts = res.get("starts", [])
    head = "| phase | " + " | ".join(s["hub"] for s in starts) + " |"
    rows = [head, "|---|" + "---|" * len(starts)]
    for label, key in ROWS:
        cells = []
        for s in starts:
            v = s["phases"].get(key)
            if key in ("lab_page", "first_cell") and browser:
                v = browser.get(s["hub"], {}).get(key)
            cells.append(fmt(v))
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    imp = res.get("importtime")
    if imp:
        rows += [
            "",
            f"`python -X importtime` of a cold start's imports: {imp['total_s']} s "
            f"(process wall {imp['wall_s']} s); heaviest: "
            + ", ".join(f"{k} {v} s" for k, v in imp["heaviest"].items()),
        ]
    return rows
