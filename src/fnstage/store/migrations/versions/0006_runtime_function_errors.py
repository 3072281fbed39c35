"""count requests and errors per function version on each runtime

A version that loads but whose main raises on every request showed as "live 2/2": the runtime now
reports, with its heartbeat, how many requests each live version has answered since it went live there,
how many of them failed (an exception or a time-out: a 500 or a 504), and the last failure.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 03:20:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runtime_functions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("counted_version", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("requests", sa.BigInteger(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("errors", sa.BigInteger(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("last_error", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runtime_functions", schema=None) as batch_op:
        batch_op.drop_column("last_error")
        batch_op.drop_column("errors")
        batch_op.drop_column("requests")
        batch_op.drop_column("counted_version")
