"""SQL for canary releases: the canary of a function, its decision, and the counts runtimes report.

Functions take the caller's `Tx` (like `store.triggers`). `decide` is the heart of "decided once": it
moves a canary away from `running` (or to its next step) only if it is still in the state and step the
caller read (`UPDATE ... WHERE state = 'running' AND step = :step`), in the transaction that writes the
consequence. On PostgreSQL a second control plane's UPDATE waits for the first's row lock, then finds
the row changed and updates nothing; on SQLite writers queue behind `BEGIN IMMEDIATE`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Select, and_, insert, select, update

from fnstage.domain.canary import ArmCounts, CanarySpec
from fnstage.store import schema as t
from fnstage.store.engine import upsert_many
from fnstage.store.records import utc
from fnstage.store.store import Tx, now

RUNNING = "running"
FEED_ACTION = "canary"  # the publish log's entry for a canary started, stepped or decided


def announce(tx: Tx, canary: CanaryRecord) -> None:
    """Tell runtimes (the change feed: NOTIFY on PostgreSQL, the publish log on SQLite) that the
    function's canary changed, in the transaction that changes it: they learn it as fast as a publish."""
    tx.log_change(canary.gateway_id, canary.name, canary.canary_version, FEED_ACTION)


@dataclass(frozen=True)
class CanaryRecord:
    id: int
    gateway_id: str
    env: str
    base: str
    function_id: int
    stable_version: int
    stable_semver: str
    canary_version: int
    canary_semver: str
    canary_history_id: int
    steps: list[int]
    step: int
    bake_s: float
    max_error_rate_increase: float
    max_p95_ratio: float
    min_requests: int
    state: str
    reason: str | None
    started_at: datetime
    started_by: str
    step_started_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    measured: dict[str, Any] | None

    @property
    def name(self) -> str:
        return f"{self.env}/{self.base}"

    @property
    def share(self) -> int:
        return int(self.steps[min(self.step, len(self.steps) - 1)])

    @property
    def spec(self) -> CanarySpec:
        return CanarySpec(
            tuple(self.steps),
            self.bake_s,
            self.max_error_rate_increase,
            self.max_p95_ratio,
            self.min_requests,
        )


def _canary(row: Row[Any]) -> CanaryRecord:
    values = dict(row._mapping)
    for key in ("started_at", "step_started_at"):
        values[key] = utc(values[key])
    if values["decided_at"] is not None:
        values["decided_at"] = utc(values["decided_at"])
    values["steps"] = [int(s) for s in values["steps"]]
    return CanaryRecord(**values)


def insert_canary(tx: Tx, values: dict[str, Any]) -> CanaryRecord:
    result = tx.conn.execute(insert(t.canaries).values(**values))
    assert result.inserted_primary_key is not None
    found = get(tx, int(result.inserted_primary_key[0]))
    assert found is not None
    announce(tx, found)
    return found


def get(tx: Tx, canary_id: int) -> CanaryRecord | None:
    row = tx.conn.execute(select(t.canaries).where(t.canaries.c.id == canary_id)).first()
    return _canary(row) if row else None


def latest(tx: Tx, gateway_id: str, env: str, base: str) -> CanaryRecord | None:
    """The function's most recent canary, running or decided."""
    c = t.canaries.c
    stmt = (
        select(t.canaries)
        .where(c.gateway_id == gateway_id, c.env == env, c.base == base)
        .order_by(c.id.desc())
        .limit(1)
    )
    row = tx.conn.execute(stmt).first()
    return _canary(row) if row else None


def running(tx: Tx, gateway_id: str | None = None, env: str | None = None) -> list[CanaryRecord]:
    stmt: Select[Any] = select(t.canaries).where(t.canaries.c.state == RUNNING)
    if gateway_id is not None:
        stmt = stmt.where(t.canaries.c.gateway_id == gateway_id)
    if env is not None:
        stmt = stmt.where(t.canaries.c.env == env)
    return [_canary(r) for r in tx.conn.execute(stmt.order_by(t.canaries.c.id))]


def decide(tx: Tx, canary: CanaryRecord, **values: Any) -> bool:
    """Move `canary` on from the state and step it was read in; False if someone else did first."""
    c = t.canaries.c
    result = tx.conn.execute(
        update(t.canaries)
        .where(and_(c.id == canary.id, c.state == RUNNING, c.step == canary.step))
        .values(**values)
    )
    if result.rowcount != 1:
        return False
    announce(tx, canary)
    return True


def counts(tx: Tx, canary_id: int) -> dict[str, ArmCounts]:
    """Both arms' counts, added up over every runtime that reported them."""
    arms = {"canary": ArmCounts(), "stable": ArmCounts()}
    rows = tx.conn.execute(select(t.canary_counts).where(t.canary_counts.c.canary_id == canary_id))
    for row in rows:
        if row.arm in arms:
            arms[row.arm].add(ArmCounts(int(row.requests), int(row.errors), [int(n) for n in row.latency]))
    return arms


_COUNT_COLUMNS = ("canary_id", "runtime_id", "arm", "requests", "errors", "latency", "updated_at")


def write_counts(tx: Tx, runtime_id: str, items: list[tuple[int, str, ArmCounts]]) -> None:
    """A runtime's counts per (canary, arm) since its cells began counting them (they replace the last)."""
    if not items:
        return
    stamp = now()
    rows = [
        {
            "canary_id": canary_id,
            "runtime_id": runtime_id,
            "arm": arm,
            "requests": c.requests,
            "errors": c.errors,
            "latency": list(c.latency),
            "updated_at": stamp,
        }
        for canary_id, arm, c in items
    ]
    known = {
        int(i)
        for i in tx.conn.scalars(
            select(t.canaries.c.id).where(t.canaries.c.id.in_({r["canary_id"] for r in rows}))
        )
    }
    rows = [r for r in rows if r["canary_id"] in known]  # a canary deleted with its gateway
    if rows:
        statement = upsert_many(
            tx.conn.engine, t.canary_counts, _COUNT_COLUMNS, ("canary_id", "runtime_id", "arm")
        )
        tx.conn.execute(statement, rows)
