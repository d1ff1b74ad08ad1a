"""The ledger: accounts, balanced transactions, balances by SUM in the database.

Rules (each a function the API, the charger and the tests share):

- every transaction is a list of legs ``(from, to, amount > 0)``: balanced by
  construction, and the database checks each leg too;
- nothing is updated or deleted: a mistake is undone by ``reverse``;
- an account with a floor (projects, personal accounts, holds) never goes below
  it: the accounts a transaction takes from are locked and checked first
  (``LedgerError(402)`` when one cannot cover it);
- every transaction records its actor and reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import event, func, insert, literal, select, union_all
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .clock import now
from .models import Account, Entry, Transaction
from .pricing import dec, iso, show

FLOORED = {"project", "personal", "hold"}
MANUAL = ("topup", "assign", "move", "allowance", "reverse")


MICRO = 1_000_000  # entries hold whole micro-units: sums are exact on every database


def micro(amount: Decimal) -> int:
    return int(dec(amount) * MICRO)


def units(value: int | Decimal) -> Decimal:
    return dec(Decimal(int(value)) / MICRO)


class LedgerError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Leg:
    source: Account
    target: Account
    amount: Decimal


def get_account(session: Session, kind: str, name: str, create: bool = True) -> Account | None:
    """The account ``kind:name``, created (floor 0 for budgets and holds) if asked."""
    cache = session.info.setdefault("ledger_accounts", {})
    if (kind, name) in cache:
        return cache[kind, name]
    found = session.scalar(select(Account).where(Account.kind == kind, Account.name == name))
    if found:
        cache[kind, name] = found
    if found or not create:
        return found
    account = Account(
        kind=kind, name=name, floor=Decimal(0) if kind in FLOORED else None, created_at=now()
    )
    try:
        with session.begin_nested():
            session.add(account)
    except IntegrityError:  # made by a concurrent transaction meanwhile
        return session.scalar(select(Account).where(Account.kind == kind, Account.name == name))
    cache[kind, name] = account
    return account


def account_by_id(session: Session, account_id: int) -> Account:
    """An account by id, kept for the whole unit of work (no repeated SELECT)."""
    cache = session.info.setdefault("ledger_accounts_by_id", {})
    if account_id not in cache:
        cache[account_id] = session.get(Account, account_id)
    return cache[account_id]


def hold_for(session: Session, account: Account) -> Account:
    return get_account(session, "hold", account.label)


def lock(session: Session, accounts: list[Account]) -> None:
    """Lock accounts (by id order, so two transactions never deadlock).
    SQLite: the transaction already holds the write lock (BEGIN IMMEDIATE)."""
    if session.get_bind().dialect.name != "postgresql":
        return
    ids = sorted({a.id for a in accounts})
    if ids:
        session.execute(select(Account.id).where(Account.id.in_(ids)).with_for_update()).all()


def balance(session: Session, account: Account) -> Decimal:
    """SUM(credits) - SUM(debits) of one account, computed by the database."""
    flush_pending(session)
    incoming = select(func.coalesce(func.sum(Entry.amount), 0)).where(Entry.credit_id == account.id)
    outgoing = select(func.coalesce(func.sum(Entry.amount), 0)).where(Entry.debit_id == account.id)
    return units(session.scalar(incoming) or 0) - units(session.scalar(outgoing) or 0)


def balances(session: Session, kind: str | None = None) -> dict[str, Decimal]:
    """Every account's balance by label (``kind:name``), in one query."""
    flush_pending(session)
    legs = union_all(
        select(Entry.credit_id.label("account_id"), Entry.amount.label("amount")),
        select(Entry.debit_id.label("account_id"), (-Entry.amount).label("amount")),
    ).subquery()
    query = (
        select(Account.kind, Account.name, func.coalesce(func.sum(legs.c.amount), 0))
        .select_from(Account)
        .outerjoin(legs, legs.c.account_id == Account.id)
        .group_by(Account.id, Account.kind, Account.name)
    )
    if kind:
        query = query.where(Account.kind == kind)
    return {f"{k}:{n}": units(total or 0) for k, n, total in session.execute(query)}


def available(session: Session, account: Account) -> Decimal:
    """What the account may still spend: balance above its floor."""
    return balance(session, account) - (account.floor or Decimal(0))


def check_floors(session: Session, legs: list[Leg]) -> None:
    """Lock the accounts the legs take from, and refuse (402) if one would go
    below its floor."""
    lock(session, [leg.source for leg in legs if leg.source.floor is not None])
    spend: dict[int, Decimal] = {}
    for leg in legs:
        spend[leg.source.id] = spend.get(leg.source.id, Decimal(0)) + leg.amount
        spend[leg.target.id] = spend.get(leg.target.id, Decimal(0)) - leg.amount
    for leg in legs:
        out = spend[leg.source.id]
        if leg.source.floor is not None and out > 0:
            left = available(session, leg.source)
            if left < out:
                raise LedgerError(
                    402,
                    f"{leg.source.label.split(':', 1)[1]} has {show(left)} left, "
                    f"{show(out)} needed",
                )


