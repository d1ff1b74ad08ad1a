"""Warm starts: pools of pre-initialised workspaces that receive a person's
identity only when claimed (``labspace.warm.pool``)."""
