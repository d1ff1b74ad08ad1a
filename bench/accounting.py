"""Accounting benchmark: reports over 1,000,000 sessions, and event ingestion.

    .venv/bin/python bench/accounting.py [--db-url postgresql://...] [--sessions 1000000]

Without ``--db-url`` it starts a private PostgreSQL cluster (tests/postgres.py).
It loads ``--sessions`` usage sessions across 10,000 users and 200 projects over
12 months (COPY), then measures:

1. the monthly report grouped by project, and grouped by user for one project
   (``reports.usage``, aggregated by the database), median of 7 runs;
2. start/stop event ingestion through the service's HTTP endpoint
   (``POST api/internal/events``, batches of 100 as the deliverer sends them):
   each stop closes its session (charge to the end, release the hold).

Targets (issue 4): report <= 300 ms; ingestion >= 2,000 events/s.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from harness import free_port  # noqa: E402
from test_accounting_fixtures import AccountingServer  # noqa: E402

from labspace.services.accounting import ledger, reports  # noqa: E402

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
        cur.execute("ANALYZE usage_sessions")
        raw.commit()
    finally:
        raw.close()
    return time.perf_counter() - t0


def time_report(db, *args, **kw) -> tuple[float, int]:
    runs = []
    rows = []
    for _ in range(7):
        t0 = time.perf_counter()
        rows = db.work(reports.usage, *args, **kw)
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs) * 1000, len(rows)


async def ingestion(acct, sessions: int) -> float:
    """Reserve ``sessions`` sessions (not timed), then post their start and stop
    events in batches of 100; returns events per second."""
    await acct.call(
        "POST",
        "api/ledger/topup",
        "admin-token",
        {"project": "proj-a", "amount": "100000000", "reason": "bench"},
    )
    at = datetime.now(UTC) - timedelta(hours=1)
    keys = []
    for i in range(sessions):
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
        r = await acct.internal("POST", "reserve", body)
        assert r.status_code == 200, r.text
        keys.append((body["key"], when))
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
    batches = [events[i : i + 100] for i in range(0, len(events), 100)]
    t0 = time.perf_counter()
    sem = asyncio.Semaphore(4)  # a few deliverers' worth of concurrency

    async def send(batch):
        async with sem:
            r = await acct.internal("POST", "events", {"events": batch})
            assert r.status_code == 200 and r.json()["accepted"] == len(batch), r.text

    await asyncio.gather(*(send(b) for b in batches))
    return len(events) / (time.perf_counter() - t0)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db-url", default="")
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--ingest", type=int, default=2000, help="sessions for ingestion")
    args = parser.parse_args()
    cluster = None
    url = args.db_url
    if not url:
        from postgres import PostgresCluster, find_bindir

        cluster = PostgresCluster(find_bindir()).start()
        url = cluster.create_database("bench_accounting")
    acct = AccountingServer(url, free_port())
    try:
        load_s = load(acct.db, args.sessions)
        month = (datetime(2026, 6, 1, tzinfo=UTC), datetime(2026, 7, 1, tzinfo=UTC))
        by_project = time_report(acct.db, "project", *month)
        by_user = time_report(acct.db, "user", *month, project="proj-007")
        rate = await ingestion(acct, args.ingest)
        result = {
            "sessions": args.sessions,
            "users": USERS,
            "projects": PROJECTS,
            "load_seconds": round(load_s, 1),
            "report_by_project_ms": round(by_project[0], 1),
            "report_by_project_rows": by_project[1],
            "report_by_user_one_project_ms": round(by_user[0], 1),
            "report_by_user_rows": by_user[1],
            "ingestion_events_per_s": round(rate),
        }
        print(json.dumps(result, indent=2))
        out = REPO / "bench" / "results"
        out.mkdir(exist_ok=True)
        (out / "accounting.json").write_text(json.dumps(result, indent=2) + "\n")
    finally:
        await acct.close()
        if cluster:
            cluster.stop()


if __name__ == "__main__":
    asyncio.run(main())
