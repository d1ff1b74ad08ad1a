"""Start-up and shutdown: Labspace vs plain JupyterHub, alternated in one run.

Each run starts a hub the way a service wrapper or a script does (SIGINT
ignored, and so inherited), in a session of its own, and times from the launch:

- ``hub process``: until a ``jupyterhub`` process exists (Labspace: the child
  that ``labspace up`` starts; plain: the launch itself, 0);
- ``health``: until ``/hub/health`` answers 200 through the proxy;
- ``services``: (Labspace) until every service's route answers through the
  proxy (``/services/<name>/api/openapi.json``: any status but 404, 502, 503),
  asked once ``/hub/health`` answers, so that both hubs get the same probes
  while they start (a probe costs the proxy a 404 and the hub an error page);
- ``stop``: from the stop signal (SIGTERM, or SIGINT, by turns) to the exit of
  the launched process; anything of the run left behind (a process in its
  session, a proxy still answering) is counted, then killed.

Hubs: ``labspace`` is ``labspace up`` with the accounting, catalog and data services
on (their defaults); ``plain`` is JupyterHub (same version, same
configurable-http-proxy, SQLite) with ``bench/plain_jupyterhub_config.py`` and
the dummy authenticator. Scenarios: ``empty`` (a first start: fresh data
folder and database) and ``users`` (the hub database already holds ``--users``
users with the ``user`` role, written straight into a copy of a database that a
first start made). Rounds alternate which hub goes first; figures are medians.

Writes ``bench/results/startup.json`` and ``.md``. Every wait is bounded; every
process is stopped by PID.

    python bench/startup.py [--rounds 3] [--users 10000] [--scenarios empty,users]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from harness import LABSPACE, free_port  # noqa: E402

RESULTS = REPO / "bench" / "results"
PROXY = str(REPO / "node_modules" / ".bin" / "configurable-http-proxy")
PLAIN_CONFIG = REPO / "bench" / "plain_jupyterhub_config.py"
SERVICES = ("accounting", "catalog", "data")
KINDS = ("plain", "labspace")
TARGET_RATIO = 1.3
TARGET_STOP_S = 3.0
START_BOUND_S = 240.0
# each probe costs the proxy a 404 and the hub an error page while they start:
# both hubs get the same probes (the services' only once the hub answers)
POLL_S = 0.05
STOP_BOUND_S = 60.0


def ignore_sigint() -> None:
    """As a service wrapper or a backgrounded script does: SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class Run:
    """One hub started in ``folder``: its command, URLs and what it left."""

    def __init__(self, kind: str, folder: Path):
        self.kind = kind
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.proc: subprocess.Popen | None = None
        self.data = folder / "data"

    def command(self) -> tuple[list[str], dict[str, str]]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LABSPACE_", "BENCH_"))}
        if self.kind == "plain":
            env.update(
                BENCH_PORT=str(self.port),
                BENCH_HUB_PORT=str(free_port()),
                BENCH_PROXY_API_PORT=str(free_port()),
                BENCH_PROXY=PROXY,
                BENCH_DIR=str(self.data),
                BENCH_TOKEN=secrets.token_hex(16),
            )
            self.data.mkdir(exist_ok=True)
            cmd = [sys.executable, "-m", "jupyterhub", "-f", str(PLAIN_CONFIG)]
            return [*cmd, "--JupyterHub.authenticator_class=dummy"], env
        settings = {
            "data_dir": str(self.data),
            "hub": {
                "ip": "127.0.0.1",
                "port": self.port,
                "hub_port": free_port(),
                "proxy_api_port": free_port(),
                "proxy_command": [PROXY],
            },
            **{name: {"enabled": True, "port": free_port()} for name in SERVICES},
        }
        config = self.folder / "labspace.yaml"
        config.write_text(yaml.safe_dump(settings))
        return [*LABSPACE, "up", "--config", str(config)], env

    @property
    def db(self) -> Path:
        return self.data / "jupyterhub.sqlite"

    def start(self) -> None:
        cmd, env = self.command()
        log = open(self.folder / f"{self.kind}.log", "ab")  # noqa: SIM115 - closed in stop
        self._log = log
        self.proc = subprocess.Popen(
            cmd,
            cwd=self.folder,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=ignore_sigint,  # noqa: PLW1509 - no threads here
        )

    def hub_pid(self) -> int | None:
        """The jupyterhub process: the launched one (plain) or its child."""
        if self.kind == "plain":
            return self.proc.pid
        path = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        with contextlib.suppress(OSError):
            for pid in path.read_text().split():
                with contextlib.suppress(OSError):
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                    if b"jupyterhub" in cmdline or b"labspace.launcher" in cmdline:
                        return int(pid)
        return None

    def session_pids(self) -> list[int]:
        """Processes still in the run's session (it was started as its leader)."""
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(OSError):
                    if os.getsid(int(entry)) == self.proc.pid:
                        found.append(int(entry))
        return found

    def proxy_pid(self) -> int | None:
        """The proxy this run started (its pid file), if it still runs."""
        for path in self.data.glob("proxy.pid"):
            with contextlib.suppress(OSError, ValueError):
                pid = int(path.read_text().strip())
                if b"configurable-http-proxy" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    return pid
        return None

    def clean(self) -> None:
        """Kill whatever of this run is left, by PID."""
        for pid in self.session_pids():
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        pid = self.proxy_pid()
        if pid:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


