"""What the settings need installed. Placeholder: the just-works owner fills it."""

from __future__ import annotations


def missing(settings) -> list[str]:
    """One line per library or program the settings need that is not installed."""
    return []
