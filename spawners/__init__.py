"""Workspace spawners (``labspace.spawners``), registered as ``jupyterhub.spawners``
entry points."""
