"""index functions by history entry

Pruning history checks which of the entries it would delete are some function's current source; without
this index that check scanned every function of the gateway (a save in a gateway of 10,000 functions).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 01:20:00
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("functions", schema=None) as batch_op:
        batch_op.create_index("ix_functions_history", ["gateway_id", "history_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("functions", schema=None) as batch_op:
        batch_op.drop_index("ix_functions_history")
