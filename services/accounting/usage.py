"""Usage sessions: reserve at start, charge while running, close at stop.

Each function is one unit of work on a SQLAlchemy session (``Database.work``
gives it a transaction): the ledger moves money, the session row keeps the
running totals. A session's money flows

- reserve: account -> hold (the minimum period, refused below the floor);
- charge: hold -> usage first, then account -> usage down to the floor; what
  the floor does not allow is ``unbilled`` (the budget is exhausted; the
  charger stops the server after the grace period);
- close: charge up to the end (or refund what was charged past it), then
  hold -> account for what is left.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from . import ledger, pool
from .ledger import LedgerError, Leg
from .models import Account, Event, PricePoint, Transaction, UsageSession
from .policy import Policy
from .pricing import Point, aware, cost, dec, derived_price, iso, merge_new_points, price_at, show

log = logging.getLogger("labspace.accounting")
OPEN = ("reserved", "running")
SYSTEM = "labspace-accounting"


# -- prices ---------------------------------------------------------------------


def sync_prices(session: Session, policy: Policy, now: datetime) -> int:
    """Record the settings' prices; a changed price applies from ``now`` on."""
    added = 0
    stored = load_prices(session)
    for slug, wanted in policy.schedule().items():
        for p in merge_new_points(stored.get(slug, []), wanted, now):
            session.add(
                PricePoint(
                    profile=slug, effective_from=p.effective_from, price=p.price, recorded_at=now
                )
            )
            added += 1
    session.flush()
    return added


def load_prices(session: Session) -> dict[str, list[Point]]:
    out: dict[str, list[Point]] = {}
    rows = session.scalars(select(PricePoint).order_by(PricePoint.effective_from))
    for row in rows:
        out.setdefault(row.profile, []).append(Point(aware(row.effective_from), dec(row.price)))
    return out


def price_now(points: dict[str, list[Point]], slug: str, at: datetime) -> Decimal | None:
    return price_at(points.get(slug, []), at)


# -- accounts -------------------------------------------------------------------


def budget_account(session: Session, kind: str, name: str, policy: Policy, at: datetime):
    account = ledger.get_account(session, kind, name)
    if kind == "personal":
        renew(session, account, policy.personal_allowance, at)
    return account


def renew(session: Session, account: Account, amount: Decimal, at: datetime) -> bool:
    """This month's allowance for ``account`` (once per month, by key)."""
    if amount <= 0:
        return False
    key = f"allowance:{account.label}:{at:%Y-%m}"
    if session.scalar(select(Transaction.id).where(Transaction.key == key)):
        return False
    source = ledger.get_account(session, "external", "allowance")
    try:
        with session.begin_nested():
            ledger.post(
                session,
                "allowance",
                [Leg(source, account, amount)],
                SYSTEM,
                f"monthly allowance {at:%Y-%m}",
                at=at,
                key=key,
            )
    except IntegrityError:
        return False
    return True


def renew_all(session: Session, policy: Policy, at: datetime) -> int:
    done = 0
    for project, amount in policy.monthly_allowance.items():
        done += renew(session, budget_account(session, "project", project, policy, at), amount, at)
    return done


# -- reserve --------------------------------------------------------------------


@dataclass
class Refusal(Exception):
    status: int
    message: str


def choose_account(session: Session, policy: Policy, req: dict[str, Any], at: datetime):
    """``(account, project or None)`` a start is charged to; Refusal otherwise."""
    mine = policy.projects_of(req.get("groups") or [])
    project = req.get("project")
    if project:
        if project not in mine:
            yours = ", ".join(mine) or "none"
            raise Refusal(403, f"Project {project!r} is not one of yours (yours: {yours})")
        return budget_account(session, "project", project, policy, at), project
    if mine:
        project = policy.default_project(req["user"], mine)
        return budget_account(session, "project", project, policy, at), project
    if policy.refuse_without_project:
        raise Refusal(
            403,
            "You are in no project, so you cannot start a workspace "
            "(ask an administrator to add you to one)",
        )
    return budget_account(session, "personal", req["user"], policy, at), None


