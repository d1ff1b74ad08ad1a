"""Spawn-to-ready: plain JupyterHub, Labspace and Labspace warm, side by side, fair.

All hubs of a backend are up at once (``bench/hubs.py``: ``plain``,
``labspace``, ``labspace-warm``) and take turns start by start, as
``bench/proxy.py`` alternates request by request: in each round every hub
does one turn, the order rotated by one each round, so whatever else the
machine does weighs on all of them alike. Before each turn a warm hub's pool
is full (a bounded wait; it refills between turns, not during another hub's).

Scenarios (each bounded in count and time):

- ``1 user``: one start at a time, ``--repeat`` rounds;
- ``class of 20``: ``--class-size`` users at once on one hub, the hubs one
  after the other within a round, ``--class-rounds`` rounds.

A start's time runs from the POST that asks for a server to the first 200 from
``/user/<name>/api/status`` through the proxy (the POST answers once the server
is up when that takes under 10 s; else the progress stream says when, and the
proxy is then asked every 20 ms). CPU per start (``bench/cpu.py``): the process
tree of the hub (hub, proxy, workspaces, fork server and pool members; for
docker also the containers' cgroups and Docker's daemons) from just before the
POST to 1 s after ready, split into the start's own (hub + the started
workspace: for a warm hub the claim, the critical path) and the pool's (the
refill, paid ahead; counted until the pool is full again). The machine's load
(load averages, /proc/stat busy share) is recorded around each scenario.

``--browser`` adds click-to-usable and first cell in Chromium
(``bench/usable.py``) and ``--phases`` the phase breakdown (``bench/phases.py``).
Writes ``bench/results/spawn.json`` and ``spawn.md``.

    python bench/spawn.py [--backends local,docker] [--kinds plain,labspace,labspace-warm]
        [--repeat 10] [--class-size 20] [--class-rounds 3] [--browser 5] [--phases]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cpu  # noqa: E402
import figures  # noqa: E402
import report  # noqa: E402
from hubs import REPO, BenchHub  # noqa: E402

RESULTS = REPO / "bench" / "results"
FAST_POLL = 0.02  # s between proxy probes once the hub says ready
POOL_WAIT = 180.0  # s a warm hub may take to fill its pool before a turn
SETTLE = 1.0  # s after ready still counted as the start's CPU


async def wait_ready(client: httpx.AsyncClient, name: str, t0: float, timeout: float, events):
    """After a 202: read the progress stream to its end (events with their
    times), then probe the proxy; seconds since ``t0`` of the first 200, or None."""
    with contextlib.suppress(httpx.HTTPError):
        async with client.stream("GET", f"hub/api/users/{name}/server/progress") as r:
            if r.status_code == 200:
                async for line in r.aiter_lines():
                    if line.startswith("data:"):
                        ev = json.loads(line.removeprefix("data:"))
                        events.append([round(time.monotonic() - t0, 3), ev.get("message", "")])
                        if ev.get("failed"):
                            return None  # the hub gave up on it (e.g. its http_timeout)
                        if ev.get("ready") or time.monotonic() - t0 > timeout:
                            break
    return await probe(client, name, t0, timeout)


async def probe(client: httpx.AsyncClient, name: str, t0: float, timeout: float):
    since = time.monotonic()
    while time.monotonic() - t0 < timeout:
        with contextlib.suppress(httpx.HTTPError):
            r = await client.get(f"user/{name}/api/status", follow_redirects=False)
            if r.status_code == 200:
                return time.monotonic() - t0
            if r.status_code in (424, 500, 503) and (
                not (await client.get(f"hub/api/users/{name}")).json()["servers"]
            ):
                return None  # the start failed
        # fast while the route is due, then gently (a probe costs the hub a redirect)
        await asyncio.sleep(FAST_POLL if time.monotonic() - since < 5 else 0.5)
    return None


async def spawn_one(client: httpx.AsyncClient, name: str, timeout: float) -> dict:
    """One start: seconds to the first 200 through the proxy (None: failed),
    the POST's answer time and status, and the progress events seen."""
    events: list = []
    t0 = time.monotonic()
    try:
        r = await client.post(f"hub/api/users/{name}/server", timeout=timeout)
    except httpx.HTTPError as e:
        return {"t": None, "error": type(e).__name__}
    post = time.monotonic() - t0
    if r.status_code == 201:
        t = await probe(client, name, t0, timeout)
    elif r.status_code == 202:
        t = await wait_ready(client, name, t0, timeout, events)
    else:
        return {"t": None, "status": r.status_code}
    return {"t": t, "post": round(post, 3), "status": r.status_code, "events": events}