def probe(client: httpx.Client, url: str) -> int | None:
    try:
        return client.get(url).status_code
    except httpx.HTTPError:
        return None


def time_start(run: Run) -> dict:
    """Launch and poll until the hub (and services) answer through the proxy."""
    services = SERVICES if run.kind == "labspace" else ()
    out: dict = {"hub_process_s": None, "health_s": None, "services_s": {}}
    with httpx.Client(timeout=2) as client:
        t0, launched = time.perf_counter(), time.time()
        run.start()
        while time.perf_counter() - t0 < START_BOUND_S:
            now = time.perf_counter() - t0
            if run.proc.poll() is not None:
                raise RuntimeError(f"{run.kind} exited with {run.proc.returncode}; see its log")
            if out["hub_process_s"] is None and run.hub_pid():
                out["hub_process_s"] = round(now, 3)
            if out["health_s"] is None and probe(client, run.url + "hub/health") == 200:
                out["health_s"] = round(time.perf_counter() - t0, 3)
            for name in services if out["health_s"] is not None else ():
                if name not in out["services_s"]:
                    status = probe(client, f"{run.url}services/{name}/api/openapi.json")
                    if status is not None and status not in (404, 502, 503):
                        out["services_s"][name] = round(time.perf_counter() - t0, 3)
            if out["health_s"] is not None and len(out["services_s"]) == len(services):
                break
            time.sleep(POLL_S)
        else:
            raise RuntimeError(f"{run.kind} not up after {START_BOUND_S:g} s; see its log")
    if services:
        out["all_services_s"] = max(out["services_s"].values())
    out.update(milestones(run.folder / f"{run.kind}.log", launched))
    return out


MILESTONES = {
    "config_s": "Running JupyterHub version",  # logged once its config is read
    "listening_s": "Hub API listening on",
    "running_s": "JupyterHub is now running",
}
LOG_TIME = re.compile(r"^\[[DIWEC] (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+) JupyterHub ")


def milestones(log: Path, launched: float) -> dict:
    """Seconds from the launch to JupyterHub's own log lines (local time)."""
    found = {}
    for line in log.read_text(errors="replace").splitlines():
        match = LOG_TIME.match(line)
        for key, text in MILESTONES.items():
            if match and key not in found and text in line:
                when = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()
                found[key] = round(when - launched, 3)
    return found


def time_stop(run: Run, signum: int) -> dict:
    time.sleep(1)  # what is started in the background settles
    t0 = time.perf_counter()
    run.proc.send_signal(signum)
    try:
        run.proc.wait(STOP_BOUND_S)
        stop_s = round(time.perf_counter() - t0, 3)
    except subprocess.TimeoutExpired:
        stop_s = None
    left = len(run.session_pids())
    with httpx.Client(timeout=1) as client:
        proxy_left = probe(client, run.url + "hub/health") is not None or bool(run.proxy_pid())
    return {
        "signal": signal.Signals(signum).name,
        "stop_s": stop_s,
        "exit": run.proc.returncode,
        "left_processes": left,
        "proxy_left": proxy_left,
    }


