"""The accounting database (SQLAlchemy 2). The schema is made by the Alembic
migrations in ``migrations/``; these classes mirror it.

The ledger is append-only double entry: a ``Transaction`` holds ``Entry`` rows,
each moving a positive ``amount`` from one account to another, so every entry,
and thus every transaction, is balanced by construction (database CHECKs:
``amount > 0``, two different accounts). Triggers refuse UPDATE and DELETE on
both tables. A balance is ``SUM(credits) - SUM(debits)``, computed by the
database and never stored.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

Amount = Numeric(20, 6)

ACCOUNT_KINDS = ("project", "personal", "hold", "external", "usage")
TRANSACTION_KINDS = (
    "topup",
    "assign",
    "move",
    "reverse",
    "allowance",
    "reserve",
    "charge",
    "refund",
    "release",
)


class Base(DeclarativeBase):
    pass


class Account(Base):
    """``project:<group>``, ``personal:<user>``, ``hold:<kind>:<name>`` (reserved
    money of running sessions), ``external:topup|allowance`` (where budgets come
    from) and ``usage:all`` (where charges go). ``floor`` is the lowest balance
    allowed; NULL: none (the external sources and the usage sink)."""

    __tablename__ = "accounts"
    __table_args__ = (
        UniqueConstraint("kind", "name", name="uq_accounts_kind_name"),
        CheckConstraint(
            "kind IN ('project', 'personal', 'hold', 'external', 'usage')", name="ck_accounts_kind"
        ),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(255))
    floor: Mapped[Decimal | None] = mapped_column(Amount, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.name}"


class Transaction(Base):
    __tablename__ = "transactions"
    __table_args__ = (Index("ix_transactions_created_at", "created_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(255))
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # idempotency: a monthly allowance, a reservation... is recorded once
    key: Mapped[str | None] = mapped_column(String(512), unique=True, nullable=True)
    # a transaction is reversed at most once
    reverses_id: Mapped[int | None] = mapped_column(
        ForeignKey("transactions.id"), unique=True, nullable=True
    )
    session_id: Mapped[int | None] = mapped_column(
        ForeignKey("usage_sessions.id"), nullable=True, index=True
    )
    entries: Mapped[list[Entry]] = relationship(lazy="raise")


class Entry(Base):
    __tablename__ = "entries"
    __table_args__ = (
        CheckConstraint("amount > 0", name="ck_entries_positive"),
        CheckConstraint("debit_id <> credit_id", name="ck_entries_two_accounts"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    transaction_id: Mapped[int] = mapped_column(ForeignKey("transactions.id"), index=True)
    debit_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    credit_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)  # micro-units (1e-6), exact sums


class UsageSession(Base):
    """One server start. ``key`` = ``<user>/<server>/<hub start time>``.
    ``cost`` = ``charged`` + ``unbilled`` (usage past the account's floor)."""

    __tablename__ = "usage_sessions"
    __table_args__ = (
        Index("ix_sessions_user_started", "user", "started_at"),
        Index("ix_sessions_project_started", "project", "started_at"),
        Index("ix_sessions_started", "started_at"),
        Index("ix_sessions_status", "status"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(512), unique=True)
    user: Mapped[str] = mapped_column(String(255))
    server: Mapped[str] = mapped_column(String(255), default="")
    project: Mapped[str | None] = mapped_column(String(255), nullable=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    profile: Mapped[str] = mapped_column(String(64))
    display_name: Mapped[str] = mapped_column(String(255), default="")
    cpu: Mapped[float | None] = mapped_column(Numeric(10, 3), nullable=True)
    mem_gib: Mapped[float | None] = mapped_column(Numeric(12, 3), nullable=True)
    gpus: Mapped[int] = mapped_column(Integer, default=0)
    price_per_hour: Mapped[Decimal] = mapped_column(Amount)
    reserved: Mapped[Decimal] = mapped_column(Amount, default=0)
    held: Mapped[Decimal] = mapped_column(Amount, default=0)
    charged: Mapped[Decimal] = mapped_column(Amount, default=0)
    unbilled: Mapped[Decimal] = mapped_column(Amount, default=0)
    cost: Mapped[Decimal] = mapped_column(Amount, default=0)
    status: Mapped[str] = mapped_column(String(16), default="reserved")  # running, closed
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_charged_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    closed_by: Mapped[str | None] = mapped_column(String(32), nullable=True)
    exhausted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    warned: Mapped[int] = mapped_column(Integer, default=0)
    stop_requested_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )
    stop_reason: Mapped[str | None] = mapped_column(Text, nullable=True)


class Event(Base):
    """Start/stop events from the hub side's outbox, deduplicated by ``id``;
    a stop whose session is not known yet waits (``applied = 0``)."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_key", "key"), Index("ix_events_type_at", "type", "at"))
    id: Mapped[str] = mapped_column(String(600), primary_key=True)
    key: Mapped[str] = mapped_column(String(512))
    type: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    user: Mapped[str] = mapped_column(String(255), default="")
    server: Mapped[str] = mapped_column(String(255), default="")
    reason: Mapped[str] = mapped_column(Text, default="")
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    applied: Mapped[int] = mapped_column(Integer, default=0)


class PricePoint(Base):
    """A profile's price per hour from ``effective_from`` on."""

    __tablename__ = "prices"
    __table_args__ = (UniqueConstraint("profile", "effective_from", name="uq_prices_profile_from"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    profile: Mapped[str] = mapped_column(String(64))
    effective_from: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    price: Mapped[Decimal] = mapped_column(Amount)
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Status(Base):
    """Small facts about the service itself: last reconcile, outbox depth..."""

    __tablename__ = "status"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text, default="")
