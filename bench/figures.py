"""Pure figures for the spawn benchmarks: order of turns, percentiles, spreads,
ratios and the targets (no I/O; tested in tests/test_bench_figures.py)."""

from __future__ import annotations

import math
import statistics

# the targets: (what, backend) -> bound
TARGETS = {
    ("click to usable p50 s", "local"): 1.0,
    ("click to usable p50 s", "docker"): 1.5,
    ("class of 20 p95 s", "local"): 8.0,
    ("class of 20 p95 s", "docker"): 12.0,
    ("CPU per start s", "local"): 0.5,
    ("CPU per start s", "docker"): 0.5,
    ("first cell s", "local"): 1.0,
    ("first cell s", "docker"): 1.0,
}


def rotated(items: list, round_no: int) -> list:
    """``items`` in the order of round ``round_no``: rotated by one each round,
    so each takes each place in turn (over ``len(items)`` rounds)."""
    if not items:
        return []
    k = round_no % len(items)
    return items[k:] + items[:k]


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile ``q`` (0..100) of already sorted values."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def summary(times: list[float | None]) -> dict:
    """Ready count, p50 (median), p95 (nearest rank), min, max and quartiles of
    the starts that succeeded (None: a start that failed or timed out)."""
    ok = sorted(t for t in times if t is not None)
    quart = statistics.quantiles(ok, n=4, method="inclusive") if len(ok) >= 2 else [None] * 3
    r = 3
    return {
        "ready": len(ok),
        "total": len(times),
        "p50": round(statistics.median(ok), r) if ok else None,
        "p95": round(percentile(ok, 95), r) if ok else None,
        "min": round(ok[0], r) if ok else None,
        "max": round(ok[-1], r) if ok else None,
        "q1": round(quart[0], r) if quart[0] is not None else None,
        "q3": round(quart[2], r) if quart[2] is not None else None,
    }


def ratio(value: float | None, base: float | None) -> float | None:
    return round(value / base, 2) if value and base else None


def fmt(x: float | None, digits: int = 2) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def spread(s: dict) -> str:
    """``min–max (IQR q1–q3)`` of a summary, or — without figures."""
    if s.get("min") is None:
        return "—"
    text = f"{fmt(s['min'])}–{fmt(s['max'])}"
    if s.get("q1") is not None:
        text += f" (IQR {fmt(s['q1'])}–{fmt(s['q3'])})"
    return text


def verdict(value: float | None, bound: float, ready_ok: bool = True) -> str:
    """``met`` / ``not met`` / ``no figure`` for a value against an upper bound."""
    if value is None:  # none ready at all: a class target is still not met
        return "no figure" if ready_ok else "not met"
    return "met" if value <= bound and ready_ok else "not met"