def add_users(db: Path, count: int) -> None:
    """``count`` users with the ``user`` role, written straight into the hub's
    database (as if made through the API, without its cost)."""
    from jupyterhub import orm
    from sqlalchemy import create_engine, insert, select

    users, role_map = orm.User.__table__, orm._role_associations["user"].__table__
    engine = create_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        role = conn.execute(select(orm.Role.__table__.c.id).where(orm.Role.name == "user"))
        role_id = role.scalar_one()
        now = datetime.utcnow()
        rows = [
            {"name": f"bench-{i:05d}", "created": now, "cookie_id": secrets.token_hex(16)}
            for i in range(count)
        ]
        conn.execute(insert(users), rows)
        ids = conn.execute(select(users.c.id).where(users.c.name.like("bench-%"))).scalars()
        conn.execute(insert(role_map), [{"user_id": i, "role_id": role_id} for i in ids])
    engine.dispose()


def template(kind: str, root: Path, users: int, tries: int = 3) -> Path:
    """A data folder after a first start and stop, plus ``users`` users (a
    start that fails, as one may on a busy machine, is tried again)."""
    for attempt in range(tries):
        folder = root / f"template-{kind}-{attempt}"
        folder.mkdir()
        run = Run(kind, folder)
        try:
            time_start(run)
            time_stop(run, signal.SIGTERM)
            break
        except RuntimeError as e:
            print(f"template {kind}: {e}", file=sys.stderr, flush=True)
        finally:
            run.clean()
    else:
        raise RuntimeError(f"no {kind} hub started in {tries} tries; see the logs")
    add_users(run.db, users)
    return run.data


def one(kind: str, root: Path, scenario: str, round_no: int, templates: dict) -> dict:
    folder = root / f"{scenario}-{kind}-{round_no}"
    folder.mkdir()
    run = Run(kind, folder)
    if scenario == "users":
        shutil.copytree(templates[kind], run.data)
    signum = signal.SIGTERM if round_no % 2 == 0 else signal.SIGINT
    result = {"kind": kind, "scenario": scenario, "round": round_no}
    try:
        result.update(time_start(run))
        result.update(time_stop(run, signum))
    except RuntimeError as e:  # a failed start is reported, and the run goes on
        result["error"] = str(e)
    finally:
        run.clean()
    print(json.dumps(result), flush=True)
    return result


def median(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 2) if values else None


def summarise(runs: list[dict], scenarios: list[str]) -> dict:
    out = {}
    for scenario in scenarios:
        row = {}
        for kind in ("plain", "labspace"):
            tried = [r for r in runs if r["scenario"] == scenario and r["kind"] == kind]
            mine = [r for r in tried if "error" not in r]
            stops = [r["stop_s"] for r in mine]
            row[kind] = {
                "n": len(mine),
                "failed": len(tried) - len(mine),
                "hub_process_s": median([r["hub_process_s"] for r in mine]),
                **{key: median([r.get(key) for r in mine]) for key in MILESTONES},
                "health_s": median([r["health_s"] for r in mine]),
                "all_services_s": median([r.get("all_services_s") for r in mine]),
                "stop_s": median(stops),
                "stop_max_s": None if None in stops else max(stops),
                "left_behind": sum(r["left_processes"] + r["proxy_left"] for r in mine),
            }
        plain, labspace = row["plain"]["health_s"], row["labspace"]["health_s"]
        row["health_ratio"] = round(labspace / plain, 2) if plain and labspace else None
        out[scenario] = row
    return out


def fmt(value, unit: str = "") -> str:
    return "—" if value is None else f"{value:.2f}{unit}"


