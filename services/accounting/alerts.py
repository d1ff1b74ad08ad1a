"""Budget alerts for a user's banner (hub pages) and the service's pages."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from . import ledger
from .clock import month_start
from .models import Account, UsageSession
from .policy import Policy
from .pricing import aware, dec, show

OPEN = ("reserved", "running")


def used_this_month(session: Session, account: Account, now: datetime) -> Decimal:
    total = session.scalar(
        select(func.coalesce(func.sum(UsageSession.cost), 0)).where(
            UsageSession.account_id == account.id, UsageSession.started_at >= month_start(now)
        )
    )
    return dec(total or 0)


def crossed(policy: Policy, left: Decimal, reference: Decimal) -> float | None:
    """The lowest ``warn_at`` mark ``left`` is at or below (fractions of
    ``reference`` below 1, amounts from 1 up); None if none."""
    hit, lowest = None, None
    for mark in policy.warn_at:
        limit = dec(reference * dec(mark)) if mark < 1 else dec(mark)
        if left <= limit and (lowest is None or limit < lowest):
            hit, lowest = mark, limit  # the most severe mark crossed
    return hit


def for_user(
    session: Session, policy: Policy, user: str, now: datetime, url: str = ""
) -> list[dict[str, Any]]:
    """Alerts about the budgets the user's running servers are charged to."""
    alerts = []
    mine = session.scalars(
        select(UsageSession).where(UsageSession.user == user, UsageSession.status.in_(OPEN))
    ).all()
    by_account: dict[int, list[UsageSession]] = {}
    for s in mine:
        by_account.setdefault(s.account_id, []).append(s)
    for account_id, sessions in sorted(by_account.items()):
        account = ledger.account_by_id(session, account_id)
        who = f"Project {account.name}" if account.kind == "project" else "Your personal allowance"
        left = ledger.available(session, account)
        exhausted = [s for s in sessions if s.exhausted_at is not None]
        if exhausted:
            first = min(aware(s.exhausted_at) for s in exhausted)
            stop_at = first + timedelta(seconds=policy.grace_period)
            names = ", ".join(repr(s.server) if s.server else "default" for s in exhausted)
            alerts.append(
                {
                    "level": "danger",
                    "text": f"{who} has no budget left: your server {names} stops at "
                    f"{stop_at:%H:%M} UTC unless it is topped up",
                    "url": url,
                }
            )
            continue
        held = sum((dec(s.held) for s in sessions), Decimal(0))
        mark = crossed(policy, left + held, left + held + used_this_month(session, account, now))
        if mark is not None:
            below = f"{mark:.0%}" if mark < 1 else f"{show(dec(mark))} {policy.currency}"
            alerts.append(
                {
                    "level": "warning",
                    "text": f"{who} has {show(left + held)} {policy.currency} left "
                    f"(below {below}); running servers stop when it is used up",
                    "url": url,
                }
            )
    return alerts
