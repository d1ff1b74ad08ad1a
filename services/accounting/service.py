"""What every handler of the accounting service shares: ``Service``."""

from __future__ import annotations

from typing import Any

from labspace.services.kit.db import Database

from .loops import Hub, Loops
from .metrics import Metrics
from .policy import Policy


class Service:
    """What every handler shares: the policy, the database, the hub client, the
    deliverer's secret (for the internal endpoints it may call), the metrics, the
    deliverer's last outbox report and the background loops."""

    def __init__(
        self,
        config: dict[str, Any],
        db: Database,
        hub: Hub | None = None,
        deliverer_secret: str = "",
    ):
        self.config = config
        self.deliverer_secret = deliverer_secret
        self.policy = Policy(config.get("accounting") or {}, config.get("profiles") or [])
        self.db = db
        self.hub = hub
        self.metrics = Metrics(refresh=lambda: db.read(self.metrics.read))
        self.outbox: dict[str, Any] = {"depth": None, "oldest": None, "reported_at": None}
        self.loops = Loops(self)