def answer(s: UsageSession, balance_after: Decimal | None = None) -> dict[str, Any]:
    return {
        "session": s.key,
        "project": s.project,
        "price_per_hour": show(s.price_per_hour),
        "reserved": show(s.reserved),
        "balance_after": show(balance_after) if balance_after is not None else None,
    }


def reserve(session: Session, policy: Policy, req: dict[str, Any], now: datetime) -> dict:
    """Open a usage session and hold its minimum period (idempotent by key)."""
    existing = session.scalar(select(UsageSession).where(UsageSession.key == req["key"]))
    if existing:
        return answer(existing)
    at = req["at"]
    account, project = choose_account(session, policy, req, at)
    ledger.lock(session, [account])
    existing = session.scalar(select(UsageSession).where(UsageSession.key == req["key"]))
    if existing:  # a concurrent repeat won the lock first
        return answer(existing)
    price = price_now(load_prices(session), req["profile"], at)
    if price is None:
        price = derived_price(req.get("resources") or {}, policy.get("prices")["resources"])
    amount = dec(price * Decimal(str(policy.min_period_hours)))
    left = ledger.available(session, account)
    if left < amount:
        who = f"Project {project}" if project else "Your personal allowance"
        raise Refusal(
            402,
            f"{who} has {show(left)} {policy.currency} left; "
            f"{req.get('display_name') or req['profile']} costs {show(price)}/hour",
        )
    s = open_session(session, req, account, project, price, at)
    if amount > 0:
        hold = ledger.hold_for(session, account)
        ledger.post(
            session,
            "reserve",
            [Leg(account, hold, amount)],
            req["user"],
            f"minimum period of {s.key}",
            at=at,
            session_id=s.id,
            covered=True,  # checked above, under the account's lock
        )
        s.reserved = s.held = amount
    apply_waiting(session, policy, s.key, now)
    return answer(s, left - amount)


def open_session(session, req, account, project, price, at) -> UsageSession:
    res = req.get("resources") or {}
    s = UsageSession(
        key=req["key"],
        user=req["user"],
        server=req.get("server") or "",
        project=project,
        account_id=account.id,
        profile=req["profile"],
        display_name=req.get("display_name") or req["profile"],
        cpu=res.get("cpu"),
        mem_gib=res.get("mem_gib"),
        gpus=int(res.get("gpus") or 0),
        price_per_hour=price,
        reserved=Decimal(0),
        held=Decimal(0),
        charged=Decimal(0),
        unbilled=Decimal(0),
        cost=Decimal(0),
        status="reserved",
        started_at=at,
        last_charged_at=at,
        last_seen_at=at,
        warned=0,
    )
    session.add(s)
    session.flush()
    return s


# -- charge and close -----------------------------------------------------------


def charge(session: Session, s: UsageSession, until: datetime, points) -> Decimal:
    """Charge ``s`` from its last charge to ``until``; returns the amount due."""
    start = aware(s.last_charged_at)
    if until <= start:
        return Decimal(0)
    due = cost(
        points.get(s.profile) or [Point(aware(s.started_at), dec(s.price_per_hour))], start, until
    )
    account = ledger.account_by_id(session, s.account_id)
    usage = ledger.get_account(session, "usage", "all")
    from_hold = min(due, dec(s.held))
    rest = due - from_hold
    from_account = Decimal(0)
    if rest > 0 and account.floor is None:  # the platform's (warm pool): no budget to run out
        from_account = rest
    elif rest > 0:  # past the reservation: what the account can still pay (locked)
        ledger.lock(session, [account])
        from_account = min(rest, max(ledger.available(session, account), Decimal(0)))
    legs = []
    if from_hold > 0:
        legs.append(Leg(ledger.hold_for(session, account), usage, from_hold))
    if from_account > 0:
        legs.append(Leg(account, usage, from_account))
    if legs:
        ledger.record(
            session,
            "charge",
            legs,
            f"usage of {s.key} to {iso(until)}",
            at=until,
            session_id=s.id,
        )
    s.held = dec(s.held) - from_hold
    s.charged = dec(s.charged) + from_hold + from_account
    s.unbilled = dec(s.unbilled) + (rest - from_account)
    s.cost = dec(s.cost) + due
    s.last_charged_at = until
    return due


