"""Prometheus metrics (``<prefix>metrics``), one registry per service.

Counters count what happened in this process; gauges are read from the
database at scrape time (balances, usage totals, open sessions) or from the
deliverer's last report (outbox depth).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from . import charger, ledger
from .models import UsageSession

NS = "labspace_accounting"


class Metrics:
    def __init__(self):
        r = self.registry = CollectorRegistry()
        self.refusals = Counter(
            f"{NS}_refusals", "Starts refused, by reason", ["reason"], registry=r
        )
        self.reservations = Counter(f"{NS}_reservations", "Minimum periods reserved", registry=r)
        self.events = Counter(f"{NS}_events", "Hub events received, by type", ["type"], registry=r)
        self.duplicates = Counter(f"{NS}_duplicate_events", "Hub events seen twice", registry=r)
        self.charges = Counter(f"{NS}_charge_rounds", "Charger rounds", registry=r)
        self.stops = Counter(f"{NS}_budget_stops", "Servers stopped for budget", registry=r)
        self.hub_errors = Counter(f"{NS}_hub_errors", "Failed hub API calls", registry=r)
        self.balance = Gauge(f"{NS}_balance", "Balance by account", ["kind", "name"], registry=r)
        self.usage_total = Gauge(
            f"{NS}_usage_total", "Cost of all sessions, by project", ["project"], registry=r
        )
        self.open_sessions = Gauge(f"{NS}_open_sessions", "Open usage sessions", registry=r)
        self.outbox_depth = Gauge(
            f"{NS}_outbox_depth", "Events waiting in the hub's outbox (last report)", registry=r
        )

    def refresh(self, session: Session) -> None:
        """Read the gauges from the database (call on a worker thread)."""
        self.balance.clear()
        for label, amount in ledger.balances(session).items():
            kind, name = label.split(":", 1)
            if kind in ("project", "personal", "usage"):
                self.balance.labels(kind, name).set(float(amount))
        self.usage_total.clear()
        rows = session.execute(
            select(
                func.coalesce(UsageSession.project, "(personal)"),
                func.coalesce(func.sum(UsageSession.cost), 0),
            ).group_by(func.coalesce(UsageSession.project, "(personal)"))
        )
        for project, total in rows:
            self.usage_total.labels(project).set(float(total))
        self.open_sessions.set(charger.open_count(session))

    def render(self) -> bytes:
        return generate_latest(self.registry)
