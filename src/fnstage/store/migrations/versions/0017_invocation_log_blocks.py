"""invocation logs in blocks: one row per function and write, its invocations column-wise

Every invocation of `invocation_logs` moves into `invocation_log_blocks` (blocks of up to BLOCK
consecutive entries of one function, in id order), so none is lost on upgrade; the old table goes.
New ids are all larger than every old one: a follower's cursor from before skips nothing (it may see
the moved entries once more). On PostgreSQL each runtime role's policy on the old table is given on
the new one, with the same privileges, so runtimes keep writing with the credentials they have.

The encoding is this migration's own copy of `store.invocation_log.block_row`'s: a migration stays
what it was when the code it served changes.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-01 17:30:00
"""

import json
from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
BLOCK_BITS = 12
BLOCK = 1000  # entries per moved block (at most 2**BLOCK_BITS)
ROW_COLUMNS = (
    "gateway_id, name, version, request_id, started_at, status, duration_ms, lines, error, "
    '"trigger", runtime_id'
)
BLOCK_COLUMNS = (
    "id, gateway_id, name, entries, first_started, last_started, min_version, max_version, min_status, "
    "max_status, request_ids, started_at, versions, statuses, durations_ms, lines, errors, triggers, "
    "runtime_id, runtime_ids"
)
_encode = json.JSONEncoder(separators=(",", ":")).encode


