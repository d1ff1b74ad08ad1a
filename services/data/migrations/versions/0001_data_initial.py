"""Data service: datasets, grants, credentials, audit events.

Revision ID: data_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "data_0001"
down_revision = None


def upgrade():
    op.create_table(
        "data_datasets",
        sa.Column("id", sa.String(63), primary_key=True),
        sa.Column("title", sa.String(200), nullable=False, server_default=""),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("source", sa.Text, nullable=False, server_default=""),
        sa.Column("sub_path", sa.Text, nullable=False, server_default=""),
        sa.Column("mount_path", sa.Text, nullable=False, server_default=""),
        sa.Column("size", sa.BigInteger, nullable=True),
        sa.Column("measured", sa.BigInteger, nullable=True),
        sa.Column("owner_group", sa.String(255), nullable=False, server_default=""),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("s3", sa.JSON, nullable=True),
        sa.Column("source_of", sa.String(16), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "data_grants",
        sa.Column("pk", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "dataset_id",
            sa.String(63),
            sa.ForeignKey("data_datasets.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("subject_type", sa.String(8), nullable=False),
        sa.Column("subject", sa.String(255), nullable=False, index=True),
        sa.Column("level", sa.String(8), nullable=False),
        sa.Column("source_of", sa.String(16), nullable=False),
        sa.Column("granted_by", sa.String(255), nullable=False, server_default=""),
        sa.Column("granted_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("dataset_id", "subject_type", "subject", name="uq_data_grant_subject"),
    )
    op.create_table(
        "data_credentials",
        sa.Column(
            "dataset_id",
            sa.String(63),
            sa.ForeignKey("data_datasets.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("level", sa.String(8), primary_key=True),
        sa.Column("sealed", sa.LargeBinary, nullable=False),
        sa.Column("source_of", sa.String(16), nullable=False),
        sa.Column("updated_by", sa.String(255), nullable=False, server_default=""),
        sa.Column("updated", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "data_audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("kind", sa.String(16), nullable=False, index=True),
        sa.Column("actor", sa.String(255), nullable=False, server_default=""),
        sa.Column("dataset", sa.String(63), nullable=False, server_default="", index=True),
        sa.Column("subject", sa.String(263), nullable=False, server_default=""),
        sa.Column("before", sa.JSON, nullable=True),
        sa.Column("after", sa.JSON, nullable=True),
        sa.Column("reason", sa.Text, nullable=False, server_default=""),
        sa.Column("user", sa.String(255), nullable=False, server_default="", index=True),
        sa.Column("server", sa.String(255), nullable=False, server_default=""),
        sa.Column("datasets", sa.JSON, nullable=False),
    )
    op.create_table(
        "data_audit_datasets",
        sa.Column(
            "event_id",
            sa.Integer,
            sa.ForeignKey("data_audit.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("dataset_id", sa.String(63), primary_key=True, index=True),
        sa.Column("level", sa.String(8), nullable=False),
    )


def downgrade():
    op.drop_table("data_audit_datasets")
    op.drop_table("data_audit")
    op.drop_table("data_credentials")
    op.drop_table("data_grants")
    op.drop_table("data_datasets")
