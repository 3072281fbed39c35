"""configuration and secrets per environment, versioned apart from code

Adds `config_versions` (each change: the whole state, who, when, a note) and `secret_keys` (each
gateway's data key, wrapped by the server key). Today's per-function `config` moves into its own
environment's configuration as function overrides (version 1, kind `import`), and the functions'
`config` columns are emptied: promotion no longer carries configuration.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30 18:30:00
"""

import json
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "config_versions",
        sa.Column(
            "gateway_id", sa.String(40), sa.ForeignKey("gateways.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("env", sa.String(16), primary_key=True),
        sa.Column("version", sa.Integer(), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("note", sa.Text()),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("secrets", sa.JSON(), nullable=False),
        sa.Column("changes", sa.JSON(), nullable=False),
        sa.Column("source_version", sa.Integer()),
    )
    op.create_table(
        "secret_keys",
        sa.Column(
            "gateway_id", sa.String(40), sa.ForeignKey("gateways.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("wrapped", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
    )
    _move_function_config()


def _move_function_config() -> None:
    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT gateway_id, env, base, config FROM functions")).fetchall()
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for gateway, env, base, config in rows:
        value = json.loads(config) if isinstance(config, str) else config
        if value:
            found.setdefault((gateway, env), {})[base] = value
    table = sa.table(
        "config_versions",
        *(sa.column(c) for c in ("gateway_id", "env", "version", "kind", "note", "actor")),
        sa.column("created_at", sa.DateTime(timezone=True)),
        *(sa.column(c, sa.JSON()) for c in ("settings", "secrets", "changes")),
    )
    stamp = datetime.now(UTC)
    for (gateway, env), settings in sorted(found.items()):
        changes = [
            {"op": "set", "type": "config", "key": key, "function": base}
            for base, values in sorted(settings.items())
            for key in sorted(values)
        ]
        conn.execute(
            table.insert().values(
                gateway_id=gateway,
                env=env,
                version=1,
                kind="import",
                note="Moved from the functions' own config",
                actor="fnstage",
                created_at=stamp,
                settings=settings,
                secrets={},
                changes=changes,
            )
        )
    if found:
        for name in ("functions", "published"):
            conn.execute(sa.table(name, sa.column("config", sa.JSON())).update().values(config={}))


def downgrade() -> None:
    op.drop_table("secret_keys")
    op.drop_table("config_versions")
