"""Alembic environment of accounting (``kit.db.migration_env``)."""

from labspace.services.accounting.models import Base
from labspace.services.kit.db import migration_env

migration_env(Base.metadata)
