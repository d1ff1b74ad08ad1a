"""Prices: pure functions, no I/O.

A profile's price per hour is its entry in ``prices.profiles``, else derived
from its resources with ``prices.resources`` (CPU limit x cpu_hour + memory
limit in GiB x gib_hour + GPUs x gpu_hour). A price *schedule* is a sorted list
of ``(effective_from, price)`` points; the cost of a span of time integrates the
schedule piecewise, so a price change applies from its time on and never to
time before it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

CENT = Decimal("0.01")
QUANTUM = Decimal("0.000001")  # amounts are kept to 6 decimals in the ledger
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
GIB = 1024**3
_UNITS = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


@dataclass(frozen=True)
class Point:
    effective_from: datetime
    price: Decimal  # per hour


def dec(value: Any) -> Decimal:
    """A ledger amount from a number or a decimal string (6 decimals)."""
    if isinstance(value, float):
        value = repr(value)
    return Decimal(value).quantize(QUANTUM, rounding=ROUND_HALF_UP)


def show(amount: Decimal | None) -> str:
    """An amount as users see it: 2 decimals."""
    return str(Decimal(amount or 0).quantize(CENT, rounding=ROUND_HALF_UP))


def parse_time(text: str) -> datetime:
    """An ISO 8601 time, as an aware UTC datetime; ValueError if it is not one."""
    if not isinstance(text, str) or not text:
        raise ValueError(f"not a time: {text!r}")
    t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    try:
        return t.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00 is before year 1 in UTC
        raise ValueError(f"not a time: {text!r}") from None


def aware(t: datetime) -> datetime:
    """Times read back from SQLite are naive UTC."""
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def iso(t: datetime | None) -> str | None:
    return aware(t).isoformat().replace("+00:00", "Z") if t else None


def _bytes(text: str | None) -> int | None:
    if not text:
        return None
    text = str(text)
    unit = _UNITS.get(text[-1].upper())
    return int(float(text[:-1]) * unit) if unit else int(float(text))


def resources_of(profile: dict[str, Any]) -> dict[str, Any]:
    """``{"cpu", "mem_gib", "gpus"}`` of a settings profile (limits, else guarantees)."""
    cpu = profile.get("cpu") or {}
    mem = profile.get("memory") or {}
    mem_bytes = _bytes(mem.get("limit") or mem.get("guarantee"))
    return {
        "cpu": cpu.get("limit") or cpu.get("guarantee"),
        "mem_gib": round(mem_bytes / GIB, 3) if mem_bytes else None,
        "gpus": int(profile.get("gpus") or 0),
    }


def derived_price(resources: dict[str, Any], rates: dict[str, Any]) -> Decimal:
    """Price per hour of ``resources`` at per-resource ``rates``."""
    total = Decimal(0)
    for key, rate in (("cpu", "cpu_hour"), ("mem_gib", "gib_hour"), ("gpus", "gpu_hour")):
        amount = resources.get(key) or 0
        total += dec(amount) * dec(rates.get(rate) or 0)
    return dec(total)


def price_of(slug: str, resources: dict[str, Any], block: dict[str, Any]) -> Decimal:
    """Price per hour of profile ``slug`` under one price block (``profiles``/``resources``)."""
    explicit = (block.get("profiles") or {}).get(slug)
    if explicit is not None:
        return dec(explicit)
    return derived_price(resources, block.get("resources") or {})


def settings_schedule(
    prices: dict[str, Any], profiles: Sequence[dict[str, Any]]
) -> dict[str, list[Point]]:
    """Each profile's schedule as the settings declare it. An empty
    ``effective_from`` of the base prices is the epoch (the caller decides what
    "now" means for prices first seen)."""
    base_from = parse_time(prices["effective_from"]) if prices.get("effective_from") else EPOCH
    out: dict[str, list[Point]] = {}
    for profile in profiles:
        slug = profile["slug"]
        res = resources_of(profile)
        points = [Point(base_from, price_of(slug, res, prices))]
        block = {
            "profiles": dict(prices.get("profiles") or {}),
            "resources": prices.get("resources"),
        }
        for change in sorted(prices.get("scheduled") or [], key=lambda c: c["effective_from"]):
            block = {
                "profiles": {**block["profiles"], **(change.get("profiles") or {})},
                "resources": {**(block["resources"] or {}), **(change.get("resources") or {})},
            }
            points.append(Point(parse_time(change["effective_from"]), price_of(slug, res, block)))
        out[slug] = sorted(points, key=lambda p: p.effective_from)
    return out


def price_at(points: Sequence[Point], t: datetime) -> Decimal | None:
    """The price in force at ``t``; None before the first point."""
    current = None
    for p in points:
        if aware(p.effective_from) <= t:
            current = p.price
        else:
            break
    return current


def cost(points: Sequence[Point], start: datetime, end: datetime) -> Decimal:
    """Cost of running from ``start`` to ``end`` under a schedule (piecewise)."""
    if end <= start or not points:
        return Decimal(0)
    total = Decimal(0)
    edges = [aware(p.effective_from) for p in points] + [datetime.max.replace(tzinfo=UTC)]
    for i, p in enumerate(points):
        lo, hi = max(start, edges[i]), min(end, edges[i + 1])
        if hi > lo:
            total += p.price * Decimal((hi - lo).total_seconds()) / Decimal(3600)
    return dec(total)


def merge_new_points(
    stored: Sequence[Point], wanted: Sequence[Point], now: datetime
) -> list[Point]:
    """Points to add to a stored schedule so that it follows ``wanted`` from
    ``now`` on without changing anything before ``now``.

    - no stored points: ``wanted`` as is (nothing was charged under them);
    - a current price that differs: a new point at ``now``;
    - future points: those not stored yet.
    """
    if not stored:
        return list(wanted)
    new: list[Point] = []
    want_now = price_at(wanted, now)
    if want_now is not None and price_at(stored, now) != want_now:
        new.append(Point(now, want_now))
    have = {(aware(p.effective_from), p.price) for p in stored}
    for p in wanted:
        if aware(p.effective_from) > now and (aware(p.effective_from), p.price) not in have:
            new.append(p)
    return new


def estimate(price: Decimal, hours: Iterable[float] = (1, 8, 40)) -> dict[str, str]:
    """What a profile costs for a few typical spans."""
    return {f"{h:g}h": show(price * Decimal(str(h))) for h in hours}