def refund_after(session: Session, s: UsageSession, end: datetime, points) -> None:
    """The session ended at ``end``, before its last charge: give back the excess."""
    over = cost(
        points.get(s.profile) or [Point(aware(s.started_at), dec(s.price_per_hour))],
        end,
        aware(s.last_charged_at),
    )
    over = min(over, dec(s.cost))
    from_unbilled = min(over, dec(s.unbilled))
    back = over - from_unbilled
    if back > 0:
        account = ledger.account_by_id(session, s.account_id)
        usage = ledger.get_account(session, "usage", "all")
        ledger.record(
            session,
            "refund",
            [Leg(usage, account, back)],
            f"{s.key} ended at {iso(end)}",
            at=end,
            session_id=s.id,
        )
    s.unbilled = dec(s.unbilled) - from_unbilled
    s.charged = dec(s.charged) - back
    s.cost = dec(s.cost) - over
    s.last_charged_at = end


def close(session: Session, s: UsageSession, at: datetime, closed_by: str, points) -> bool:
    """End ``s`` at ``at``: charge the rest (or refund the excess), release the hold."""
    if s.status == "closed":
        return reclose(session, s, at, closed_by, points)
    end = max(aware(at), aware(s.started_at))
    if end >= aware(s.last_charged_at):
        charge(session, s, end, points)
    else:
        refund_after(session, s, end, points)
    if dec(s.held) > 0:
        account = ledger.account_by_id(session, s.account_id)
        hold = ledger.hold_for(session, account)
        ledger.record(
            session,
            "release",
            [Leg(hold, account, dec(s.held))],
            f"end of {s.key}",
            at=end,
            session_id=s.id,
        )
        s.held = Decimal(0)
    s.status, s.ended_at, s.closed_by = "closed", end, closed_by
    s.last_seen_at = max(aware(s.last_seen_at), end)
    log.info("Closed %s at %s (%s): cost %s", s.key, iso(end), closed_by, show(s.cost))
    return True


def reclose(session: Session, s: UsageSession, at: datetime, closed_by: str, points) -> bool:
    """The hub's own stop of a session the reconciler closed: its time wins."""
    if s.closed_by != "reconciler" or closed_by == "reconciler":
        return False
    end = max(aware(at), aware(s.started_at))
    if end >= aware(s.last_charged_at):
        charge(session, s, end, points)
    else:
        refund_after(session, s, end, points)
    log.info(
        "Re-closed %s at %s (%s; the reconciler had %s)",
        s.key,
        iso(end),
        closed_by,
        iso(s.ended_at),
    )
    s.ended_at, s.closed_by = end, closed_by
    return True


# -- events from the hub side ---------------------------------------------------


