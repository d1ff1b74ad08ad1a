"""The accounting database: the kit's ``Database`` with accounting's migrations.

Concurrency: every unit of work that may move money locks what it spends from.
On PostgreSQL that is ``SELECT ... FOR UPDATE`` on the account rows
(``ledger.lock``); on SQLite the kit starts a writing transaction with ``BEGIN
IMMEDIATE``, so two reservations never interleave their balance check and their
insert. A writer that waits longer than ``busy_timeout`` for SQLite's lock gets
``DatabaseBusy`` ("The accounting database is busy ..."), which the handlers
answer with a 503.
"""

from __future__ import annotations

from importlib import resources

from labspace.services.kit.db import BUSY_TIMEOUT, Database

MIGRATIONS = resources.files(__package__).joinpath("migrations")


def open_database(url: str, busy_timeout: float = BUSY_TIMEOUT, threads: int = 8) -> Database:
    """The accounting database at ``url`` (SQLite or PostgreSQL), not yet migrated."""
    return Database(
        url, str(MIGRATIONS), name="accounting", threads=threads, busy_timeout=busy_timeout
    )
