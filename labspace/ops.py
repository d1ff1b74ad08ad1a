"""The operations page's parts that need no hub: the record of refused and
failed starts, the services' health rows and the running workspaces' rows.

- ``StartRecord``: the last ``MAX_RECORD`` starts that were refused or failed,
  kept in the hub process (its tornado settings, as the start queue), fed by
  ``record_outcome``, a ``start_outcome`` hook of the spawner mixin;
- ``Probe`` / ``ask_health``: a Labspace service's ``api/internal/health``
  (the kit's, see ``services/kit/health.py``), asked with its own token and a
  short timeout; ``health_row`` turns an answer (or none) into a row;
- ``workspace_rows``: the hub's running servers joined with accounting's open
  sessions (cost so far);
- ``pool_view``: the warm pool (``backend.warm_pool``) per key: size, ready,
  being made, oldest member's age, claims, cold starts because it was empty,
  failures (the pool's ``status()`` and the claims the metrics hook counted).

The handlers are ``ops_pages.py``; ``hub_parts`` is what the hub's
configuration gets (the scope, the role's scopes, the nav link, the hook).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

SCOPE = "custom:labspace-ops:admin"
CUSTOM_SCOPES = {
    SCOPE: {
        "description": "See the operations page (workspaces, costs, services' health, "
        "refused starts) and stop or cull workspaces from it."
    }
}
RECORD_KEY = "labspace_start_record"  # the hub's tornado settings hold the record
MAX_RECORD = 50
MAX_TEXT = 300  # characters of a reason or an error kept
HEALTH_TIMEOUT = 2.0  # seconds the page waits for one service


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(when: datetime | None) -> str | None:
    """ISO 8601 in UTC; JupyterHub keeps naive UTC times."""
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).isoformat(timespec="seconds")


# -- refused and failed starts ---------------------------------------------------


@dataclass(frozen=True)
class StartEntry:
    at: str
    user: str
    server: str
    profile: str
    kind: str  # refused | failed
    status: int | None
    reason: str
    seconds: float


class StartRecord:
    """The last ``size`` refused or failed starts of one hub, newest first."""

    def __init__(self, size: int = MAX_RECORD):
        self._entries: deque[StartEntry] = deque(maxlen=size)

    def add(self, user: str, server: str, outcome, at: datetime | None = None) -> None:
        if outcome.kind == "started":
            return
        self._entries.append(
            StartEntry(
                at=iso(at or utcnow()),
                user=user,
                server=server,
                profile=outcome.profile,
                kind=outcome.kind,
                status=outcome.status,
                reason=(outcome.reason or "")[:MAX_TEXT],
                seconds=round(outcome.seconds, 1),
            )
        )

    def entries(self) -> list[StartEntry]:
        return list(reversed(self._entries))

    def __len__(self) -> int:
        return len(self._entries)


def start_record(hub_settings: dict[str, Any]) -> StartRecord:
    """The record of the hub whose tornado settings are ``hub_settings``."""
    record = hub_settings.get(RECORD_KEY)
    if record is None:
        record = hub_settings[RECORD_KEY] = StartRecord()
    return record


def record_outcome(spawner, outcome) -> None:
    """The ``start_outcome`` hook: keep refused and failed starts."""
    start_record(spawner.user.settings).add(spawner.user.name, spawner.name, outcome)


# -- the services' health --------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """Where the hub asks one Labspace service for its health."""

    name: str
    base_url: str  # the service's root, straight to its port (hub_side_url)
    token: str

    def __repr__(self) -> str:  # never the token
        return f"Probe({self.name!r}, {self.base_url!r})"


async def ask_health(probe: Probe, timeout: float = HEALTH_TIMEOUT) -> dict[str, Any]:
    """The health row of ``probe``'s service: never raises, waits ``timeout`` at most."""
    from labspace.services.kit.caller import ServiceCaller, Unreachable

    caller = ServiceCaller(probe.name, probe.base_url, probe.token, timeout=timeout, tries=1)
    began = time.monotonic()
    try:
        status, data = await caller.call("GET", "health", timeout=timeout)
    except Unreachable as e:
        return health_row(probe.name, None, {}, str(e))
    return health_row(probe.name, status, data, None, time.monotonic() - began)


def _short(text: Any) -> str | None:
    return None if text in (None, "") else str(text)[:MAX_TEXT]


