"""Triggers: run an environment's function on a cron schedule. Add, list, pause, resume, remove, runs.

A trigger belongs to one environment's function (`prod/reports/daily`) and is never copied by
promotion: staging's schedule is staging's. Changes are audited. The scheduler
(`service.scheduler`) claims and runs the ticks; this module only keeps the triggers.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from fnstage.domain.errors import Conflict, InvalidInput, NotFound
from fnstage.domain.names import FunctionName, check_base, check_environment, check_gateway_id
from fnstage.domain.schedules import Schedule, check_trigger_name
from fnstage.service.identity import Actor
from fnstage.store import access
from fnstage.store import triggers as sql
from fnstage.store.store import Store, Tx, now
from fnstage.store.triggers import RunRecord, TriggerRecord

MAX_PAYLOAD_BYTES = 64 * 1024
MAX_RUNS_PAGE = 100
LOST_GRACE = timedelta(seconds=30)  # a run still "running" this long after its deadline was lost


@dataclass(frozen=True)
class RunView:
    """A run as users see it: a run whose scheduler stopped before recording the end is `lost`."""

    run: RunRecord
    status: str


class Triggers:
    def __init__(self, store: Store, clock: Callable[[], datetime] = now) -> None:
        self.store = store
        self.clock = clock

    def add(
        self,
        actor: Actor,
        gateway: str,
        function: str,
        cron: str,
        timezone: str = "UTC",
        name: str | None = None,
        payload: Any = None,
    ) -> TriggerRecord:
        fname = FunctionName.parse(function, field="function")
        schedule = Schedule.parse(cron, timezone)
        trigger_name = check_trigger_name(name if name is not None else default_name(fname.base))
        _check_payload(payload)
        stamp = self.clock()
        with self.store.write() as tx:
            _gateway(tx, gateway)
            if tx.get_function(gateway, fname.env, fname.base) is None:
                raise NotFound(f"no function {fname} in gateway {gateway!r}", field="function")
            if sql.get_trigger(tx, gateway, fname.env, trigger_name) is not None:
                raise Conflict(
                    f"{fname.env} already has a trigger named {trigger_name!r}: choose another with --name",
                    field="name",
                )
            record = sql.insert_trigger(
                tx,
                {
                    "gateway_id": gateway,
                    "env": fname.env,
                    "name": trigger_name,
                    "base": fname.base,
                    "cron": schedule.cron,
                    "timezone": schedule.timezone,
                    "payload": payload,
                    "paused": False,
                    "next_tick": schedule.next_after(stamp),
                    "created_at": stamp,
                    "created_by": actor.name,
                    "updated_at": stamp,
                    "updated_by": actor.name,
                },
            )
            _audit(tx, actor, "trigger.add", record, cron=schedule.cron, timezone=schedule.timezone)
            return record

    def find(self, gateway: str, env: str | None = None, base: str | None = None) -> list[TriggerRecord]:
        if env is not None:
            check_environment(env, field="env")
        if base is not None:
            check_base(base, field="function")
        with self.store.read() as tx:
            _gateway(tx, gateway)
            return sql.list_triggers(tx, gateway, env, base)

    def get(self, gateway: str, env: str, name: str) -> TriggerRecord:
        with self.store.read() as tx:
            return _find(tx, gateway, env, name)

    def remove(self, actor: Actor, gateway: str, env: str, name: str) -> TriggerRecord:
        with self.store.write() as tx:
            record = _find(tx, gateway, env, name)
            sql.delete_trigger(tx, record.id)
            _audit(tx, actor, "trigger.remove", record)
            return record

    def set_paused(self, actor: Actor, gateway: str, env: str, name: str, paused: bool) -> TriggerRecord:
        """Pause: no tick fires until resumed. Resume: the next tick after now; ticks that passed while
        paused are not caught up (pausing says not to run them)."""
        stamp = self.clock()
        with self.store.write() as tx:
            record = _find(tx, gateway, env, name)
            if record.paused == paused:
                return record
            values: dict[str, Any] = {"paused": paused, "updated_at": stamp, "updated_by": actor.name}
            if not paused:
                values["next_tick"] = Schedule(record.cron, record.timezone).next_after(stamp)
            sql.update_trigger(tx, record.id, **values)
            _audit(tx, actor, "trigger.resume" if not paused else "trigger.pause", record)
            found = sql.get_trigger_by_id(tx, record.id)
            assert found is not None
            return found

    def runs(self, gateway: str, env: str, name: str, limit: int = 20) -> tuple[TriggerRecord, list[RunView]]:
        """The trigger and its newest runs, newest first."""
        if not 1 <= limit <= MAX_RUNS_PAGE:
            raise InvalidInput(f"limit must be 1 to {MAX_RUNS_PAGE}", field="limit")
        with self.store.read() as tx:
            record = _find(tx, gateway, env, name)
            runs = sql.list_runs(tx, record.id, limit)
        clock = now()  # deadlines are real time: the scheduler's HTTP call is
        return record, [RunView(r, _status(r, clock)) for r in runs]


def default_name(base: str) -> str:
    """`reports/daily` -> `reports-daily`: a trigger's name unless one is given."""
    return "-".join(part.replace("_", "-") for part in base.split("/"))[:64].strip("-") or "trigger"


def _status(run: RunRecord, clock: datetime) -> str:
    if run.status == "running" and clock > run.deadline_at + LOST_GRACE:
        return "lost"
    return run.status


def _check_payload(payload: Any) -> None:
    try:
        size = len(json.dumps(payload))
    except (TypeError, ValueError):
        raise InvalidInput("payload must be JSON", field="payload") from None
    if size > MAX_PAYLOAD_BYTES:
        raise InvalidInput(
            f"payload is {size} bytes of JSON: at most {MAX_PAYLOAD_BYTES} are allowed", field="payload"
        )


def _gateway(tx: Tx, gateway: str) -> None:
    check_gateway_id(gateway)
    if tx.get_gateway(gateway) is None:
        raise NotFound(f"no gateway {gateway!r}", field="gateway")


def _find(tx: Tx, gateway: str, env: str, name: str) -> TriggerRecord:
    check_environment(env, field="env")
    check_trigger_name(name)
    _gateway(tx, gateway)
    record = sql.get_trigger(tx, gateway, env, name)
    if record is None:
        raise NotFound(f"no trigger {name!r} in {env} of gateway {gateway!r}", field="name")
    return record


def _audit(tx: Tx, actor: Actor, action: str, record: TriggerRecord, **details: Any) -> None:
    access.record_audit(
        tx,
        actor.name,
        action,
        f"{record.env}/{record.name}",
        record.gateway_id,
        function=record.function,
        **details,
    )