def post(
    session: Session,
    kind: str,
    legs: list[Leg],
    actor: str,
    reason: str = "",
    *,
    at: datetime,
    key: str | None = None,
    reverses: Transaction | None = None,
    session_id: int | None = None,
    covered: bool = False,
) -> Transaction:
    """Record one transaction; refuses (402) if an account would go below its floor.
    ``covered``: the caller has just checked (under lock) that the sources can pay,
    or spends a usage session's own hold (``UsageSession.held``, which the hold's
    balance always covers): the floor check is skipped."""
    legs = [leg for leg in legs if leg.amount > 0]
    if not legs:
        raise LedgerError(400, "Nothing to record: the amount must be above 0")
    for leg in legs:
        if leg.source.id == leg.target.id:
            raise LedgerError(400, f"{leg.source.label}: cannot move money to itself")
    if not covered:
        check_floors(session, legs)
    tx = Transaction(
        kind=kind,
        actor=actor,
        reason=reason,
        created_at=at,
        key=key,
        reverses_id=reverses.id if reverses else None,
        session_id=session_id,
    )
    tx.entries = [
        Entry(debit_id=leg.source.id, credit_id=leg.target.id, amount=micro(leg.amount))
        for leg in legs
    ]
    session.add(tx)  # written at the next flush, batched with the others
    return tx


PENDING = "ledger_pending"


def record(
    session: Session,
    kind: str,
    legs: list[Leg],
    reason: str,
    *,
    at: datetime,
    session_id: int,
    actor: str = "labspace-accounting",
) -> None:
    """``post`` for the charger and hub events: legs that spend a usage session's
    own hold, or what its locked account was just found to have (no floor
    check). Queued, then written in bulk (``flush_pending``) before anything
    reads the ledger and before the commit."""
    legs = [leg for leg in legs if leg.amount > 0]
    if legs:
        values = {
            "kind": kind,
            "actor": actor,
            "reason": reason,
            "created_at": at,
            "session_id": session_id,
        }
        session.info.setdefault(PENDING, []).append((values, legs))


def flush_pending(session: Session) -> None:
    """Write the queued transactions (one INSERT ... RETURNING) and their entries."""
    pending = session.info.pop(PENDING, None)
    if not pending:
        return
    ids = session.scalars(
        insert(Transaction).returning(Transaction.id, sort_by_parameter_order=True),
        [values for values, _ in pending],
    ).all()
    session.execute(
        insert(Entry),
        [
            {
                "transaction_id": tx_id,
                "debit_id": leg.source.id,
                "credit_id": leg.target.id,
                "amount": micro(leg.amount),
            }
            for tx_id, (_, legs) in zip(ids, pending, strict=True)
            for leg in legs
        ],
    )


@event.listens_for(Session, "before_commit")
def _write_pending(session: Session) -> None:
    flush_pending(session)


def reverse(session: Session, tx_id: int, actor: str, reason: str, at: datetime) -> Transaction:
    """Undo a manual transaction with its mirror image (once)."""
    tx = session.get(Transaction, tx_id)
    if tx is None:
        raise LedgerError(404, f"No such transaction: {tx_id}")
    if tx.kind not in MANUAL:
        raise LedgerError(
            409,
            f"Transaction {tx_id} is a {tx.kind}: only top-ups, assignments, moves, "
            "allowances and reversals can be reversed",
        )
    done = session.scalar(select(Transaction.id).where(Transaction.reverses_id == tx_id))
    if done:
        raise LedgerError(409, f"Transaction {tx_id} is already reversed by {done}")
    legs = [
        Leg(
            account_by_id(session, e.credit_id), account_by_id(session, e.debit_id), units(e.amount)
        )
        for e in session.scalars(select(Entry).where(Entry.transaction_id == tx_id))
    ]
    try:
        with session.begin_nested():
            undo = post(session, "reverse", legs, actor, reason, at=at, reverses=tx)
        return undo
    except IntegrityError:
        raise LedgerError(409, f"Transaction {tx_id} is already reversed") from None


def transaction_rows(session: Session, limit: int = 100, account: Account | None = None):
    """Recent transactions, one row per leg, newest first (JSON-ready)."""
    flush_pending(session)
    src = Account.__table__.alias("src")
    dst = Account.__table__.alias("dst")
    query = (
        select(
            Transaction.id,
            Transaction.kind,
            Transaction.actor,
            Transaction.reason,
            Transaction.created_at,
            Transaction.reverses_id,
            (src.c.kind + literal(":") + src.c.name).label("source"),
            (dst.c.kind + literal(":") + dst.c.name).label("target"),
            Entry.amount,
        )
        .join(Entry, Entry.transaction_id == Transaction.id)
        .join(src, src.c.id == Entry.debit_id)
        .join(dst, dst.c.id == Entry.credit_id)
        .order_by(Transaction.id.desc(), Entry.id)
        .limit(limit)
    )
    if account is not None:
        query = query.where((Entry.debit_id == account.id) | (Entry.credit_id == account.id))
    return [
        {
            "id": r.id,
            "kind": r.kind,
            "actor": r.actor,
            "reason": r.reason,
            "at": iso(r.created_at),
            "reverses": r.reverses_id,
            "from": r.source,
            "to": r.target,
            "amount": show(units(r.amount)),
        }
        for r in session.execute(query)
    ]


def totals_check(session: Session) -> tuple[Decimal, int]:
    """``(sum of all balances, accounts below their floor)``: (0, 0) when sound."""
    flush_pending(session)
    legs = union_all(
        select(Entry.credit_id.label("account_id"), Entry.amount.label("amount")),
        select(Entry.debit_id.label("account_id"), (-Entry.amount).label("amount")),
    ).subquery()
    per = (
        select(legs.c.account_id, func.sum(legs.c.amount).label("bal"))
        .group_by(legs.c.account_id)
        .subquery()
    )
    total = session.scalar(select(func.coalesce(func.sum(per.c.bal), 0)))
    below = session.scalar(
        select(func.count())
        .select_from(per)
        .join(Account, Account.id == per.c.account_id)
        .where(Account.floor.is_not(None), per.c.bal < Account.floor * MICRO)
    )
    return units(total or 0), int(below or 0)
