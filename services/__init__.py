"""Labspace hub services (``labspace.services``): accounting, catalog and data."""
