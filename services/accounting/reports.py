"""Usage reports, aggregated by the database (never in Python).

A session's cost counts on the day it started. Groups: ``day``, ``user``,
``project`` (``(personal)`` for personal allowances, ``(platform)`` for the
warm pool's idle members, see ``pool``) or ``profile``.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from . import pool
from .models import UsageSession
from .pricing import dec, iso, show

GROUPS = ("day", "user", "project", "profile")
PERSONAL = "(personal)"
PLATFORM = pool.REPORT_LABEL


def project_label():
    """A session's project for reports: its project, ``(platform)`` (the warm
    pool) or ``(personal)``."""
    return case(
        (UsageSession.user == pool.POOL_USER, PLATFORM),
        else_=func.coalesce(UsageSession.project, PERSONAL),
    )


def _group_column(group_by: str):
    if group_by == "day":
        return func.date(UsageSession.started_at)
    if group_by == "project":
        return project_label()
    return getattr(UsageSession, group_by)


def usage(
    session: Session,
    group_by: str,
    start: datetime,
    end: datetime,
    user: str | None = None,
    project: str | None = None,
) -> list[dict[str, Any]]:
    """Sessions started in ``[start, end)``, grouped: count, cost, charged, unbilled."""
    if group_by not in GROUPS:
        raise ValueError(group_by)
    key = _group_column(group_by).label("key")
    query = (
        select(
            key,
            func.count().label("sessions"),
            func.coalesce(func.sum(UsageSession.cost), 0).label("cost"),
            func.coalesce(func.sum(UsageSession.charged), 0).label("charged"),
            func.coalesce(func.sum(UsageSession.unbilled), 0).label("unbilled"),
        )
        .where(UsageSession.started_at >= start, UsageSession.started_at < end)
        .group_by(key)
        .order_by(key)
    )
    if user is not None:
        query = query.where(UsageSession.user == user)
    if project is not None:
        query = query.where(
            project_label() == project
            if project in (PERSONAL, PLATFORM)
            else UsageSession.project == project
        )
    return [
        {
            group_by: str(row.key),
            "sessions": int(row.sessions),
            "cost": show(dec(row.cost)),
            "charged": show(dec(row.charged)),
            "unbilled": show(dec(row.unbilled)),
        }
        for row in session.execute(query)
    ]


def sessions(
    session: Session,
    user: str | None = None,
    project: str | None = None,
    status: str = "all",
    limit: int = 100,
) -> list[dict[str, Any]]:
    query = select(UsageSession).order_by(UsageSession.started_at.desc()).limit(limit)
    if user is not None:
        query = query.where(UsageSession.user == user)
    if project is not None:
        query = query.where(UsageSession.project == project)
    if status == "open":
        query = query.where(UsageSession.status != "closed")
    elif status == "closed":
        query = query.where(UsageSession.status == "closed")
    return [session_dict(s) for s in session.scalars(query)]


def session_dict(s: UsageSession) -> dict[str, Any]:
    return {
        "key": s.key,
        "user": s.user,
        "server": s.server,
        "project": s.project,
        "profile": s.profile,
        "display_name": s.display_name,
        "resources": {
            "cpu": float(s.cpu) if s.cpu is not None else None,
            "mem_gib": float(s.mem_gib) if s.mem_gib is not None else None,
            "gpus": s.gpus,
        },
        "price_per_hour": show(s.price_per_hour),
        "status": s.status,
        "started_at": iso(s.started_at),
        "last_charged_at": iso(s.last_charged_at),
        "ended_at": iso(s.ended_at),
        "reserved": show(s.reserved),
        "cost": show(s.cost),
        "charged": show(s.charged),
        "unbilled": show(s.unbilled),
        "closed_by": s.closed_by,
        "stop_reason": s.stop_reason,
    }


def _cell(value: Any) -> Any:
    """A spreadsheet never runs a cell as a formula (names come from users)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


USAGE_COLUMNS = ("sessions", "cost", "charged", "unbilled")  # after the group column
SESSION_COLUMNS = (
    "key", "user", "server", "project", "profile", "display_name", "price_per_hour", "status",
    "started_at", "last_charged_at", "ended_at", "reserved", "cost", "charged", "unbilled",
    "closed_by", "stop_reason",
)  # fmt: skip


def to_csv(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> str:
    """CSV with a header line of ``columns``, also when there are no rows."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    writer.writerows({k: _cell(r.get(k)) for k in columns} for r in rows)
    return out.getvalue()