def ingest(session: Session, policy: Policy, events: list[dict], now: datetime) -> dict:
    """Record and apply hub events, deduplicated by id (written in bulk)."""
    ids = [e["id"] for e in events]
    seen = set(session.scalars(select(Event.id).where(Event.id.in_(ids))))
    duplicates = 0
    points = load_prices(session)
    keys = {e["key"] for e in events}
    known = {
        s.key: s for s in session.scalars(select(UsageSession).where(UsageSession.key.in_(keys)))
    }
    rows: list[Event] = []
    waiting: dict[str, list[Event]] = {}  # stops of this batch before their session
    for e in events:
        if e["id"] in seen:
            duplicates += 1
            continue
        seen.add(e["id"])
        row = Event(
            id=e["id"],
            key=e["key"],
            type=e["type"],
            at=e["at"],
            user=e.get("user") or "",
            server=e.get("server") or "",
            reason=str(e.get("reason") or e.get("decision") or "")[:500],
            received_at=now,
            applied=0,
        )
        row.applied = int(apply(session, policy, row, e, points, now, known))
        rows.append(row)
        if not row.applied:
            waiting.setdefault(row.key, []).append(row)
        elif row.key in known:
            for early in waiting.pop(row.key, []):
                early.applied = int(apply(session, policy, early, {}, points, now, known))
    if rows:
        session.execute(insert(Event), [{c: getattr(r, c) for c in EVENT_COLUMNS} for r in rows])
    return {"accepted": len(rows), "duplicates": duplicates}


EVENT_COLUMNS = ("id", "key", "type", "at", "user", "server", "reason", "received_at", "applied")


def apply(session, policy, row: Event, e: dict, points, now, known=None) -> bool:
    """Apply one event; ``known``: the batch's sessions by key (else looked up)."""
    if known is None:
        known = {}
        found = session.scalar(select(UsageSession).where(UsageSession.key == row.key))
        if found is not None:
            known[row.key] = found
    s = known.get(row.key)
    if row.type == "unreachable":
        return True
    if row.type == "start":
        if s is None and isinstance(e.get("reserve"), dict):
            opener = open_platform if e["reserve"].get("platform") else open_unreserved
            s = known[row.key] = opener(session, policy, e["reserve"], row.at)
            apply_waiting(session, policy, row.key, now)  # its stop may have come first
        if s is None:
            return False
        if s.status == "reserved":
            s.status = "running"
        s.last_seen_at = max(aware(s.last_seen_at), aware(row.at))
        return True
    if s is None:
        return False  # waits for its session (apply_waiting)
    closed_by = {"stop": "stop", "start_failed": "start_failed"}.get(row.type, row.type)
    close(session, s, aware(row.at), closed_by, points)
    return True


def open_unreserved(session, policy, req: dict, at: datetime) -> UsageSession | None:
    """A start the service never reserved (it was unreachable and the hub let it
    start): open the session without a hold, so its usage is still charged."""
    try:
        req = {**req, "at": at}
        account, project = choose_account(session, policy, req, at)
    except (Refusal, KeyError):
        account, project = (
            budget_account(session, "personal", req.get("user", "?"), policy, at),
            None,
        )
    price = price_now(load_prices(session), req.get("profile", ""), at) or Decimal(0)
    return open_session(session, req, account, project, price, at)


def pool_price(points, policy: Policy, profiles: list[str], at: datetime) -> Decimal:
    """The price per hour of one idle warm pool member: the lowest price among
    the profiles it may become (``profiles``; every profile of the settings when
    empty), 0 when none has one (see ``pool``)."""
    slugs = profiles or list(policy.display_names())
    prices = [p for p in (price_now(points, slug, at) for slug in slugs) if p is not None]
    return min(prices, default=Decimal(0))


def open_platform(session, policy, req: dict, at: datetime) -> UsageSession:
    """A warm pool member's session: the platform's account, the pool's price."""
    account = ledger.get_account(session, *pool.ACCOUNT)
    price = pool_price(load_prices(session), policy, req["platform"].get("profiles") or [], at)
    req = {**req, "user": pool.POOL_USER, "at": at}
    return open_session(session, req, account, None, price, at)


def apply_waiting(session, policy, key: str, now) -> None:
    """Events that arrived before their session (a stop before its reserve)."""
    waiting = session.scalars(
        select(Event).where(Event.key == key, Event.applied == 0).order_by(Event.at)
    ).all()
    points = load_prices(session)
    for row in waiting:
        row.applied = int(apply(session, policy, row, {}, points, now))


__all__ = ["LedgerError", "Refusal", "reserve", "ingest"]
