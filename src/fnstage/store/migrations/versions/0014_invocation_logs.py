"""durable invocation logs: every invocation's status, duration, version, request id and ctx.log lines

Written by runtime supervisors in batches, off the request path; bounded per function by count and age.

Revision ID: 0014
Revises: 0012
Create Date: 2026-11-30 18:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0012"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "invocation_logs",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column(
            "gateway_id", sa.String(40), sa.ForeignKey("gateways.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("name", sa.String(220), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.Column("lines", sa.Text(), nullable=False),  # a JSON list, as the cell encoded it
        sa.Column("error", sa.Text()),
        sa.Column("trigger", sa.String(64)),
        sa.Column("runtime_id", sa.String(36)),
    )
    op.create_index("ix_invocation_logs_function", "invocation_logs", ["gateway_id", "name", "id"])
    op.create_index("ix_invocation_logs_started", "invocation_logs", ["started_at"])


def downgrade() -> None:
    op.drop_index("ix_invocation_logs_started", table_name="invocation_logs")
    op.drop_index("ix_invocation_logs_function", table_name="invocation_logs")
    op.drop_table("invocation_logs")
