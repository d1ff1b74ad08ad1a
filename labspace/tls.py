"""HTTPS in front of the proxy (``hub.tls``). Placeholder: the TLS owner fills it."""

from __future__ import annotations

from typing import Any


def hub_values(settings, state, out: dict[str, dict[str, Any]]) -> None:
    """Adjust the hub's traitlets values for ``hub.tls`` (nothing when it is off)."""


def start_front(settings, state):
    """Start the TLS front for ``hub.tls``; None when it is off."""
    return None


def stop_front(front) -> None:
    """Stop what ``start_front`` started."""
