"""a runtime's version held pending: published and servable within a load, not run yet

A cold start's cells hold their versions pending and load them in a warm-up, or first when a request
asks. Runtimes reported them live; they now report them pending, and live (or failed) once loaded, so
status stays truthful.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-01 18:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runtime_functions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pending", sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("runtime_functions", schema=None) as batch_op:
        batch_op.drop_column("pending")
