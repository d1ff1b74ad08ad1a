"""Warm starts: pools of pre-initialised workspaces that receive a person's
identity only when claimed (``labspace.warm.pool``)."""

from __future__ import annotations

from typing import Any

from labspace.rules import suggest

AUTO_BACKENDS = ("local",)  # where `enabled: auto` turns the pool on


def pool_on(backend: dict[str, Any]) -> bool:
    """``backend.warm_pool.enabled`` for this backend: ``true``, ``false``, or
    ``auto`` (the default): on for the local backend only, whose pool is one
    fork server; docker's and kubernetes' members hold containers or cluster
    capacity, so they are turned on by name."""
    warm = backend.get("warm_pool") if isinstance(backend, dict) else None
    enabled = warm.get("enabled", "auto") if isinstance(warm, dict) else "auto"
    if enabled == "auto":
        return backend.get("type", "local") in AUTO_BACKENDS
    return enabled is True


def problems(values: dict[str, Any]) -> list[str]:
    """``backend.warm_pool.profiles`` naming a profile that does not exist."""
    backend = values.get("backend") if isinstance(values.get("backend"), dict) else {}
    warm = backend.get("warm_pool")
    if not isinstance(warm, dict) or not pool_on(backend):
        return []
    slugs = [p.get("slug") for p in values.get("profiles") or [] if isinstance(p, dict)]
    known = [s for s in slugs if isinstance(s, str)] or ["default"]
    out = []
    for i, slug in enumerate(warm.get("profiles") or []):
        if slug not in known:
            hint = suggest(slug, known) or f"profiles: {', '.join(known)}"
            out.append(f"backend.warm_pool.profiles[{i}]: no profile {slug!r} ({hint})")
    return out
