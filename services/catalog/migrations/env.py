"""Alembic environment of the catalog (``kit.db.migration_env``)."""

from labspace.services.catalog.models import Base
from labspace.services.kit.db import migration_env

migration_env(Base.metadata, "catalog_alembic_version")
