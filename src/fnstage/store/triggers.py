"""SQL for scheduled runs: triggers, the claim of a tick, and the record of each run.

Functions take the caller's `Tx` (like `store.access`). The claim is the heart of "once per tick":
`claim_tick` moves a trigger's `next_tick` forward only if it still holds the tick the scheduler read
(`UPDATE ... WHERE next_tick = :expected`) and inserts the run in the same transaction. On PostgreSQL
a second scheduler's UPDATE waits for the first's row lock, then finds `next_tick` changed and updates
nothing; on SQLite writers queue behind `BEGIN IMMEDIATE`. The unique (trigger, tick) of
`trigger_runs` would refuse a second run of one tick even if that reasoning failed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, and_, bindparam, delete, func, insert, select, update

from fnstage.store import schema as t
from fnstage.store.records import utc
from fnstage.store.store import Tx

RUNS_KEPT = 100  # per trigger; older runs are deleted by the claim that adds a new one


@dataclass(frozen=True)
class TriggerRecord:
    id: int
    gateway_id: str
    env: str
    name: str
    base: str
    cron: str
    timezone: str
    payload: Any
    paused: bool
    next_tick: datetime
    created_at: datetime
    created_by: str
    updated_at: datetime
    updated_by: str

    @property
    def function(self) -> str:
        return f"{self.env}/{self.base}"


@dataclass(frozen=True)
class RunRecord:
    id: int
    trigger_id: int
    tick: datetime
    status: str  # running | ok | failed | missed
    claimed_by: str
    started_at: datetime
    deadline_at: datetime
    finished_at: datetime | None
    duration_ms: float | None
    http_status: int | None
    version: int | None
    request_id: str
    runtime_id: str | None
    skipped: int
    error: str | None
    lines: list[str] | None


def _trigger(row: Row[Any]) -> TriggerRecord:
    return TriggerRecord(
        id=row.id,
        gateway_id=row.gateway_id,
        env=row.env,
        name=row.name,
        base=row.base,
        cron=row.cron,
        timezone=row.timezone,
        payload=row.payload,
        paused=bool(row.paused),
        next_tick=utc(row.next_tick),
        created_at=utc(row.created_at),
        created_by=row.created_by,
        updated_at=utc(row.updated_at),
        updated_by=row.updated_by,
    )


def _run(row: Row[Any]) -> RunRecord:
    return RunRecord(
        id=row.id,
        trigger_id=row.trigger_id,
        tick=utc(row.tick),
        status=row.status,
        claimed_by=row.claimed_by,
        started_at=utc(row.started_at),
        deadline_at=utc(row.deadline_at),
        finished_at=utc(row.finished_at) if row.finished_at else None,
        duration_ms=row.duration_ms,
        http_status=row.http_status,
        version=row.version,
        request_id=row.request_id,
        runtime_id=row.runtime_id,
        skipped=int(row.skipped or 0),
        error=row.error,
        lines=list(row.lines) if row.lines is not None else None,
    )


# triggers -------------------------------------------------------------------------------------------
def insert_trigger(tx: Tx, values: dict[str, Any]) -> TriggerRecord:
    trigger_id = tx.conn.execute(insert(t.triggers).values(**values).returning(t.triggers.c.id)).scalar_one()
    found = get_trigger_by_id(tx, int(trigger_id))
    assert found is not None
    return found


def get_trigger(tx: Tx, gateway_id: str, env: str, name: str) -> TriggerRecord | None:
    row = tx.conn.execute(
        select(t.triggers).where(
            t.triggers.c.gateway_id == gateway_id, t.triggers.c.env == env, t.triggers.c.name == name
        )
    ).first()
    return _trigger(row) if row else None


def get_trigger_by_id(tx: Tx, trigger_id: int) -> TriggerRecord | None:
    row = tx.conn.execute(select(t.triggers).where(t.triggers.c.id == trigger_id)).first()
    return _trigger(row) if row else None


def list_triggers(
    tx: Tx, gateway_id: str, env: str | None = None, base: str | None = None
) -> list[TriggerRecord]:
    query = select(t.triggers).where(t.triggers.c.gateway_id == gateway_id)
    if env is not None:
        query = query.where(t.triggers.c.env == env)
    if base is not None:
        query = query.where(t.triggers.c.base == base)
    rows = tx.conn.execute(query.order_by(t.triggers.c.env, t.triggers.c.name))
    return [_trigger(r) for r in rows]


def update_trigger(tx: Tx, trigger_id: int, **values: Any) -> None:
    tx.conn.execute(update(t.triggers).where(t.triggers.c.id == trigger_id).values(**values))


def delete_trigger(tx: Tx, trigger_id: int) -> None:
    """The trigger and its runs (explicitly: SQLite enforces ON DELETE CASCADE only when asked to)."""
    tx.conn.execute(delete(t.trigger_runs).where(t.trigger_runs.c.trigger_id == trigger_id))
    tx.conn.execute(delete(t.triggers).where(t.triggers.c.id == trigger_id))


# the scheduler's statements, built once: it asks every second
_DUE = (
    select(t.triggers)
    .where(t.triggers.c.paused.is_(False), t.triggers.c.next_tick <= bindparam("now"))
    .order_by(t.triggers.c.next_tick)
    .limit(bindparam("limit"))
)
_EARLIEST = select(func.min(t.triggers.c.next_tick)).where(t.triggers.c.paused.is_(False))
_CLAIM = (
    update(t.triggers)
    .where(
        t.triggers.c.id == bindparam("trigger_id"),
        t.triggers.c.next_tick == bindparam("expected"),
        t.triggers.c.paused.is_(False),
    )
    .values(next_tick=bindparam("following"))
)
_INSERT_RUN = insert(t.trigger_runs).returning(t.trigger_runs.c.id)
_OLD_RUNS = (
    select(t.trigger_runs.c.id)
    .where(t.trigger_runs.c.trigger_id == bindparam("trigger_id"))
    .order_by(t.trigger_runs.c.id.desc())
    .offset(RUNS_KEPT)
)


def due_triggers(tx: Tx, now: datetime, limit: int = 500) -> list[TriggerRecord]:
    """Unpaused triggers whose next tick is at `now` or before, oldest tick first."""
    return [_trigger(r) for r in tx.conn.execute(_DUE, {"now": now, "limit": limit})]


def earliest_tick(tx: Tx) -> datetime | None:
    """The next tick of any unpaused trigger: how long a scheduler may sleep."""
    found = tx.conn.scalar(_EARLIEST)
    return utc(found) if found is not None else None


def claim_tick(
    tx: Tx, trigger_id: int, expected: datetime, following: datetime, run: dict[str, Any]
) -> int | None:
    """Move the trigger from `expected` to `following` and record `run` (for one tick), if no other
    scheduler did first: the new run's id, or None when the tick was not ours (claimed, paused,
    rescheduled or deleted meanwhile). Call inside `Store.write()`: both writes commit together."""
    claimed = tx.conn.execute(
        _CLAIM, {"trigger_id": trigger_id, "expected": expected, "following": following}
    )
    if claimed.rowcount != 1:
        return None
    run_id = tx.conn.execute(_INSERT_RUN, {**run, "trigger_id": trigger_id}).scalar_one()
    old = [r.id for r in tx.conn.execute(_OLD_RUNS, {"trigger_id": trigger_id})]
    if old:
        tx.conn.execute(delete(t.trigger_runs).where(t.trigger_runs.c.id.in_(old)))
    return int(run_id)


def finish_run(tx: Tx, run_id: int, **values: Any) -> None:
    """Record how a run ended (only a run still running: a late answer never rewrites a result)."""
    tx.conn.execute(
        update(t.trigger_runs)
        .where(and_(t.trigger_runs.c.id == run_id, t.trigger_runs.c.status == "running"))
        .values(**values)
    )


def list_runs(tx: Tx, trigger_id: int, limit: int = 20) -> list[RunRecord]:
    """Newest first."""
    rows = tx.conn.execute(
        select(t.trigger_runs)
        .where(t.trigger_runs.c.trigger_id == trigger_id)
        .order_by(t.trigger_runs.c.tick.desc(), t.trigger_runs.c.id.desc())
        .limit(limit)
    )
    return [_run(r) for r in rows]
