"""The catalog's tables: apps, their versions, and launches.

Every change of an app's definition is a new ``AppVersion`` row; old rows stay,
so a launch keeps the version it started with. Schema changes go through the
Alembic migrations in ``migrations/`` (run at service start).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class App(Base):
    __tablename__ = "catalog_apps"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    source: Mapped[str] = mapped_column(String(16))  # settings | bundled | admin
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    versions: Mapped[list[AppVersion]] = relationship(
        back_populates="app",
        order_by="AppVersion.revision",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )

    @property
    def current(self) -> AppVersion:
        return self.versions[-1]


class AppVersion(Base):
    __tablename__ = "catalog_app_versions"
    __table_args__ = (
        UniqueConstraint("app_id", "version", name="uq_catalog_version_label"),
        UniqueConstraint("app_id", "revision", name="uq_catalog_version_revision"),
    )

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    app_id: Mapped[str] = mapped_column(ForeignKey("catalog_apps.id", ondelete="CASCADE"))
    revision: Mapped[int] = mapped_column(Integer)
    version: Mapped[str] = mapped_column(String(60))
    definition: Mapped[dict[str, Any]] = mapped_column(JSON)
    digest: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(16))
    created_by: Mapped[str] = mapped_column(String(255), default="")
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    app: Mapped[App] = relationship(back_populates="versions")


class Launch(Base):
    __tablename__ = "catalog_launches"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user: Mapped[str] = mapped_column(String(255), index=True)
    app_id: Mapped[str] = mapped_column(String(40))
    version: Mapped[str] = mapped_column(String(60))
    kind: Mapped[str] = mapped_column(String(16))
    server_name: Mapped[str] = mapped_column(String(255), default="")
    state: Mapped[str] = mapped_column(String(16), default="starting")
    message: Mapped[str] = mapped_column(Text, default="")
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
