"""Alembic environment of the data service (``kit.db.migration_env``)."""

from labspace.services.data.models import Base
from labspace.services.kit.db import migration_env

migration_env(Base.metadata, "data_alembic_version")