def markdown(report: dict) -> str:
    lines = [
        "# Start-up and shutdown: Labspace vs plain JupyterHub",
        "",
        f"{report['machine']}; {report['when']}; load average (1/5/15 min) "
        f"{report['load_before']} before, {report['load_after']} after. "
        f"JupyterHub {report['jupyterhub']}. {report['rounds']} rounds per scenario, "
        "the hubs alternated (the first one changes each round); medians. Each hub was "
        "started with SIGINT ignored (as a service wrapper or a script does) and "
        "stopped with SIGTERM and SIGINT by turns. Seconds.",
        "",
        "| scenario | hub | runs | hub process | config read | hub listening "
        "| /hub/health via proxy | services answer | stop (median) | stop (max) "
        "| left behind | health ratio |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for scenario, row in report["summary"].items():
        for kind in ("plain", "labspace"):
            s = row[kind]
            ratio = fmt(row["health_ratio"], "×") if kind == "labspace" else ""
            failed = f" ({s['failed']} failed)" if s["failed"] else ""
            lines.append(
                f"| {scenario} | {kind} | {s['n']}{failed} | {fmt(s['hub_process_s'])} "
                f"| {fmt(s.get('config_s'))} | {fmt(s.get('listening_s'))} "
                f"| {fmt(s['health_s'])} | {fmt(s['all_services_s'])} | {fmt(s['stop_s'])} "
                f"| {fmt(s['stop_max_s'])} | {s['left_behind']} | {ratio} |"
            )
    verdict = "met" if report["start_target_met"] else "missed"
    stop_verdict = "met" if report["stop_target_met"] else "missed"
    lines += [
        "",
        f"Scenarios: `empty` = a first start (fresh data folder and database); `users` = "
        f"the hub database holds {report['users']:,} users. `hub process` = launch until the "
        "hub's process exists (`labspace up` starts it first, importing JupyterHub while "
        "the settings are checked); `config read` and `hub listening` = JupyterHub's own "
        "log lines ('Running JupyterHub version', 'Hub API listening'); `services answer` "
        "= until both Labspace services' routes answer through the proxy; `stop` = signal "
        "until the launched process exits; `left behind` = processes of the run or a "
        "proxy still there after it.",
        "",
        f"Targets: Labspace start ≤ {TARGET_RATIO}× plain in every scenario: **{verdict}**; "
        f"stop ≤ {TARGET_STOP_S:g} s (every run): **{stop_verdict}**.",
        "",
        f"Run: `.venv/bin/python bench/startup.py --rounds {report['rounds']} "
        f"--users {report['users']}`",
        "",
    ]
    return "\n".join(lines)


def keep_logs(root: Path) -> None:
    """Copy every run's log to $BENCH_KEEP_LOGS, if set (for profiling)."""
    if not os.environ.get("BENCH_KEEP_LOGS"):
        return
    keep = Path(os.environ["BENCH_KEEP_LOGS"])
    keep.mkdir(parents=True, exist_ok=True)
    for log in root.glob("*/*.log"):
        shutil.copy(log, keep / f"{log.parent.name}.log")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="runs per hub and scenario")
    parser.add_argument("--users", type=int, default=10000, help="users in the 'users' scenario")
    parser.add_argument("--scenarios", default="empty,users")
    parser.add_argument("--out", type=Path, default=RESULTS / "startup.json")
    args = parser.parse_args()
    args.rounds = max(1, min(args.rounds, 20))
    args.users = max(1, min(args.users, 100_000))
    scenarios = [s for s in args.scenarios.split(",") if s in ("empty", "users")]
    load = [round(x, 2) for x in os.getloadavg()]
    runs = []
    with tempfile.TemporaryDirectory(prefix="labspace-bench-startup-") as tmp:
        root = Path(tmp)
        templates = {}
        try:
            if "users" in scenarios:
                templates = {kind: template(kind, root, args.users) for kind in KINDS}
            for scenario in scenarios:
                for round_no in range(args.rounds):
                    order = ("plain", "labspace") if round_no % 2 == 0 else ("labspace", "plain")
                    for kind in order:
                        runs.append(one(kind, root, scenario, round_no, templates))
        finally:
            keep_logs(root)
    import jupyterhub

    summary = summarise(runs, scenarios)
    report = {
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores, "
        f"Python {platform.python_version()}",
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_before": load,
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "jupyterhub": jupyterhub.__version__,
        "rounds": args.rounds,
        "users": args.users,
        "summary": summary,
        "start_target_met": all(
            row["health_ratio"] is not None and row["health_ratio"] <= TARGET_RATIO
            for row in summary.values()
        ),
        "stop_target_met": all(  # the target is Labspace's; plain is measured beside it
            r.get("stop_s") is not None and r["stop_s"] <= TARGET_STOP_S
            for r in runs
            if r.get("kind") == "labspace"
        ),
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
