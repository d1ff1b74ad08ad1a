"""A service's database: engine, migrations at start, one transaction per unit
of work, and a thread pool so the tornado loop never waits on a query.

Concurrency: on SQLite a writing transaction starts with ``BEGIN IMMEDIATE``,
which takes the database's one write lock up front, so two writers never
interleave a check and an insert (on PostgreSQL a service locks rows with
``SELECT ... FOR UPDATE`` where it needs to). Read-only work (``Database.read``)
runs in a deferred transaction that never takes that lock (WAL lets it read
while a writer writes). A read that finds it must write after all (a row made on
first sight) is stopped before its first write and run again as a writing unit
of work.

A writer that waits longer than ``busy_timeout`` for SQLite's lock gets
``DatabaseBusy`` (handlers answer 503 with its message), not a 500 after 30 s.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from labspace.state import database_url

T = TypeVar("T")
READ_ONLY = "labspace_read_only"  # execution option of the read engine
BUSY_TIMEOUT = 3.0  # seconds a writer waits for SQLite's write lock


class DatabaseBusy(Exception):
    """SQLite's write lock stayed taken for longer than the busy timeout."""


class NeedsWrite(Exception):
    """A read-only unit of work tried to write (run it again as a write)."""


def sqlalchemy_url(url: str) -> str:
    """``url`` as SQLAlchemy reads it (see ``labspace.state.database_url``)."""
    if not url:
        raise ValueError("A service database needs a URL")
    return database_url(url, Path())


def make_engine(url: str, pool_size: int = 8, busy_timeout: float = BUSY_TIMEOUT) -> Engine:
    """An engine for ``url`` (plain ``postgresql://`` is read as psycopg 3)."""
    url = sqlalchemy_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"timeout": busy_timeout, "check_same_thread": False}
        )
        _sqlite_immediate(engine, in_memory=url in ("sqlite://", "sqlite:///:memory:"))
        return engine
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        connect_args={"options": "-c timezone=UTC"},
    )


def _sqlite_immediate(engine: Engine, in_memory: bool) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        if not in_memory:
            cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn):
        read = conn.get_execution_options().get(READ_ONLY)
        conn.exec_driver_sql("BEGIN" if read else "BEGIN IMMEDIATE")


def _no_writes(session: Session, _context, _instances) -> None:
    if session.new or session.dirty or session.deleted:
        raise NeedsWrite


def is_locked(error: OperationalError) -> bool:
    """SQLite's "database is locked" (the busy timeout ran out)."""
    text = str(error.orig)
    return "database is locked" in text or "database table is locked" in text


def upgrade(engine: Engine, migrations: str | Path) -> None:
    """``alembic upgrade head`` on ``engine`` with the scripts in ``migrations``."""
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def migration_env(metadata, version_table: str = "alembic_version") -> None:
    """The whole body of a service's ``migrations/env.py``: run the migrations on
    the connection :func:`upgrade` hands over, or, from the ``alembic`` command
    line (``alembic revision --autogenerate``), on ``sqlalchemy.url``.
    ``version_table`` keeps services that share one database apart."""
    from alembic import context
    from sqlalchemy import create_engine

    def run(connection) -> None:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            version_table=version_table,
            render_as_batch=True,
        )
        with context.begin_transaction():
            context.run_migrations()

    connection = context.config.attributes.get("connection")
    if connection is not None:
        run(connection)
        return
    engine = create_engine(context.config.get_main_option("sqlalchemy.url"))
    with engine.begin() as conn:
        run(conn)


class Database:
    """An engine, session factories and a small thread pool, so the tornado loop
    never waits on the database. ``name`` goes into messages ("the accounting
    database is busy") and thread names."""

    def __init__(
        self,
        url: str,
        migrations: str | Path,
        *,
        name: str = "service",
        threads: int = 8,
        busy_timeout: float = BUSY_TIMEOUT,
    ):
        self.url = sqlalchemy_url(url)
        self.name = name
        self.migrations = migrations
        self.engine = make_engine(self.url, pool_size=threads, busy_timeout=busy_timeout)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.read_sessions = sessionmaker(
            self.engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False
        )
        event.listen(self.read_sessions, "before_flush", _no_writes)
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix=f"{name}-db")

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def upgrade(self) -> None:
        """Migrate to the newest schema (a service does it once, at its start)."""
        upgrade(self.engine, self.migrations)

    def work(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        """Run ``fn(session, ...)`` in one writing transaction, committed on success."""
        try:
            with self.sessions() as session, session.begin():
                return fn(session, *args, **kw)
        except OperationalError as e:
            if is_locked(e):
                raise DatabaseBusy(
                    f"The {self.name} database is busy (another write holds it); try again shortly"
                ) from None
            raise

    def read_work(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        """Run ``fn(session, ...)`` in a read-only transaction; if it must
        write after all, run it again as a writing unit of work."""
        try:
            with self.read_sessions() as session, session.begin():
                return fn(session, *args, **kw)
        except NeedsWrite:
            return self.work(fn, *args, **kw)

    async def run(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        """``work`` (a writing transaction) on the thread pool."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, lambda: self.work(fn, *args, **kw))

    async def read(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        """``read_work`` (a read-only transaction) on the thread pool."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, lambda: self.read_work(fn, *args, **kw))

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        self.engine.dispose()
