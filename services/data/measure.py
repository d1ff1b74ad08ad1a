"""Sizes of host datasets given without one, measured off the event loop.

A host dataset whose settings or API body give no ``size`` is measured once at
the service's start and after each change: the apparent size of its regular
files, symlinks not followed (nothing outside the dataset's folder is counted).
Bounded by ``MAX_ENTRIES`` entries and ``MAX_SECONDS``: a folder too big to
measure in that time stays "unknown" (``size`` null) and the log says so; the
admin can give its size. One thread of its own, so the database's threads and
the event loop never wait on a walk.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import select
from sqlalchemy.orm import Session

from .models import Dataset

MAX_ENTRIES = 200_000
MAX_SECONDS = 10.0
log = logging.getLogger("labspace.data")


def folder_size(path: str, max_entries: int = MAX_ENTRIES, max_seconds: float = MAX_SECONDS):
    """Bytes of the regular files under ``path`` (links not followed), or None
    when the walk would take more than ``max_entries`` entries or ``max_seconds``."""
    deadline = time.monotonic() + max_seconds
    total, seen, stack = 0, 0, [path]
    while stack:
        try:
            entries = os.scandir(stack.pop())
        except OSError:
            continue
        with entries:
            for entry in entries:
                seen += 1
                if seen > max_entries or time.monotonic() > deadline:
                    return None
                try:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    elif entry.is_file(follow_symlinks=False):
                        total += entry.stat(follow_symlinks=False).st_size
                except OSError:
                    continue
    return total


def _unmeasured(s: Session, ids: list[str] | None) -> list[tuple[str, str]]:
    q = select(Dataset.id, Dataset.source).where(Dataset.kind == "host", Dataset.size.is_(None))
    if ids is not None:
        q = q.where(Dataset.id.in_(ids))
    return list(s.execute(q))


def _store(s: Session, dataset_id: str, source: str, size: int | None) -> None:
    ds = s.get(Dataset, dataset_id)
    if ds is not None and ds.source == source and ds.measured != size:
        ds.measured = size


class Measurer:
    """Measures host datasets on its own thread; ``soon(ids)`` after a change."""

    def __init__(self, db, max_entries: int = MAX_ENTRIES, max_seconds: float = MAX_SECONDS):
        self.db = db
        self.max_entries = max_entries
        self.max_seconds = max_seconds
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="data-measure")
        self.tasks: set[asyncio.Task] = set()

    async def measure(self, ids: list[str] | None = None) -> None:
        """Measure the host datasets without a size (``ids``: only those)."""
        loop = asyncio.get_running_loop()
        for dataset_id, source in await self.db.read(_unmeasured, ids):
            size = await loop.run_in_executor(
                self.pool, folder_size, source, self.max_entries, self.max_seconds
            )
            if size is None:
                log.warning(
                    "Dataset %s: too big to measure (over %d entries or %.0f s); its size stays "
                    "unknown unless given",
                    dataset_id,
                    self.max_entries,
                    self.max_seconds,
                )
            await self.db.run(_store, dataset_id, source, size)

    def soon(self, ids: list[str] | None = None) -> None:
        task = asyncio.ensure_future(self.measure(ids))
        self.tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("Measuring datasets failed", exc_info=task.exception())

    async def stop(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        self.pool.shutdown(wait=False, cancel_futures=True)
