"""scheduled functions: triggers and their runs

A trigger runs one environment's function on a cron schedule. `triggers.next_tick` is claimed with a
conditional UPDATE in the transaction that inserts the run, and `trigger_runs` is unique per (trigger,
tick): two control planes on one database run each tick once.

Revision ID: 0010
Revises: 0007
Create Date: 2026-11-30 14:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0007"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "triggers",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column(
            "gateway_id", sa.String(40), sa.ForeignKey("gateways.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("env", sa.String(16), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("base", sa.String(200), nullable=False),
        sa.Column("cron", sa.String(120), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("payload", sa.JSON()),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("next_tick", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(64), nullable=False),
        sa.UniqueConstraint("gateway_id", "env", "name", name="uq_triggers_name"),
    )
    op.create_index("ix_triggers_due", "triggers", ["paused", "next_tick"])
    op.create_table(
        "trigger_runs",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("trigger_id", Id, sa.ForeignKey("triggers.id", ondelete="CASCADE"), nullable=False),
        sa.Column("tick", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("claimed_by", sa.String(80), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deadline_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("duration_ms", sa.Float()),
        sa.Column("http_status", sa.Integer()),
        sa.Column("version", sa.Integer()),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("runtime_id", sa.String(36)),
        sa.Column("skipped", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text()),
        sa.Column("lines", sa.JSON()),
        sa.UniqueConstraint("trigger_id", "tick", name="uq_trigger_runs_tick"),
    )
    op.create_index("ix_trigger_runs_trigger", "trigger_runs", ["trigger_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_trigger_runs_trigger", table_name="trigger_runs")
    op.drop_table("trigger_runs")
    op.drop_index("ix_triggers_due", table_name="triggers")
    op.drop_table("triggers")
