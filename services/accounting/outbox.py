"""The hub side's durable outbox: accounting events survive any crash.

The hub's spawner hooks append ``start``/``stop``/``unreachable`` events to a
SQLite file under ``data_dir`` (WAL journal, ``synchronous=FULL``: an append
that returned is on disk); the deliverer (``deliver.py``, a second process)
claims batches, posts them to the accounting service and deletes them only once
the service acknowledged them. The service deduplicates by event id, so an event
sent twice (a crash after the post, before the delete) is harmless; an event is
never deleted before it was acknowledged, so none is lost.

The outbox also remembers which usage session each running server belongs to
(``open_keys``): JupyterHub forgets a server's start time before the after-stop
hook runs, and the key must survive a hub restart.
"""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

FILE_NAME = "accounting-outbox.sqlite"

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    key TEXT,  -- the usage session; NULL: in no order with others
    body TEXT NOT NULL,
    created REAL NOT NULL,
    not_before REAL NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS events_key ON events (key, seq);
CREATE TABLE IF NOT EXISTS open_keys (
    user TEXT NOT NULL,
    server TEXT NOT NULL,
    key TEXT NOT NULL,
    PRIMARY KEY (user, server)
);
"""


# due, and no earlier event of the same session still waiting for a try
CLAIM_NEXT = """
SELECT seq, body FROM events e
WHERE e.not_before <= ? AND NOT EXISTS (
    SELECT 1 FROM events p WHERE p.key = e.key AND p.seq < e.seq AND p.not_before > ?)
ORDER BY seq LIMIT ?
"""
CLAIM_ONE = """
SELECT seq, body FROM events e
WHERE e.id = ? AND e.not_before <= ? AND NOT EXISTS (
    SELECT 1 FROM events p WHERE p.key = e.key AND p.seq < e.seq AND p.not_before > ?)
"""


def path_in(data_dir: str | Path) -> Path:
    """Where the outbox of a hub with ``data_dir`` lives."""
    return Path(data_dir) / FILE_NAME


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


class Outbox:
    """One outbox file. Every method opens its own connection, so an ``Outbox``
    may be used from any thread and from several processes at once."""

    def __init__(self, path: str | Path, busy_timeout: float = 30.0):
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self._ready = False

    @contextmanager
    def _connect(self):
        if not self._ready and not self.path.exists():
            self.create()
        db = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            if not self._ready:
                db.executescript(SCHEMA)
                self._ready = True
            yield db
        finally:
            db.close()

    @contextmanager
    def _write(self):
        """A write transaction, taken at once (no upgrade deadlocks)."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def create(self) -> Outbox:
        """Create the file and its tables (mode 0600: events name users)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.touch(mode=0o600, exist_ok=True)
        return self

    # -- the hub side --------------------------------------------------------

    def append(
        self,
        *events: dict[str, Any],
        open_key: tuple[str, str, str] | None = None,
        close_key: tuple[str, str] | None = None,
    ) -> int:
        """Store ``events`` durably (an event id already stored is kept once);
        in the same transaction remember ``open_key`` (user, server, key) or
        forget ``close_key`` (user, server). Returns how many were new."""
        now = time.time()
        added = 0
        with self._write() as db:
            for event in events:
                cur = db.execute(
                    "INSERT OR IGNORE INTO events (id, key, body, created) VALUES (?, ?, ?, ?)",
                    (event["id"], event.get("key"), json.dumps(event, sort_keys=True), now),
                )
                added += cur.rowcount
            if open_key:
                db.execute("INSERT OR REPLACE INTO open_keys VALUES (?, ?, ?)", open_key)
            if close_key:
                db.execute("DELETE FROM open_keys WHERE user = ? AND server = ?", close_key)
        return added

    def open_key(self, user: str, server: str) -> str | None:
        """The usage session key of ``user``'s server ``server``, if it is open."""
        with self._connect() as db:
            row = db.execute(
                "SELECT key FROM open_keys WHERE user = ? AND server = ?", (user, server)
            ).fetchone()
        return row[0] if row else None

    def open_keys_of(self, user: str) -> list[tuple[str, str]]:
        """``[(server, key)]`` of every open session of ``user`` (the warm pool's)."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT server, key FROM open_keys WHERE user = ? ORDER BY server", (user,)
            ).fetchall()
        return [(server, key) for server, key in rows]

    # -- the deliverer -------------------------------------------------------

    def claim(
        self, limit: int = 500, lease: float = 30.0, ids: list[str] | None = None
    ) -> list[tuple[int, dict[str, Any]]]:
        """Up to ``limit`` due events, oldest first, hidden from other claimers
        for ``lease`` seconds (a claimer that dies releases them by timing out).
        An event waits while an earlier one of its session is pending elsewhere
        (claimed or set back), so a session's events reach the service in order.
        ``ids``: only those events. Returns ``[(seq, event)]``."""
        now = time.time()
        with self._write() as db:
            if ids:
                rows = []
                for event_id in ids[:limit]:
                    rows += db.execute(CLAIM_ONE, (event_id, now, now)).fetchall()
            else:
                rows = db.execute(CLAIM_NEXT, (now, now, limit)).fetchall()
            db.executemany(
                "UPDATE events SET not_before = ? WHERE seq = ?",
                [(now + lease, seq) for seq, _ in rows],
            )
        return [(seq, json.loads(body)) for seq, body in rows]

    def ack(self, seqs: list[int]) -> None:
        """The service has these events: forget them."""
        with self._write() as db:
            db.executemany("DELETE FROM events WHERE seq = ?", [(seq,) for seq in seqs])

    def release(self, seqs: list[int], error: str, delay: float = 0.0) -> None:
        """Delivery failed: try these again after ``delay`` seconds."""
        retry_at = time.time() + delay
        with self._write() as db:
            db.executemany(
                "UPDATE events SET not_before = ?, attempts = attempts + 1, last_error = ? "
                "WHERE seq = ?",
                [(retry_at, error[:500], seq) for seq in seqs],
            )

    def status(self) -> dict[str, Any]:
        """``{"depth": events not yet delivered, "oldest": iso time of the oldest|None}``."""
        with self._connect() as db:
            depth, oldest = db.execute("SELECT count(*), min(created) FROM events").fetchone()
        return {"depth": depth, "oldest": iso(oldest) if oldest is not None else None}

    def pending(self) -> list[dict[str, Any]]:
        """Every event not yet delivered, oldest first (tests, the admin's eye)."""
        with self._connect() as db:
            rows = db.execute("SELECT body FROM events ORDER BY seq").fetchall()
        return [json.loads(body) for (body,) in rows]
