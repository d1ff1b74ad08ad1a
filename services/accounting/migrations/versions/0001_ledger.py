"""Ledger, usage sessions, events, prices, status.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

AMOUNT = sa.Numeric(20, 6)
TS = sa.DateTime(timezone=True)

# the ledger is append-only: the database itself refuses changes
SQLITE_TRIGGERS = [
    f"CREATE TRIGGER {table}_append_only_{op_} BEFORE {op_.upper()} ON {table} "
    f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
    for table in ("entries", "transactions")
    for op_ in ("update", "delete")
]
PG_TRIGGERS = [
    """CREATE FUNCTION ledger_append_only() RETURNS trigger AS $$
    BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END; $$ LANGUAGE plpgsql""",
    *(
        f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
        "FOR EACH ROW EXECUTE FUNCTION ledger_append_only()"
        for table in ("entries", "transactions")
    ),
]


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("floor", AMOUNT, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("kind", "name", name="uq_accounts_kind_name"),
        sa.CheckConstraint(
            "kind IN ('project', 'personal', 'hold', 'external', 'usage')", name="ck_accounts_kind"
        ),
    )
    op.create_table(
        "usage_sessions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("key", sa.String(512), nullable=False, unique=True),
        sa.Column("user", sa.String(255), nullable=False),
        sa.Column("server", sa.String(255), nullable=False),
        sa.Column("project", sa.String(255), nullable=True),
        sa.Column("account_id", sa.Integer, sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("profile", sa.String(64), nullable=False),
        sa.Column("display_name", sa.String(255), nullable=False),
        sa.Column("cpu", sa.Numeric(10, 3), nullable=True),
        sa.Column("mem_gib", sa.Numeric(12, 3), nullable=True),
        sa.Column("gpus", sa.Integer, nullable=False),
        sa.Column("price_per_hour", AMOUNT, nullable=False),
        sa.Column("reserved", AMOUNT, nullable=False),
        sa.Column("held", AMOUNT, nullable=False),
        sa.Column("charged", AMOUNT, nullable=False),
        sa.Column("unbilled", AMOUNT, nullable=False),
        sa.Column("cost", AMOUNT, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("last_charged_at", TS, nullable=False),
        sa.Column("last_seen_at", TS, nullable=False),
        sa.Column("ended_at", TS, nullable=True),
        sa.Column("closed_by", sa.String(32), nullable=True),
        sa.Column("exhausted_at", TS, nullable=True),
        sa.Column("warned", sa.Integer, nullable=False),
        sa.Column("stop_requested_at", TS, nullable=True),
        sa.Column("stop_reason", sa.Text, nullable=True),
        sa.CheckConstraint("held >= 0", name="ck_sessions_held"),
        sa.CheckConstraint(
            "status IN ('reserved', 'running', 'closed')", name="ck_sessions_status"
        ),
    )
    op.create_index("ix_sessions_user_started", "usage_sessions", ["user", "started_at"])
    op.create_index("ix_sessions_project_started", "usage_sessions", ["project", "started_at"])
    op.create_index("ix_sessions_started", "usage_sessions", ["started_at"])
    op.create_index("ix_sessions_status", "usage_sessions", ["status"])
    op.create_table(
        "transactions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("key", sa.String(512), nullable=True, unique=True),
        sa.Column(
            "reverses_id", sa.Integer, sa.ForeignKey("transactions.id"), nullable=True, unique=True
        ),
        sa.Column("session_id", sa.Integer, sa.ForeignKey("usage_sessions.id"), nullable=True),
        sa.CheckConstraint(
            "kind IN ('topup', 'assign', 'move', 'reverse', 'allowance', 'reserve', 'charge', "
            "'refund', 'release')",
            name="ck_transactions_kind",
        ),
    )
    op.create_index("ix_transactions_created_at", "transactions", ["created_at"])
    op.create_index("ix_transactions_session_id", "transactions", ["session_id"])
    op.create_table(
        "entries",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("transaction_id", sa.Integer, sa.ForeignKey("transactions.id"), nullable=False),
        sa.Column("debit_id", sa.Integer, sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("credit_id", sa.Integer, sa.ForeignKey("accounts.id"), nullable=False),
        # whole micro-units (1e-6 of the currency): sums are exact on SQLite too
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.CheckConstraint("amount > 0", name="ck_entries_positive"),
        sa.CheckConstraint("debit_id <> credit_id", name="ck_entries_two_accounts"),
    )
    op.create_index("ix_entries_transaction_id", "entries", ["transaction_id"])
    op.create_index("ix_entries_debit_id", "entries", ["debit_id", "amount"])
    op.create_index("ix_entries_credit_id", "entries", ["credit_id", "amount"])
    op.create_table(
        "events",
        sa.Column("id", sa.String(600), primary_key=True),
        sa.Column("key", sa.String(512), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("user", sa.String(255), nullable=False),
        sa.Column("server", sa.String(255), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("received_at", TS, nullable=False),
        sa.Column("applied", sa.Integer, nullable=False),
    )
    op.create_index("ix_events_key", "events", ["key"])
    op.create_index("ix_events_type_at", "events", ["type", "at"])
    op.create_table(
        "prices",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("profile", sa.String(64), nullable=False),
        sa.Column("effective_from", TS, nullable=False),
        sa.Column("price", AMOUNT, nullable=False),
        sa.Column("recorded_at", TS, nullable=False),
        sa.UniqueConstraint("profile", "effective_from", name="uq_prices_profile_from"),
    )
    op.create_table(
        "status",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    bind = op.get_bind()
    for statement in PG_TRIGGERS if bind.dialect.name == "postgresql" else SQLITE_TRIGGERS:
        op.execute(statement)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute("DROP FUNCTION ledger_append_only() CASCADE")
    for table in ("status", "prices", "events", "entries", "transactions", "usage_sessions"):
        op.drop_table(table)
    op.drop_table("accounts")
