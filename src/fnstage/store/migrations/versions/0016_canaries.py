"""canary releases: the running canary of a function, and the counts its runtimes report per arm

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-30 18:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "canaries",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column(
            "gateway_id", sa.String(40), sa.ForeignKey("gateways.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("env", sa.String(16), nullable=False),
        sa.Column("base", sa.String(200), nullable=False),
        sa.Column("function_id", sa.BigInteger(), nullable=False),
        sa.Column("stable_version", sa.Integer(), nullable=False),
        sa.Column("stable_semver", sa.String(64), nullable=False),
        sa.Column("canary_version", sa.Integer(), nullable=False),
        sa.Column("canary_semver", sa.String(64), nullable=False),
        sa.Column("canary_history_id", sa.BigInteger(), nullable=False),
        sa.Column("steps", sa.JSON(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("bake_s", sa.Float(), nullable=False),
        sa.Column("max_error_rate_increase", sa.Float(), nullable=False),
        sa.Column("max_p95_ratio", sa.Float(), nullable=False),
        sa.Column("min_requests", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text()),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_by", sa.String(64), nullable=False),
        sa.Column("step_started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True)),
        sa.Column("decided_by", sa.String(64)),
        sa.Column("measured", sa.JSON()),
    )
    op.create_index("ix_canaries_function", "canaries", ["gateway_id", "env", "base", "id"])
    op.create_index("ix_canaries_state", "canaries", ["state"])
    op.create_table(
        "canary_counts",
        sa.Column("canary_id", Id, sa.ForeignKey("canaries.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("runtime_id", sa.String(36), primary_key=True),
        sa.Column("arm", sa.String(8), primary_key=True),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("latency", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("canary_counts")
    op.drop_index("ix_canaries_state", "canaries")
    op.drop_index("ix_canaries_function", "canaries")
    op.drop_table("canaries")
