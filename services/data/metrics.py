"""The data service's Prometheus metrics (``<prefix>metrics``, the kit's handler).

Gauges read at scrape time: datasets by kind, grants by level and holder kind
(group or user: counted, never named), stored credentials. A counter: workspace
starts the service was asked about (the hub's ``before_start`` hook), by how
many datasets they got (none or some). Dataset kinds and levels are fixed sets.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from labspace.services.kit import metrics as kit_metrics
from labspace.services.kit.db import Database

from .models import Credential, Dataset, Grant

KINDS = ("host", "volume", "pvc", "nfs", "s3")


class DataMetrics(kit_metrics.ServiceMetrics):
    def __init__(self, db: Database):
        super().__init__("data", self._refresh)
        self.db = db
        self.datasets = self.gauge("datasets", "Datasets, by kind", ("kind",))
        self.grants = self.gauge("grants", "Grants, by level and holder kind", ("level", "to"))
        self.credentials = self.gauge("credentials", "Stored dataset credentials")
        self.starts = self.counter("starts", "Workspace starts mounted, by datasets", ("datasets",))
        for got in ("none", "some"):
            self.starts.labels(got)

    def started(self, datasets: list) -> None:
        self.starts.labels("some" if datasets else "none").inc()

    async def _refresh(self) -> None:
        await self.db.read(self.read)

    def read(self, session: Session) -> None:
        kinds = kit_metrics.counts(session, Dataset.kind)
        for kind in KINDS:
            self.datasets.labels(kind).set(kinds.get(kind, 0))
        rows = session.execute(
            select(Grant.level, Grant.subject_type, func.count()).group_by(
                Grant.level, Grant.subject_type
            )
        )
        counts = {(level, to): n for level, to, n in rows}
        for level in ("read", "write"):
            for to in ("group", "user"):
                self.grants.labels(level, to).set(counts.get((level, to), 0))
        self.credentials.set(session.scalar(select(func.count()).select_from(Credential)) or 0)
