"""Workspace-side extensions (``labspace.extensions``) that run inside each workspace."""
