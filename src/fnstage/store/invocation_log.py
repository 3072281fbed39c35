"""The durable invocation log: write batches of invocations, keep each function's newest within its
bounds (count and age), and read them back filtered (version, status, time, a follow cursor).

Runtime supervisors write (`runtime.log_writer`), the control plane reads (`service.invocation_logs`).
Both pass their engine; nothing here is on a request's path.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import Engine, and_, delete, func, select

from fnstage.store import schema as t
from fnstage.store.engine import read_options, write_options

_LOGS = t.invocation_logs


class LogRecord(NamedTuple):
    """One invocation as a supervisor writes it (what a cell reported, checked). A tuple: a supervisor
    makes thousands a second, on the process that also runs the front."""

    gateway: str
    name: str
    version: int
    request_id: str
    started_at: float
    status: int
    duration_ms: float
    lines: str  # a JSON list of strings, as the cell encoded it
    error: str | None = None
    trigger: str | None = None
    runtime_id: str | None = None


@dataclass(frozen=True)
class LogFilter:
    """What a reader asks for. `status`: an exact code, or a class: "ok" (< 400), "error" (>= 500),
    "4xx", "5xx". `after`: a follow cursor (entries with a larger id, oldest first)."""

    version: int | None = None
    status: int | str | None = None
    since: float | None = None
    until: float | None = None
    request_id: str | None = None
    after: int | None = None
    limit: int = 50


_INSERT = (
    "INSERT INTO invocation_logs (gateway_id, name, version, request_id, started_at, status, duration_ms, "
    'lines, error, "trigger", runtime_id) VALUES ({0}, {0}, {0}, {0}, {0}, {0}, {0}, {0}, {0}, {0}, {0})'
)


def write(engine: Engine, records: Sequence[LogRecord], runtime_id: str | None = None) -> None:
    """Insert a batch in one transaction (functions whose gateway was deleted are skipped).

    The records go to the driver as they are (one `executemany`, `lines` as the cell encoded them):
    SQLAlchemy's per-row processing, and encoding `lines` here, cost more than the rest of the
    supervisor's work per invocation. A record's `runtime_id`, if it has one, wins over `runtime_id`."""
    if not records:
        return
    with engine.connect() as conn:
        statement = _INSERT.format("?" if conn.dialect.name == "sqlite" else "%s")
        conn.execution_options(**write_options(engine))
        with conn.begin():
            gateways = {r[0] for r in records}
            known = set(conn.scalars(select(t.gateways.c.id).where(t.gateways.c.id.in_(gateways))))
            # a record is its row (LogRecord's fields are the columns, in order), by index, not by name
            # (a NamedTuple's field by name is a property's call each); as an exact tuple: sqlite3 binds
            # a tuple's subclass through the slower sequence protocol (about 1 us a row more)
            rows: list[tuple[Any, ...]]
            if runtime_id is not None and any(r[10] is None for r in records):
                rows = [(*r[:10], runtime_id) if r[10] is None else tuple(r) for r in records]
            else:
                rows = list(map(tuple, records))
            if len(known) < len(gateways):
                rows = [r for r in rows if r[0] in known]
            if rows:
                conn.exec_driver_sql(statement, rows)


PRUNE_CHUNK = 500  # rows deleted per transaction
PRUNE_PAUSE_S = 0.03  # between chunks on SQLite, longer than a waiting writer's busy-handler sleep


def prune(
    engine: Engine,
    functions: Iterable[tuple[str, str]],
    keep: int,
    older_than: float | None,
    *,
    chunk: int = PRUNE_CHUNK,
    pause_s: float | None = None,
) -> int:
    """Drop entries older than `older_than` (seconds since the epoch), then all but the newest `keep`
    of each of `functions` (the ones written to since the last prune). Returns how many went.

    Rows go `chunk` at a time, each in its own transaction, with a pause between them on SQLite: one
    DELETE of the 100,000 rows a busy function logs between prunes held SQLite's write lock for
    120 ms, and a save waiting on it went live that much later. SQLite's busy handler retries a
    waiting writer every 25 ms or less in its first 100 ms, so a longer pause lets it in."""
    if pause_s is None:
        pause_s = 0.0 if engine.dialect.name == "postgresql" else PRUNE_PAUSE_S
    dropped = 0
    if older_than is not None:
        dropped += _delete_in_chunks(engine, _LOGS.c.started_at < older_than, chunk, pause_s)
    for gateway, name in sorted(set(functions)):
        of_function = and_(_LOGS.c.gateway_id == gateway, _LOGS.c.name == name)
        with engine.connect() as conn:
            oldest_kept = conn.scalar(
                select(_LOGS.c.id).where(of_function).order_by(_LOGS.c.id.desc()).offset(keep - 1).limit(1)
            )
        if oldest_kept is not None:
            dropped += _delete_in_chunks(engine, and_(of_function, _LOGS.c.id < oldest_kept), chunk, pause_s)
    return dropped


def _delete_in_chunks(engine: Engine, where: Any, chunk: int, pause_s: float) -> int:
    dropped = 0
    while True:
        with engine.connect() as conn:
            conn.execution_options(**write_options(engine))
            with conn.begin():
                ids = select(_LOGS.c.id).where(where).limit(chunk).scalar_subquery()
                gone = conn.execute(delete(_LOGS).where(_LOGS.c.id.in_(ids))).rowcount or 0
        dropped += gone
        if gone < chunk:
            return dropped
        if pause_s:
            time.sleep(pause_s)


def _status_clause(status: int | str) -> Any:
    column = _LOGS.c.status
    if isinstance(status, int):
        return column == status
    return {
        "ok": column < 400,
        "error": column >= 500,
        "4xx": and_(column >= 400, column < 500),
        "5xx": column >= 500,
    }[status]


def read(engine: Engine, gateway: str, name: str, wanted: LogFilter) -> tuple[list[dict[str, Any]], int]:
    """Entries of one function (newest first; oldest first after a cursor) and the newest id the log
    holds for it (0 if none): the cursor from which to follow."""
    where = [_LOGS.c.gateway_id == gateway, _LOGS.c.name == name]
    if wanted.version is not None:
        where.append(_LOGS.c.version == wanted.version)
    if wanted.status is not None:
        where.append(_status_clause(wanted.status))
    if wanted.since is not None:
        where.append(_LOGS.c.started_at >= wanted.since)
    if wanted.until is not None:
        where.append(_LOGS.c.started_at < wanted.until)
    if wanted.request_id is not None:
        where.append(_LOGS.c.request_id == wanted.request_id)
    if wanted.after is not None:
        where.append(_LOGS.c.id > wanted.after)
        order = _LOGS.c.id.asc()
    else:
        order = _LOGS.c.id.desc()
    query = select(_LOGS).where(*where).order_by(order).limit(wanted.limit)
    newest = select(func.max(_LOGS.c.id)).where(_LOGS.c.gateway_id == gateway, _LOGS.c.name == name)
    with engine.connect() as conn:
        conn.execution_options(**read_options(engine))
        with conn.begin():
            rows = conn.execute(query).all()
            cursor = conn.scalar(newest) or 0
    return [_entry(row) for row in rows], int(cursor)


def _entry(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "request_id": row.request_id,
        "time": row.started_at,
        "version": row.version,
        "status": row.status,
        "duration_ms": row.duration_ms,
        "lines": read_lines(row.lines),
        "error": row.error,
        "trigger": row.trigger,
        "runtime": row.runtime_id,
    }


def read_lines(text: str | None) -> list[str]:
    """`lines` as stored: a JSON list of strings written by a cell, which is not trusted to have."""
    try:
        lines = json.loads(text or "[]")
    except ValueError:
        return ["(these lines could not be read: not JSON)"]
    if not isinstance(lines, list):
        return ["(these lines could not be read: not a list)"]
    return [line if isinstance(line, str) else json.dumps(line) for line in lines]


def samples(engine: Engine, gateway: str, name: str, since: float) -> list[tuple[float, int, int, float]]:
    """(started_at, version, status, duration_ms) of one function's invocations since `since`, oldest
    first: what its charts are computed from."""
    query = (
        select(_LOGS.c.started_at, _LOGS.c.version, _LOGS.c.status, _LOGS.c.duration_ms)
        .where(_LOGS.c.gateway_id == gateway, _LOGS.c.name == name, _LOGS.c.started_at >= since)
        .order_by(_LOGS.c.id)
    )
    with engine.connect() as conn:
        conn.execution_options(**read_options(engine))
        with conn.begin():
            return [(float(r[0]), int(r[1]), int(r[2]), float(r[3])) for r in conn.execute(query)]
