"""The charger's and the reconciler's units of work, and the service's status.

- ``charge_all``: every open session charged to now; budget warnings (once per
  mark); the stops that are due once a budget has been exhausted for longer
  than the grace period;
- ``mark_seen``: the hub's live servers; sessions whose server is gone are
  closed at the last time they were seen running (``closed_by: reconciler``);
- the status rows (``last_reconcile``) and the health report's reads.

Each function is one unit of work on a SQLAlchemy session, as in ``usage``.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from . import ledger, pool
from .alerts import crossed, used_this_month
from .models import Account, Event, Status, UsageSession
from .policy import Policy
from .pricing import aware, dec, iso, parse_time, show
from .usage import OPEN, charge, close, load_prices, renew_all

log = logging.getLogger("labspace.accounting")


# -- the charger ----------------------------------------------------------------


def open_sessions(session: Session) -> list[UsageSession]:
    return list(session.scalars(select(UsageSession).where(UsageSession.status.in_(OPEN))))


def charge_all(session: Session, policy: Policy, now: datetime) -> list[dict]:
    """Charge every open session to ``now``, log budget warnings (once per mark),
    and return the stops that are due (``[{"key","user","server","reason"}]``),
    marking them requested."""
    points = load_prices(session)
    renew_all(session, policy, now)
    by_account: dict[int, list[UsageSession]] = {}
    for s in open_sessions(session):
        charge(session, s, now, points)
        by_account.setdefault(s.account_id, []).append(s)
    stops = []
    for account_id, sessions in by_account.items():
        account = ledger.account_by_id(session, account_id)
        if account.floor is None:  # the platform's (the warm pool): no budget, no stop
            continue
        left = ledger.available(session, account)
        warn(session, policy, account, sessions, left, now)
        for s in sessions:
            stop = enforce(policy, account, s, left, now)
            if stop:
                stops.append(stop)
    return stops


def warn(session, policy: Policy, account: Account, sessions, left: Decimal, now) -> None:
    """Log when an account's budget falls below a new ``warn_at`` mark (the
    banner shows it to the users, see ``alerts``)."""
    held = sum((dec(s.held) for s in sessions), Decimal(0))
    mark = crossed(policy, left + held, left + held + used_this_month(session, account, now))
    level = 0 if mark is None else policy.warn_at.index(mark) + 1
    for s in sessions:
        if level > s.warned:
            log.warning(
                "Budget warning for %s: %s has %s left (below %s)",
                s.key,
                account.label,
                show(left + held),
                mark,
            )
        s.warned = level


def enforce(policy: Policy, account: Account, s: UsageSession, left: Decimal, now):
    """Mark ``s`` exhausted, and return its stop once the grace period is over."""
    exhausted = dec(s.held) <= 0 and (left <= 0 or dec(s.unbilled) > 0)
    if not exhausted:
        s.exhausted_at = None
        return None
    if s.exhausted_at is None:
        s.exhausted_at = now
        log.warning("Budget of %s exhausted for %s", account.label, s.key)
    due = aware(s.exhausted_at) + timedelta(seconds=policy.grace_period)
    retry = s.stop_requested_at is None or now - aware(s.stop_requested_at) > timedelta(minutes=5)
    if now < due or not retry:
        return None
    s.stop_requested_at = now
    s.stop_reason = (
        f"budget of {account.name} exhausted at {iso(s.exhausted_at)}; "
        f"grace period of {policy.grace_period}s over"
    )
    return {"key": s.key, "user": s.user, "server": s.server, "reason": s.stop_reason}


def mark_seen(
    session: Session,
    active: dict[tuple[str, str], str | None],
    fetched_at: datetime,
    policy: Policy,
    margin: float = 30.0,
    may_close: bool = True,
) -> list[str]:
    """The reconciler's step: ``active`` maps ``(user, server)`` to the hub's start
    time of each live server. Open sessions whose server is live get
    ``last_seen_at``; the others are closed at their last sighting, unless
    ``may_close`` is false (hub events may still be on their way)."""
    points = load_prices(session)
    closed = []
    for s in open_sessions(session):
        if pool.is_pool_session(s.user, s.key):
            continue  # a warm pool member is no server of the hub's: its events close it
        started = active.get((s.user, s.server), False)
        same = started is not False and (
            started is None or s.key.endswith("/" + started) or _same_time(started, s.started_at)
        )
        if same:
            s.last_seen_at = max(aware(s.last_seen_at), fetched_at)
            continue
        if not may_close or (fetched_at - aware(s.started_at)).total_seconds() < margin:
            continue  # too young to judge, or its stop event may still be in the outbox
        close(session, s, aware(s.last_seen_at), "reconciler", points)
        closed.append(s.key)
    set_status(session, "last_reconcile", iso(fetched_at))
    return closed


def _same_time(text: str, t: datetime) -> bool:
    try:
        return abs((parse_time(text) - aware(t)).total_seconds()) < 0.001
    except ValueError:
        return False


# -- status ---------------------------------------------------------------------


def set_status(session: Session, name: str, value: str) -> None:
    row = session.get(Status, name)
    if row is None:
        session.add(Status(name=name, value=value))
    else:
        row.value = value


def get_status(session: Session) -> dict[str, str]:
    return {row.name: row.value for row in session.scalars(select(Status))}


def unreachable_events(session: Session, limit: int = 20) -> list[Event]:
    return list(
        session.scalars(
            select(Event).where(Event.type == "unreachable").order_by(Event.at.desc()).limit(limit)
        )
    )


def open_count(session: Session) -> int:
    return (
        session.scalar(
            select(func.count()).select_from(UsageSession).where(UsageSession.status.in_(OPEN))
        )
        or 0
    )
