"""Database set-up: engine, migrations at start, one transaction per unit of work.

Concurrency: every unit of work that may move money locks what it spends from.
On PostgreSQL that is ``SELECT ... FOR UPDATE`` on the account rows
(``ledger.lock``); on SQLite every transaction starts with ``BEGIN IMMEDIATE``,
which takes the database's one write lock up front, so two reservations never
interleave their balance check and their insert.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker

T = TypeVar("T")


def normalise_url(url: str) -> str:
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            return "postgresql+psycopg://" + url[len(plain) :]
    return url


def make_engine(url: str, pool_size: int = 8) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
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
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def upgrade(engine: Engine) -> None:
    """``alembic upgrade head`` on ``engine`` (the migrations ship in the package)."""
    here = resources.files("labspace.services.accounting").joinpath("migrations")
    cfg = Config()
    cfg.set_main_option("script_location", str(here))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


class Database:
    """An engine, a session factory and a small thread pool, so the tornado
    loop never waits on the database."""

    def __init__(self, url: str, threads: int = 8):
        self.url = normalise_url(url)
        self.engine = make_engine(self.url, pool_size=threads)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="accounting-db")

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def upgrade(self) -> None:
        upgrade(self.engine)

    def work(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        """Run ``fn(session, ...)`` in one transaction, committed on success."""
        with self.sessions() as session, session.begin():
            return fn(session, *args, **kw)

    async def run(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        """``work`` on the thread pool."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, lambda: self.work(fn, *args, **kw))

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        self.engine.dispose()
