"""dependency locks: every gateway, version and history entry names the lock it was built with

A lock is uv's resolution of a gateway's requirements (exact versions and hashes), stored once by the
sha256 of its text. The published row carries the lock's text too: a runtime reads only `published`,
and installs a lock it lacks from there.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30 18:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "locks",
        sa.Column("hash", sa.String(64), primary_key=True),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    with op.batch_alter_table("gateways") as batch:
        batch.add_column(sa.Column("deps_lock_hash", sa.String(64)))
    for table in ("functions", "history", "published"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("lock_hash", sa.String(64)))
    with op.batch_alter_table("published") as batch:
        batch.add_column(sa.Column("lock", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("published") as batch:
        batch.drop_column("lock")
    for table in ("published", "history", "functions"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("lock_hash")
    with op.batch_alter_table("gateways") as batch:
        batch.drop_column("deps_lock_hash")
    op.drop_table("locks")
