"""Every service's health, as the hub's operations page asks for it.

``<prefix>api/internal/health`` (``kit.web.HealthHandler``, the service's own
token, like every internal endpoint; ``make_app`` adds the route) answers

    {"service": "accounting", "ok": true, "version": "1.4.0",
     "started": "2026-...Z", "last_error": {"at": "...", "message": "..."} | null,
     ...the service's own detail}

The detail is the application setting ``health_detail``: an async callable
with no arguments returning a dict (accounting: outbox depth, last reconcile).
A detail that fails makes ``ok`` false and says why; the answer is still a 200,
since the service itself answered.

``last_error`` is the last ERROR (or worse) log line of the process, kept by
``LastError``, a logging handler ``run_service`` installs: the line's message,
cut to ``MAX_MESSAGE`` characters (the services log no secrets); the access
log's lines (a 5xx answer, e.g. while starting) are requests, not errors.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

MAX_MESSAGE = 300
IGNORED = {"tornado.access"}  # the access log: its lines are requests, not the service's errors
STARTED = time.time()


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


class LastError(logging.Handler):
    """Keeps the process's last ERROR log line (one per process: ``LAST``)."""

    def __init__(self):
        super().__init__(level=logging.ERROR)
        self.last: dict[str, str] | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if record.name in IGNORED:  # a 5xx answer is logged there too; not an error of ours
            return
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = str(record.msg)
        line = message.splitlines()[0] if message else record.levelname
        self.last = {"at": iso(record.created), "message": line[:MAX_MESSAGE]}


LAST = LastError()


def install() -> None:
    """Keep the last error line of this process (``run_service`` calls it)."""
    root = logging.getLogger()
    if LAST not in root.handlers:
        root.addHandler(LAST)


def version() -> str:
    from labspace import __version__

    return __version__


async def report(name: str, detail) -> dict[str, Any]:
    """The health answer of service ``name`` (``detail``: async callable or None)."""
    out: dict[str, Any] = {
        "service": name,
        "ok": True,
        "version": version(),
        "started": iso(STARTED),
        "last_error": LAST.last,
    }
    if detail is not None:
        try:
            out.update(await detail())
        except Exception as e:  # noqa: BLE001 - reported, never a 500
            logging.getLogger("labspace.kit").exception("Health detail of %s failed", name)
            out.update(ok=False, problem=f"{type(e).__name__}: {str(e)[:MAX_MESSAGE]}")
    return out
