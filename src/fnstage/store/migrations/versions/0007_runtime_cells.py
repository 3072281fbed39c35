"""runtimes are cells: each serves one environment of a gateway, reports its sandbox and bundle hashes

A runtime row is now a cell (gateway, environment): status counts, for `prod/user/me`, the cells that
serve prod, not every process of the gateway. A cell's sandbox (which protections are in force, which
are missing and why) is shown by status. A live version is identified by its number and its bundle's
hash, so `--wait` confirms the code that was committed, not only its number.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 15:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runtimes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("environment", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("sandbox", sa.Text(), nullable=True))
    with op.batch_alter_table("runtime_functions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("bundle_hash", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runtime_functions", schema=None) as batch_op:
        batch_op.drop_column("bundle_hash")
    with op.batch_alter_table("runtimes", schema=None) as batch_op:
        batch_op.drop_column("sandbox")
        batch_op.drop_column("environment")
