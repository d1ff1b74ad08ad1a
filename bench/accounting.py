"""Accounting benchmark: reports over 1,000,000 sessions, and event ingestion.

    .venv/bin/python bench/accounting.py [--db-url postgresql://...] [--sessions 1000000]

Without ``--db-url`` it starts a private PostgreSQL cluster (tests/postgres.py).
It loads ``--sessions`` usage sessions across 10,000 users and 200 projects over
12 months (COPY), then measures:

1. the monthly report grouped by project, and grouped by user for one project
   (``reports.usage``, aggregated by the database), median of 7 runs;
2. start/stop event ingestion by the real service process over HTTP
   (``POST api/internal/events``, batches of 500, one at a time, as the deliverer sends them):
   each stop closes its session (charge to the end, release the hold).

Targets (issue 4): report <= 300 ms; ingestion >= 2,000 events/s.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import httpx  # noqa: E402
from harness import free_port  # noqa: E402

from labspace.services.accounting import ledger, reports  # noqa: E402
from labspace.services.accounting.db import Database  # noqa: E402

USERS, PROJECTS = 10_000, 200
START = datetime(2026, 1, 1, tzinfo=UTC)
COLUMNS = (
    'key, "user", server, project, account_id, profile, display_name, cpu, mem_gib, gpus, '
    "price_per_hour, reserved, held, charged, unbilled, cost, status, started_at, "
    "last_charged_at, last_seen_at, ended_at, closed_by, warned"
)


def load(db, n: int) -> float:
    """COPY ``n`` closed sessions into the database; returns seconds."""
    rng = random.Random(4)  # noqa: S311 (synthetic data)
    accounts = db.work(
        lambda s: {p: ledger.get_account(s, "project", f"proj-{p:03d}").id for p in range(PROJECTS)}
    )
    t0 = time.perf_counter()
    raw = db.engine.raw_connection()
    try:
        cur = raw.cursor()
        batch = 100_000
        for first in range(0, n, batch):
            buf = io.StringIO()
            for i in range(first, min(n, first + batch)):
                user = rng.randrange(USERS)
                project = user % PROJECTS
                start = START + timedelta(seconds=rng.randrange(365 * 86400))
                hours = rng.uniform(0.1, 8)
                end = start + timedelta(hours=hours)
                cost = round(hours * 1.0, 6)
                buf.write(
                    "\t".join(
                        [
                            f"user{user}//{start.isoformat()}#{i}",
                            f"user{user}",
                            "",
                            f"proj-{project:03d}",
                            str(accounts[project]),
                            "small",
                            "Small",
                            "1",
                            "2",
                            "0",
                            "1",
                            "1",
                            "0",
                            str(cost),
                            "0",
                            str(cost),
                            "closed",
                            start.isoformat(),
                            end.isoformat(),
                            end.isoformat(),
                            end.isoformat(),
                            "stop",
                            "0",
                        ]
                    )
                    + "\n"
                )
            buf.seek(0)
            with cur.copy(f"COPY usage_sessions ({COLUMNS}) FROM STDIN") as copy:
                copy.write(buf.getvalue())
        raw.commit()
    finally:
        raw.close()
    # what autovacuum does after a bulk load: statistics and the visibility map
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE usage_sessions")
    return time.perf_counter() - t0


def time_report(db, *args, **kw) -> tuple[float, int]:
    runs = []
    rows = []
    for _ in range(7):
        t0 = time.perf_counter()
        rows = db.work(reports.usage, *args, **kw)
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs) * 1000, len(rows)


def start_service(url: str, workdir: Path) -> tuple[subprocess.Popen, str, str]:
    """The real service process (``python -m labspace.services.accounting``); no hub
    behind it (its reconciler logs that the hub is unreachable and closes nothing)."""
    port = free_port()
    token = "bench-service-token"  # noqa: S105 (a throwaway loopback service)
    config = {
        "accounting": {"prices": {"profiles": {"small": 1.0}}, "projects": {"prefix": "proj-"}},
        "profiles": [{"slug": "small"}],
        "db_url": url,
        "data_dir": str(workdir),
    }
    env = {
        **os.environ,
        "LABSPACE_ACCOUNTING_CONFIG": json.dumps(config),
        "JUPYTERHUB_API_TOKEN": token,
        "JUPYTERHUB_API_URL": "http://127.0.0.1:9/hub/api",
        "JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:{port}",
        "JUPYTERHUB_SERVICE_PREFIX": "/services/accounting/",
        "JUPYTERHUB_CLIENT_ID": "service-accounting",
    }
    log = open(workdir / "service.log", "w")  # noqa: SIM115 (closed with the process)
    proc = subprocess.Popen(
        [sys.executable, "-m", "labspace.services.accounting"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}/services/accounting/"
    for _ in range(300):
        try:
            if httpx.get(base + "api/openapi.json", timeout=1).status_code == 200:
                return proc, base, token
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"the service did not start; see {workdir / 'service.log'}")


async def ingestion(
    base: str, token: str, sessions: int, batch: int = 500, parallel: int = 1
) -> tuple[float, float]:
    """Reserve ``sessions`` sessions, then post their start and stop events in
    batches (as the deliverer sends them); returns (reserves/s, events/s)."""
    at = datetime.now(UTC) - timedelta(hours=1)
    headers = {"Authorization": f"token {token}"}
    client = httpx.AsyncClient(base_url=base + "api/internal/", headers=headers, timeout=60)
    sem = asyncio.Semaphore(4)
    keys = []

    async def reserve(i):
        when = (at + timedelta(microseconds=i)).isoformat()
        body = {
            "key": f"bench{i}//{when}",
            "user": f"bench{i}",
            "server": "",
            "groups": ["proj-a"],
            "project": "proj-a",
            "profile": "small",
            "display_name": "Small",
            "resources": {},
            "at": when,
        }
        async with sem:
            r = await client.post("reserve", json=body)
        assert r.status_code == 200, r.text
        keys.append((body["key"], when))

    t0 = time.perf_counter()
    await asyncio.gather(*(reserve(i) for i in range(sessions)))
    reserves = sessions / (time.perf_counter() - t0)
    events = []
    for key, when in keys:
        events.append(
            {
                "id": f"{key}:start",
                "key": key,
                "type": "start",
                "at": when,
                "user": key.split("/")[0],
                "server": "",
            }
        )
    for key, when in keys:
        stop = (datetime.fromisoformat(when) + timedelta(minutes=30)).isoformat()
        events.append(
            {
                "id": f"{key}:stop",
                "key": key,
                "type": "stop",
                "at": stop,
                "user": key.split("/")[0],
                "server": "",
                "reason": "stopped",
            }
        )
    batches = [events[i : i + batch] for i in range(0, len(events), batch)]
    sem = asyncio.Semaphore(parallel)

    async def send(chunk):
        async with sem:
            r = await client.post("events", json={"events": chunk})
        assert r.status_code == 200 and r.json()["accepted"] == len(chunk), r.text

    t0 = time.perf_counter()
    await asyncio.gather(*(send(b) for b in batches))
    rate = len(events) / (time.perf_counter() - t0)
    await client.aclose()
    return reserves, rate


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db-url", default="")
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--ingest", type=int, default=2000, help="sessions for ingestion")
    parser.add_argument("--batch", type=int, default=500, help="events per POST (deliverer: 500)")
    parser.add_argument("--parallel", type=int, default=1, help="POSTs in flight (deliverer: 1)")
    args = parser.parse_args()
    cluster = None
    url = args.db_url
    if not url:
        from postgres import PostgresCluster, find_bindir

        cluster = PostgresCluster(find_bindir()).start()
        url = cluster.create_database("bench_accounting")
    workdir = Path(tempfile.mkdtemp(prefix="labspace-bench-acct-"))
    db = Database(url)
    db.upgrade()
    proc = None
    try:
        db.work(
            lambda s: ledger.post(
                s,
                "topup",
                [
                    ledger.Leg(
                        ledger.get_account(s, "external", "topup"),
                        ledger.get_account(s, "project", "proj-a"),
                        ledger.dec(10**8),
                    )
                ],
                "bench",
                "bench budget",
                at=datetime.now(UTC),
            )
        )
        load_s = load(db, args.sessions)
        month = (datetime(2026, 6, 1, tzinfo=UTC), datetime(2026, 7, 1, tzinfo=UTC))
        by_project = time_report(db, "project", *month)
        by_user = time_report(db, "user", *month, project="proj-007")
        proc, base, token = start_service(url, workdir)
        reserves, rate = await ingestion(base, token, args.ingest, args.batch, args.parallel)
        result = {
            "sessions": args.sessions,
            "users": USERS,
            "projects": PROJECTS,
            "load_seconds": round(load_s, 1),
            "report_by_project_ms": round(by_project[0], 1),
            "report_by_project_rows": by_project[1],
            "report_by_user_one_project_ms": round(by_user[0], 1),
            "report_by_user_rows": by_user[1],
            "reserves_per_s": round(reserves),
            "ingestion_events_per_s": round(rate),
            "ingestion_batch": args.batch,
            "ingestion_parallel": args.parallel,
            "cpus": os.cpu_count(),
        }
        print(json.dumps(result, indent=2))
        out = REPO / "bench" / "results"
        out.mkdir(exist_ok=True)
        (out / "accounting.json").write_text(json.dumps(result, indent=2) + "\n")
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)
        db.close()
        shutil.rmtree(workdir, ignore_errors=True)
        if cluster:
            cluster.stop()


if __name__ == "__main__":
    asyncio.run(main())