def health_row(
    name: str, status: int | None, data: Any, error: str | None, seconds: float = 0.0
) -> dict[str, Any]:
    """One service's row: ``state`` up, degraded (answered, not ok) or down."""
    data = data if isinstance(data, dict) else {}
    row: dict[str, Any] = {
        "name": name,
        "state": "down",
        "version": None,
        "outbox_depth": None,
        "last_reconcile": None,
        "last_error": None,
        "problem": None,
        "ms": round(seconds * 1000),
    }
    if status is None:
        row["problem"] = _short(f"No answer: {error}")
        return row
    if status != 200:
        row["problem"] = _short(f"HTTP {status}: {data.get('message') or ''}".rstrip(": "))
        return row
    last = data.get("last_error") if isinstance(data.get("last_error"), dict) else None
    row.update(
        state="up" if data.get("ok", True) else "degraded",
        version=_short(data.get("version")),
        outbox_depth=data.get("outbox_depth"),
        last_reconcile=_short(data.get("last_reconcile")),
        last_error={"at": _short(last.get("at")), "message": _short(last.get("message"))}
        if last
        else None,
        problem=_short(data.get("problem")),
    )
    return row


def process_row(name: str, running: bool) -> dict[str, Any]:
    """A hub-managed process with no health endpoint (the accounting deliverer,
    the idle culler): up while its process runs."""
    row = health_row(name, None, {}, None)
    row.update(state="up" if running else "down", problem=None if running else "Not running")
    return row


# -- running workspaces ----------------------------------------------------------


@dataclass(frozen=True)
class Running:
    """A running (or starting/stopping) server as the hub knows it."""

    user: str
    server: str  # "" for the default server
    profile: str
    project: str | None
    started: datetime | None
    last_activity: datetime | None
    pending: str | None  # spawn | stop | None


def workspace_rows(running: list[Running], sessions: list[dict] | None) -> list[dict[str, Any]]:
    """One row per server; cost from accounting's open session of that server
    (``sessions`` None: accounting off or not answering)."""
    by_server = {}
    for s in sessions or []:
        if isinstance(s, dict):
            by_server[(s.get("user"), s.get("server") or "")] = s
    rows = []
    for r in sorted(running, key=lambda r: (r.user, r.server)):
        session = by_server.get((r.user, r.server))
        rows.append(
            {
                "user": r.user,
                "server": r.server,
                "profile": (session or {}).get("display_name") or r.profile,
                "project": (session or {}).get("project") or r.project,
                "started": iso(r.started),
                "last_activity": iso(r.last_activity),
                "pending": r.pending,
                "cost": None if session is None else session.get("cost"),
                "price_per_hour": None if session is None else session.get("price_per_hour"),
            }
        )
    return rows


# -- the warm pool -----------------------------------------------------------------


def age(seconds: float | None) -> str | None:
    """``42s``, ``12m``, ``3h 5m``, ``2d 4h``; None for no age."""
    if seconds is None:
        return None
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


def pool_view(
    status: dict[str, Any] | None,
    tally: dict[str, dict[str, int]] | None = None,
    now: float | None = None,
) -> dict[str, Any] | None:
    """The page's warm pool section from ``WarmPool.status()`` (None: no pool).
    Per key: the status' own counts where it has them, else the claims that the
    metrics hook counted (``tally``) and, for empty and failed, None (the pool's
    totals say them)."""
    if status is None:
        return None
    now = time.time() if now is None else now
    tally = tally or {}
    rows = []
    for key, row in sorted((status.get("keys") or {}).items()):
        counted = tally.get(key, {})
        oldest = row.get("oldest")
        rows.append(
            {
                "key": key,
                "size": row.get("size", 0),
                "ready": row.get("ready", 0),
                "making": row.get("making", 0),
                "oldest_age": age(now - oldest) if oldest else None,
                "claimed": row.get("claimed", counted.get("claimed", 0)),
                "empty": row.get("empty"),
                "failed": row.get("failed"),
            }
        )
    totals = {k: int(status.get(k) or 0) for k in ("claimed", "empty", "made", "failed", "expired")}
    return {"rows": rows, "totals": totals}


# -- the hub's configuration -----------------------------------------------------

PAGE = "/hub/ops"


def hub_parts(settings, state) -> dict[str, Any]:
    """The operations page's part of the hub (see ``hubconfig.service_parts``):
    its scope, held by the ``labspace-admin`` role; its nav link, shown to whoever
    holds the scope; the hook that feeds the record. The page's routes are
    ``ops_pages.routes`` (``hubpages``)."""
    return {
        "custom_scopes": CUSTOM_SCOPES,
        "admin_scopes": [SCOPE],
        "nav": [{"title": "Operations", "url": PAGE, "admin": True, "scope": SCOPE}],
        "spawner": {"start_outcome": [record_outcome]},
    }