async def stop_users(client: httpx.AsyncClient, names: list[str], timeout: float) -> None:
    await asyncio.gather(*(client.delete(f"hub/api/users/{n}/server") for n in names))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        models = await asyncio.gather(*(client.get(f"hub/api/users/{n}") for n in names))
        if all(m.status_code != 200 or not m.json()["servers"] for m in models):
            break
        await asyncio.sleep(0.25)
    await asyncio.gather(*(client.delete(f"hub/api/users/{n}") for n in names))


def containers() -> dict[str, tuple[str, str]]:
    """Running containers: id -> (name, the warm pool hub label ``org.labspace.hub``)."""
    fmt = '{{.ID}} {{.Names}} {{.Label "org.labspace.hub"}}'
    r = subprocess.run(
        ["docker", "ps", "--no-trunc", "--format", fmt],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    out = {}
    for line in r.stdout.splitlines():
        cid, name, *hub = line.split(" ")
        out[cid] = (name, hub[0] if hub else "")
    return out


def docker_hub_id(data_dir: Path) -> str:
    """The label a docker warm pool puts on its hub's members (as
    ``spawners.docker_warm.hub_id`` makes it from the hub's data folder)."""
    return hashlib.sha256(os.path.realpath(data_dir).encode()).hexdigest()[:12]


def pool_pids(*snaps: cpu.Snapshot) -> set[int]:
    """A local warm pool's fork server and everything below it, in any snapshot."""
    out: set[int] = set()
    for snap in snaps:
        for pid in snap.procs:
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"labspace.warm.forkserver" in cmd:
                out |= cpu.descendants(snap.procs, pid)
    return out


def cpu_split(hub: BenchHub, names: list[str], a, b, c=None) -> dict:
    """CPU of the window a->b by payer (and the pool's until c)."""
    docker = hub.backend == "docker"
    running = containers() if docker else {}
    users = {cid for cid, (n, _) in running.items() if any(n.endswith(u) for u in names)}
    mine = docker_hub_id(hub.workdir / "data")
    pool = {cid for cid, (_, h) in running.items() if h == mine} - users
    homes = tuple(hub.home(n) for n in names) if not docker else ()
    pids = pool_pids(a, b, *([c] if c else []))
    out = {"start": cpu.split(a, b, homes, pids, users, pool).as_dict()}
    if c is not None:
        out["refill"] = cpu.split(a, c, homes, pids, users, pool).as_dict()
    return out


async def turn(hub: BenchHub, names: list[str], timeout: float) -> dict:
    """One turn of a hub: ``names`` start at once; times, CPU, warm or cold."""
    full, waited = await asyncio.to_thread(hub.wait_pool_full, POOL_WAIT)
    pool_before = await asyncio.to_thread(hub.pool)
    docker = hub.backend == "docker"
    async with hub.client(timeout=60) as client:
        for n in names:
            await client.post(f"hub/api/users/{n}")
        hub.used += names
        load0 = cpu.load()
        a = cpu.snapshot(hub.pid, docker)
        starts = await asyncio.gather(*(spawn_one(client, n, timeout) for n in names))
        ready_snap = cpu.snapshot(hub.pid, docker)
        await asyncio.sleep(SETTLE)
        b = cpu.snapshot(hub.pid, docker)
        c = None
        if hub.warm:
            refilled, refill_s = await asyncio.to_thread(hub.wait_pool_full, POOL_WAIT)
            c = cpu.snapshot(hub.pid, docker)
        load1 = cpu.load()
        split = cpu_split(hub, names, a, b, c)
        split["to_ready"] = cpu_split(hub, names, a, ready_snap)["start"]
        pool_after = await asyncio.to_thread(hub.pool)
        await stop_users(client, names, timeout)
    out = {
        "times": [s["t"] and round(s["t"], 3) for s in starts],
        "starts": starts,
        "cpu": split,
        "load_before": load0,
        "load_after": load1,
        "busy_share": cpu.busy_share(tuple(load0["stat"]), tuple(load1["stat"])),
    }
    if hub.warm:
        out["pool"] = {
            "full_before": full,
            "waited_s": round(waited, 2),
            "refilled": refilled,
            "refill_s": round(refill_s, 2),
            "claimed": (pool_after or {}).get("totals", {}).get("claimed", 0)
            - (pool_before or {}).get("totals", {}).get("claimed", 0),
            "empty": (pool_after or {}).get("totals", {}).get("empty", 0)
            - (pool_before or {}).get("totals", {}).get("empty", 0),
        }
    return out


def idle_baseline(hubs: list[BenchHub], seconds: float = 5.0) -> dict:
    """CPU of each hub's tree at rest over ``seconds`` (what a window pays anyway)."""
    snaps = {h.label: cpu.snapshot(h.pid, h.backend == "docker") for h in hubs}
    load0 = cpu.load()
    time.sleep(seconds)
    load1 = cpu.load()
    out = {}
    for h in hubs:
        s = cpu.split(snaps[h.label], cpu.snapshot(h.pid, h.backend == "docker"), ())
        out[h.label] = round((s.hub + s.user + s.pool) / seconds, 3)
    out["machine_busy_share"] = cpu.busy_share(tuple(load0["stat"]), tuple(load1["stat"]))
    return out


def run_scenario(hubs, label, size, rounds, timeout, deadline, tag) -> dict:
    """``rounds`` rounds; in each, every hub one turn of ``size`` users at once,
    the order rotated each round. Stops early (and says so) at ``deadline``."""
    per_hub: dict[str, list[dict]] = {h.label: [] for h in hubs}
    run = "b" + secrets.token_hex(2)
    load0 = cpu.load()
    order_log = []
    for rnd in range(rounds):
        if time.monotonic() > deadline:
            print(f"  {label}: stopped after {rnd} rounds (time bound)", flush=True)
            break
        order = figures.rotated(hubs, rnd)
        order_log.append([h.label for h in order])
        for hub in order:
            names = [f"{run}{tag}{rnd}{hub.code}{i}" for i in range(size)]
            result = asyncio.run(turn(hub, names, timeout))
            per_hub[hub.label].append(result)
            ok = [t for t in result["times"] if t is not None]
            print(
                f"  {label} r{rnd} {hub.label}: {len(ok)}/{size} ready, "
                f"max {max(ok) if ok else None}, cpu {result['cpu']['start']['critical']}",
                flush=True,
            )
    load1 = cpu.load()
    return {
        "size": size,
        "rounds": len(order_log),
        "order": order_log,
        "load_before": load0,
        "load_after": load1,
        "busy_share": cpu.busy_share(tuple(load0["stat"]), tuple(load1["stat"])),
        "hubs": per_hub,
    }


def start_hubs(labels: list[tuple[str, str]], pool_size: int) -> list[BenchHub]:
    hubs = []
    try:
        for kind, backend in labels:
            print(f"starting {kind}/{backend} ...", flush=True)
            hubs.append(BenchHub(kind, backend, pool_size).start())
        for h in hubs:
            if h.warm:
                full, waited = h.wait_pool_full(POOL_WAIT * 2)
                print(f"  {h.label}: pool full={full} after {waited:.1f} s", flush=True)
                if not full and not (h.pool() or {}).get("size"):
                    raise RuntimeError(f"{h.label}: the hub keeps no warm pool\n{h.log()[-3000:]}")
    except BaseException:
        for h in hubs:
            h.stop()
        raise
    return hubs


def warm_up(hubs: list[BenchHub], timeout: float) -> dict:
    """One unmeasured start per hub (first-start costs: caches, a hub's first spawn)."""
    out = {}
    for h in hubs:
        out[h.label] = asyncio.run(turn(h, [f"w{h.code}{secrets.token_hex(2)}"], timeout))["times"]
    return out


def run_backend(backend: str, args) -> dict:
    labels = [(k, backend) for k in args.kinds.split(",")]
    pool_size = max(args.class_size, 2)
    hubs = start_hubs(labels, pool_size)
    try:
        out: dict = {"hubs": [h.label for h in hubs]}
        out["idle_cpu_per_s"] = idle_baseline(hubs)
        out["warm_up"] = warm_up(hubs, args.timeout)
        # the time bound, shared: 30% 1 user, 40% class, 30% browser (each part's
        # unused time goes to the next)
        end = time.monotonic() + args.budget
        out["scenarios"] = {}
        if args.repeat:
            deadline = time.monotonic() + 0.3 * args.budget
            out["scenarios"]["1 user"] = run_scenario(
                hubs, "1 user", 1, args.repeat, args.timeout, deadline, "s"
            )
        deadline = end - (0.3 * args.budget if args.browser else 0)
        if args.class_rounds:
            out["scenarios"][f"class of {args.class_size}"] = run_scenario(
                hubs,
                f"class of {args.class_size}",
                args.class_size,
                args.class_rounds,
                args.timeout,
                deadline,
                "c",
            )
        if args.browser:
            import usable

            out["browser"] = usable.run(
                hubs, args.browser, args.timeout, end, cached=args.browser_cache
            )
        if args.phases:
            import phases

            out["phases"] = phases.run(hubs, args.timeout)
        return out
    finally:
        for h in hubs:
            h.stop()


def main() -> None:
    # a SIGTERM unwinds (the finally blocks stop every hub started)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="local,docker")
    parser.add_argument("--kinds", default="plain,labspace,labspace-warm")
    parser.add_argument("--repeat", type=int, default=10, help="1-user rounds (default 10)")
    parser.add_argument("--class-size", type=int, default=20)
    parser.add_argument("--class-rounds", type=int, default=3)
    parser.add_argument("--browser", type=int, default=0, help="click-to-usable rounds")
    parser.add_argument(
        "--browser-cache",
        action="store_true",
        help="one browser profile per hub (a returning person: assets cached)",
    )
    parser.add_argument("--phases", action="store_true", help="the phase breakdown")
    parser.add_argument("--timeout", type=float, default=120, help="per-start bound, s")
    parser.add_argument("--budget", type=float, default=1200, help="per-backend bound, s")
    parser.add_argument("--out", default=str(RESULTS / "spawn"))
    args = parser.parse_args()
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": cpu.machine(),
        "load_start": cpu.load(),
        "args": vars(args),
        "backends": {},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for backend in args.backends.split(","):
        print(f"== {backend}", flush=True)
        try:
            result["backends"][backend] = run_backend(backend, args)
        except Exception as e:  # the other backend still runs; the report says why
            print(f"{backend} failed: {e}", flush=True)
            result.setdefault("failed", {})[backend] = f"{type(e).__name__}: {e}"[:2000]
        result["load_end"] = cpu.load()
        # written after each backend: a later failure keeps what was measured
        out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
        text = report.markdown(result)
        out.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
