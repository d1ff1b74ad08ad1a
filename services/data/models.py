"""The data service's tables: datasets, grants, credentials and the audit trail.

Credentials are Fernet tokens (``crypto``), never plain values. Audit events are
only ever added, never changed. Schema changes go through the Alembic
migrations in ``migrations/`` (run at service start).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAME = 255  # longest user, group or server name kept
MAX_SIZE = 2**63 - 1  # bytes a size may say (64-bit integers in every database)


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(value: datetime) -> str:
    """A stored time as ISO 8601 in UTC (SQLite gives it back without its zone)."""
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


class Base(DeclarativeBase):
    pass


class Dataset(Base):
    __tablename__ = "data_datasets"

    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    title: Mapped[str] = mapped_column(String(200), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    kind: Mapped[str] = mapped_column(String(16))  # host | volume | pvc | nfs | s3
    source: Mapped[str] = mapped_column(Text, default="")
    sub_path: Mapped[str] = mapped_column(Text, default="")
    mount_path: Mapped[str] = mapped_column(Text, default="")  # as given ("" = default)
    size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # as given
    measured: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # host, no size
    owner_group: Mapped[str] = mapped_column(String(NAME), default="")
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    s3: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    source_of: Mapped[str] = mapped_column(String(16))  # settings | api
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Grant(Base):
    __tablename__ = "data_grants"
    __table_args__ = (
        UniqueConstraint("dataset_id", "subject_type", "subject", name="uq_data_grant_subject"),
    )

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dataset_id: Mapped[str] = mapped_column(
        ForeignKey("data_datasets.id", ondelete="CASCADE"), index=True
    )
    subject_type: Mapped[str] = mapped_column(String(8))  # group | user
    subject: Mapped[str] = mapped_column(String(NAME), index=True)
    level: Mapped[str] = mapped_column(String(8))  # read | write
    source_of: Mapped[str] = mapped_column(String(16))  # settings | api
    granted_by: Mapped[str] = mapped_column(String(NAME), default="")
    granted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Credential(Base):
    """One secret of an s3 dataset for one level, encrypted (``crypto.seal``)."""

    __tablename__ = "data_credentials"

    dataset_id: Mapped[str] = mapped_column(
        ForeignKey("data_datasets.id", ondelete="CASCADE"), primary_key=True
    )
    level: Mapped[str] = mapped_column(String(8), primary_key=True)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
    source_of: Mapped[str] = mapped_column(String(16))
    updated_by: Mapped[str] = mapped_column(String(NAME), default="")
    updated: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AuditEvent(Base):
    """Who changed what, when, and why; and which datasets went into which server."""

    __tablename__ = "data_audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    kind: Mapped[str] = mapped_column(String(16), index=True)  # grant|dataset|credential|start
    actor: Mapped[str] = mapped_column(String(NAME), default="")
    dataset: Mapped[str] = mapped_column(String(63), default="", index=True)
    subject: Mapped[str] = mapped_column(String(NAME + 8), default="")  # group:x | user:y
    before: Mapped[Any] = mapped_column(JSON, nullable=True)
    after: Mapped[Any] = mapped_column(JSON, nullable=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    user: Mapped[str] = mapped_column(String(NAME), default="", index=True)
    server: Mapped[str] = mapped_column(String(NAME), default="")
    datasets: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)


class AuditDataset(Base):
    """A dataset of a ``start`` event, so the trail of a dataset finds the starts
    that took it."""

    __tablename__ = "data_audit_datasets"

    event_id: Mapped[int] = mapped_column(
        ForeignKey("data_audit.id", ondelete="CASCADE"), primary_key=True
    )
    dataset_id: Mapped[str] = mapped_column(String(63), primary_key=True, index=True)
    level: Mapped[str] = mapped_column(String(8))
