"""Prometheus metrics (``<prefix>metrics``, the kit's ``MetricsHandler``).

Counters count what happened in this process; gauges are read from the
database at scrape time (balances, usage totals, open sessions) or from the
deliverer's last report (outbox depth: the outbox lives in the hub process,
whose deliverer reports its depth here). Balances are labelled by project
(groups the settings name), personal accounts only summed: a user name is
never a label value. The warm pool's idle members (``pool``) are the
platform's: ``usage_total{project="(platform)"}`` and ``warm_pool_members``.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from labspace.services.kit.metrics import ServiceMetrics

from . import charger, ledger, pool, reports
from .models import UsageSession


class Metrics(ServiceMetrics):
    def __init__(self, refresh=None):
        super().__init__("accounting", refresh)
        self.refusals = self.counter("refusals", "Starts refused, by reason", ("reason",))
        self.reservations = self.counter("reservations", "Minimum periods reserved")
        self.events = self.counter("events", "Hub events received, by type", ("type",))
        self.duplicates = self.counter("duplicate_events", "Hub events seen twice")
        self.charges = self.counter("charge_rounds", "Charger rounds")
        self.stops = self.counter("budget_stops", "Servers stopped for budget")
        self.hub_errors = self.counter("hub_errors", "Failed hub API calls")
        self.balance = self.gauge("balance", "Balance of each project", ("kind", "name"))
        self.balance_sum = self.gauge(
            "balance_sum", "Sum of the balances of all accounts of a kind", ("kind",)
        )
        self.accounts = self.gauge("accounts", "Accounts, by kind", ("kind",))
        self.usage_total = self.gauge(
            "usage_total", "Cost of all sessions, by project", ("project",)
        )
        self.open_sessions = self.gauge("open_sessions", "Open usage sessions")
        self.pool_members = self.gauge(
            "warm_pool_members", "Warm pool members idle now (open platform sessions)"
        )
        self.outbox_depth = self.gauge(
            "outbox_depth", "Events waiting in the hub's outbox (last report)"
        )

    def read(self, session: Session) -> None:
        """Read the gauges from the database (call on a worker thread)."""
        self.balance.clear()
        sums: dict[str, Decimal] = defaultdict(Decimal)
        counts: dict[str, int] = defaultdict(int)
        for label, amount in ledger.balances(session).items():
            kind, name = label.split(":", 1)
            if kind not in ("project", "personal"):
                continue
            sums[kind] += amount
            counts[kind] += 1
            if kind == "project":
                self.balance.labels(kind, name).set(float(amount))
        for kind in ("project", "personal"):
            self.balance_sum.labels(kind).set(float(sums[kind]))
            self.accounts.labels(kind).set(counts[kind])
        self.usage_total.clear()
        label = reports.project_label()
        rows = session.execute(
            select(label, func.coalesce(func.sum(UsageSession.cost), 0)).group_by(label)
        )
        for project, total in rows:
            self.usage_total.labels(project).set(float(total))
        self.open_sessions.set(charger.open_count(session))
        self.pool_members.set(
            session.scalar(
                select(func.count())
                .select_from(UsageSession)
                .where(UsageSession.user == pool.POOL_USER, UsageSession.status.in_(charger.OPEN))
            )
            or 0
        )
