"""The service's one clock (UTC, aware)."""

from datetime import UTC, datetime


def now() -> datetime:
    return datetime.now(UTC)
