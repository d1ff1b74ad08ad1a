"""The catalog's Prometheus metrics (``<prefix>metrics``, the kit's handler).

Counters: launches asked for, by outcome (``launched``: the hub took the start;
``refused``: the catalog or the hub said no; ``failed``: the start failed, at
once or later as the follower saw it) and by kind. Gauges read at scrape time:
apps by state (enabled, disabled) and launches by state. Apps' ids come from
the catalog's admins, never from users; no label holds a user name.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from labspace.services.kit import metrics as kit_metrics
from labspace.services.kit.db import Database
from labspace.services.kit.metrics import counts

from .models import App, Launch

OUTCOMES = ("launched", "refused", "failed")
KINDS = ("proxied", "standalone")
LAUNCH_STATES = ("starting", "running", "stopping", "stopped", "failed")


class CatalogMetrics(kit_metrics.ServiceMetrics):
    def __init__(self, db: Database | None = None):
        super().__init__("catalog", self._refresh if db is not None else None)
        self.db = db
        self.launches = self.counter(
            "launches", "Launches asked for, by outcome and app kind", ("outcome", "kind")
        )
        for outcome in OUTCOMES:  # every series exists from the start (rates read 0)
            for kind in KINDS:
                self.launches.labels(outcome, kind)
        self.apps = self.gauge("apps", "Apps in the catalog, by state", ("state",))
        self.launch_rows = self.gauge(
            "launch_rows", "Recorded launches, by their last state", ("state",)
        )

    def launched(self, outcome: str, kind: str) -> None:
        self.launches.labels(outcome, kind if kind in KINDS else "other").inc()

    async def _refresh(self) -> None:
        await self.db.read(self.read)

    def read(self, session: Session) -> None:
        disabled = counts(session, App.disabled)
        self.apps.labels("enabled").set(disabled.get(False, 0))
        self.apps.labels("disabled").set(disabled.get(True, 0))
        states = counts(session, Launch.state)
        for state in LAUNCH_STATES:
            self.launch_rows.labels(state).set(states.pop(state, 0))
        self.launch_rows.labels("other").set(sum(states.values()))


class MetricsHandler(kit_metrics.MetricsHandler):
    @property
    def metrics(self) -> CatalogMetrics:
        return self.settings["launcher"].metrics
