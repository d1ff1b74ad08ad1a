"""How a start ended: ``StartOutcome``, what the ``start_outcome`` hooks of
``LabspaceSpawnerMixin`` are told (the hub's metrics; the operations page's
record of refused and failed starts). Pure: no hub, no I/O."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from tornado import web


@dataclass(frozen=True)
class StartOutcome:
    """How one start ended, for the ``start_outcome`` hooks.

    ``kind``: ``started``, ``refused`` (a 4xx: bad options, a hook such as the
    budget check said no) or ``failed`` (anything else); ``status``: the HTTP
    status of a refusal or failure when there is one; ``reason``: its message;
    ``seconds``: from the start's beginning (0 for options refused before it)."""

    kind: str
    profile: str = ""
    status: int | None = None
    reason: str = ""
    seconds: float = 0.0


def outcome_of(error: BaseException | None, profile: str, seconds: float) -> StartOutcome:
    """The ``StartOutcome`` of a start that raised ``error`` (None: it started)."""
    if error is None:
        return StartOutcome("started", profile, None, "", seconds)
    if isinstance(error, web.HTTPError):
        status = error.status_code
        reason = error.log_message or error.reason or ""
        if error.log_message and error.args:
            reason = reason % error.args
        kind = "refused" if 400 <= status < 500 else "failed"
        return StartOutcome(kind, profile, status, reason, seconds)
    if isinstance(error, TimeoutError | asyncio.TimeoutError):
        return StartOutcome("failed", profile, None, "The workspace did not start in time", seconds)
    return StartOutcome("failed", profile, None, f"{type(error).__name__}: {error}", seconds)
