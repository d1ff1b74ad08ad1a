"""The service's one clock (UTC, aware) and its one billing month."""

from datetime import UTC, datetime


def now() -> datetime:
    return datetime.now(UTC)


def month_start(t: datetime) -> datetime:
    """The start of the billing month that holds ``t`` (midnight of its 1st)."""
    return t.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
