"""Catalog: apps, app versions, launches.

Revision ID: catalog_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "catalog_0001"
down_revision = None


def upgrade():
    op.create_table(
        "catalog_apps",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "catalog_app_versions",
        sa.Column("pk", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "app_id",
            sa.String(40),
            sa.ForeignKey("catalog_apps.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("version", sa.String(60), nullable=False),
        sa.Column("definition", sa.JSON, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False, server_default=""),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("app_id", "version", name="uq_catalog_version_label"),
        sa.UniqueConstraint("app_id", "revision", name="uq_catalog_version_revision"),
    )
    op.create_table(
        "catalog_launches",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("user", sa.String(255), nullable=False, index=True),
        sa.Column("app_id", sa.String(40), nullable=False),
        sa.Column("version", sa.String(60), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("server_name", sa.String(255), nullable=False, server_default=""),
        sa.Column("state", sa.String(16), nullable=False, server_default="starting"),
        sa.Column("message", sa.Text, nullable=False, server_default=""),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade():
    op.drop_table("catalog_launches")
    op.drop_table("catalog_app_versions")
    op.drop_table("catalog_apps")
