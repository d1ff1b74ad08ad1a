"""The audit trail: events are added in the transaction of the change they
record, and read back newest first, filtered, as JSON or CSV.

Kinds: ``grant`` (before/after: the level or null), ``dataset`` (before/after:
the dataset as given, or null), ``credential`` (before/after: "set" or null,
never a value) and ``start`` (which datasets at which level went into which
server). ``subject`` is ``group:<name>`` or ``user:<name>`` for a grant, the
level for a credential.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from .models import AuditDataset, AuditEvent, iso, utcnow

KINDS = ("grant", "dataset", "credential", "start")
COLUMNS = (
    "id",
    "at",
    "kind",
    "actor",
    "dataset",
    "subject",
    "before",
    "after",
    "reason",
    "user",
    "server",
    "datasets",
)
MAX_LIMIT = 10_000
DEFAULT_LIMIT = 500


def add(s: Session, kind: str, **fields: Any) -> AuditEvent:
    fields.setdefault("datasets", [])
    event = AuditEvent(kind=kind, at=utcnow(), **fields)
    s.add(event)
    if event.datasets:
        s.flush()  # its id
        for item in event.datasets:
            s.add(AuditDataset(event_id=event.id, dataset_id=item["id"], level=item["level"]))
    return event


def event_model(e: AuditEvent) -> dict[str, Any]:
    return {
        "id": e.id,
        "at": iso(e.at),
        "kind": e.kind,
        "actor": e.actor or "",
        "dataset": e.dataset or "",
        "subject": e.subject or "",
        "before": e.before,
        "after": e.after,
        "reason": e.reason or "",
        "user": e.user or "",
        "server": e.server or "",
        "datasets": list(e.datasets or []),
    }


def events(
    s: Session,
    *,
    dataset: str = "",
    user: str = "",
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = DEFAULT_LIMIT,
) -> list[dict[str, Any]]:
    """Events newest first; ``dataset`` matches its changes and the starts that
    took it, ``user`` that user's starts and the grants made to them by name."""
    q = select(AuditEvent)
    if dataset:
        took = select(AuditDataset.event_id).where(AuditDataset.dataset_id == dataset)
        q = q.where(or_(AuditEvent.dataset == dataset, AuditEvent.id.in_(took)))
    if user:
        q = q.where(or_(AuditEvent.user == user, AuditEvent.subject == f"user:{user}"))
    if since is not None:
        q = q.where(AuditEvent.at >= since)
    if until is not None:
        q = q.where(AuditEvent.at < until)
    q = q.order_by(AuditEvent.at.desc(), AuditEvent.id.desc()).limit(limit)
    return [event_model(e) for e in s.scalars(q)]


def last_starts(s: Session, servers: list[tuple[str, str]]) -> dict[tuple[str, str], dict]:
    """The newest ``start`` event of each ``(user, server)``."""
    out: dict[tuple[str, str], dict] = {}
    users = sorted({u for u, _ in servers})
    wanted = set(servers)
    for i in range(0, len(users), 500):
        q = (
            select(AuditEvent)
            .where(AuditEvent.kind == "start", AuditEvent.user.in_(users[i : i + 500]))
            .order_by(AuditEvent.id.desc())
        )
        for e in s.scalars(q):
            key = (e.user, e.server)
            if key in wanted and key not in out:
                out[key] = event_model(e)
    return out


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        # a spreadsheet reads =, +, -, @ at the start of a cell as a formula
        return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value
    return json.dumps(value, sort_keys=True)


def to_csv(rows: list[dict[str, Any]]) -> str:
    """Events as CSV with a header row (values a spreadsheet would run are quoted)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow([row["id"], *(_cell(row[c]) for c in COLUMNS[1:])])
    return out.getvalue()
