"""Covering index for monthly reports (PostgreSQL): index-only scans by start time.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

COVERED = ["project", "user", "profile", "cost", "charged", "unbilled"]


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.create_index(
            "ix_sessions_started_cover",
            "usage_sessions",
            ["started_at"],
            postgresql_include=COVERED,
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_sessions_started_cover", table_name="usage_sessions")
