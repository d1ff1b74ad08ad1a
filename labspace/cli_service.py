"""Placeholder: its owner fills it."""

COMMANDS: list = []