def upgrade() -> None:
    op.create_table(
        "invocation_log_blocks",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column(
            "gateway_id", sa.String(40), sa.ForeignKey("gateways.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("name", sa.String(220), nullable=False),
        sa.Column("entries", sa.Integer(), nullable=False),
        sa.Column("first_started", sa.Float(), nullable=False),
        sa.Column("last_started", sa.Float(), nullable=False),
        sa.Column("min_version", sa.Integer(), nullable=False),
        sa.Column("max_version", sa.Integer(), nullable=False),
        sa.Column("min_status", sa.Integer(), nullable=False),
        sa.Column("max_status", sa.Integer(), nullable=False),
        sa.Column("request_ids", sa.Text(), nullable=False),
        sa.Column("started_at", sa.Text(), nullable=False),
        sa.Column("versions", sa.Text(), nullable=False),
        sa.Column("statuses", sa.Text(), nullable=False),
        sa.Column("durations_ms", sa.Text(), nullable=False),
        sa.Column("lines", sa.Text(), nullable=False),
        sa.Column("errors", sa.Text()),
        sa.Column("triggers", sa.Text()),
        sa.Column("runtime_id", sa.String(36)),
        sa.Column("runtime_ids", sa.Text()),
    )
    op.create_index(
        "ix_invocation_log_blocks_function", "invocation_log_blocks", ["gateway_id", "name", "id"]
    )
    op.create_index("ix_invocation_log_blocks_last_started", "invocation_log_blocks", ["last_started"])
    conn = op.get_bind()
    postgres = conn.dialect.name == "postgresql"
    next_block = (int(conn.scalar(sa.text("SELECT max(id) FROM invocation_logs")) or 0) >> BLOCK_BITS) + 1
    insert = sa.text(
        f"INSERT INTO invocation_log_blocks ({BLOCK_COLUMNS}) VALUES ("
        + ", ".join(":" + c.strip() for c in BLOCK_COLUMNS.split(","))
        + ")"
    )
    rows = conn.execute(
        sa.text(f"SELECT {ROW_COLUMNS} FROM invocation_logs ORDER BY gateway_id, name, id"),
        execution_options={"stream_results": True, "yield_per": BLOCK},
    )
    pending: list[dict[str, Any]] = []
    for records in _runs(rows):
        pending.append(_block(next_block, records))
        next_block += 1
        if len(pending) >= 20:
            conn.execute(insert, pending)
            pending = []
    if pending:
        conn.execute(insert, pending)
    if postgres:
        conn.execute(
            sa.text("SELECT setval(pg_get_serial_sequence('invocation_log_blocks', 'id'), :n, false)"),
            {"n": next_block},
        )
        _carry_runtime_policies(conn, "invocation_logs", "invocation_log_blocks")
    op.drop_index("ix_invocation_logs_started", table_name="invocation_logs")
    op.drop_index("ix_invocation_logs_function", table_name="invocation_logs")
    op.drop_table("invocation_logs")


def _runs(rows: Iterator[Any]) -> Iterator[list[Sequence[Any]]]:
    """Consecutive rows of one function, BLOCK at most."""
    run: list[Sequence[Any]] = []
    for row in rows:
        if run and (len(run) == BLOCK or tuple(row[:2]) != tuple(run[0][:2])):
            yield run
            run = []
        run.append(tuple(row))
    if run:
        yield run


def _block(block_id: int, records: list[Sequence[Any]]) -> dict[str, Any]:
    n = len(records)
    _, _, versions, request_ids, started, statuses, durations, lines, errors, triggers, runtimes = zip(
        *records, strict=True
    )
    shared = runtimes[0] if runtimes.count(runtimes[0]) == n else None
    return {
        "id": block_id,
        "gateway_id": records[0][0],
        "name": records[0][1],
        "entries": n,
        "first_started": min(started),
        "last_started": max(started),
        "min_version": min(versions),
        "max_version": max(versions),
        "min_status": min(statuses),
        "max_status": max(statuses),
        "request_ids": _encode(request_ids),
        "started_at": _encode([float(s) for s in started]),
        "versions": _encode(versions),
        "statuses": _encode(statuses),
        "durations_ms": _encode([float(d) for d in durations]),
        "lines": _encode(lines),
        "errors": None if errors.count(None) == n else _encode(errors),
        "triggers": None if triggers.count(None) == n else _encode(triggers),
        "runtime_id": shared,
        "runtime_ids": None if shared is not None or runtimes.count(None) == n else _encode(runtimes),
    }


def _carry_runtime_policies(conn: sa.Connection, old: str, new: str) -> None:
    """Each role with a policy on `old` (a runtime's: `store.credentials`) gets the same on `new`."""
    policies = conn.execute(
        sa.text(
            "SELECT policyname, qual, with_check FROM pg_policies"
            " WHERE schemaname = current_schema() AND tablename = :t AND cmd = 'ALL'"
        ),
        {"t": old},
    ).all()
    if not policies:
        return
    conn.execute(sa.text(f"ALTER TABLE {new} ENABLE ROW LEVEL SECURITY"))
    for role, qual, check in policies:
        conn.execute(sa.text(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {new} TO {role}"))
        conn.execute(sa.text(f"GRANT USAGE ON SEQUENCE {new}_id_seq TO {role}"))
        conn.execute(
            sa.text(
                f"CREATE POLICY {role} ON {new} FOR ALL TO {role} USING ({qual}) WITH CHECK ({check or qual})"
            )
        )


def downgrade() -> None:
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
        sa.Column("lines", sa.Text(), nullable=False),
        sa.Column("error", sa.Text()),
        sa.Column("trigger", sa.String(64)),
        sa.Column("runtime_id", sa.String(36)),
    )
    op.create_index("ix_invocation_logs_function", "invocation_logs", ["gateway_id", "name", "id"])
    op.create_index("ix_invocation_logs_started", "invocation_logs", ["started_at"])
    conn = op.get_bind()
    insert = sa.text(
        f"INSERT INTO invocation_logs ({ROW_COLUMNS}) VALUES (:gateway_id, :name, :version, :request_id,"
        " :started_at, :status, :duration_ms, :lines, :error, :trigger, :runtime_id)"
    )
    blocks = conn.execute(
        sa.text(f"SELECT {BLOCK_COLUMNS} FROM invocation_log_blocks ORDER BY id"),
        execution_options={"stream_results": True, "yield_per": 20},
    )
    for block in blocks:
        conn.execute(insert, list(_expand(block)))
    if conn.dialect.name == "postgresql":
        _carry_runtime_policies(conn, "invocation_log_blocks", "invocation_logs")
    op.drop_index("ix_invocation_log_blocks_last_started", table_name="invocation_log_blocks")
    op.drop_index("ix_invocation_log_blocks_function", table_name="invocation_log_blocks")
    op.drop_table("invocation_log_blocks")


def _expand(block: Any) -> Iterator[dict[str, Any]]:
    n = block.entries
    errors = json.loads(block.errors) if block.errors is not None else [None] * n
    triggers = json.loads(block.triggers) if block.triggers is not None else [None] * n
    runtimes = json.loads(block.runtime_ids) if block.runtime_ids is not None else [block.runtime_id] * n
    columns = zip(
        json.loads(block.request_ids),
        _floats(json.loads(block.started_at), 1e6),
        json.loads(block.versions),
        json.loads(block.statuses),
        _floats(json.loads(block.durations_ms), 1000),
        json.loads(block.lines),
        errors,
        triggers,
        runtimes,
        strict=True,
    )
    for request_id, started, version, status, duration, lines, error, trigger, runtime in columns:
        yield {
            "gateway_id": block.gateway_id,
            "name": block.name,
            "version": version,
            "request_id": request_id,
            "started_at": started,
            "status": status,
            "duration_ms": duration,
            "lines": lines,
            "error": error,
            "trigger": trigger,
            "runtime_id": runtime,
        }


def _floats(column: list[Any], per_unit: float) -> list[Any]:
    """A block's times as rows held them (seconds, milliseconds): blocks written since this migration
    may hold integer microseconds (`store.invocation_log`), which are divided by `per_unit`."""
    if column and type(column[0]) is int:
        return [us / per_unit for us in column]
    return column
