"""Attacks on the running platform that must keep failing (issue 10)."""
