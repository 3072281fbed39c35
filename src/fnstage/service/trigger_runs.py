"""One scheduled run: invoke the function's current version through a runtime, and record the end.

The run goes to a runtime serving the gateway that has the function live, through the runtime's
`/_fnstage/invoke`, guarded by the key the runtime registered (as `fnstage logs` reads logs): the
runtime runs it like a request (the function's time limit, its logs, its counts) with `ctx.trigger`
set. Only a runtime that certainly did not run it (unreachable, or without the function live) is
passed over for the next; a run that timed out is never sent again. When no runtime has the function
live yet (`fnstage up` catching up a missed tick while its runtime still starts, say), the run waits
up to `WAIT_FOR_RUNTIME_S` for one before it fails.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx

from fnstage.service.rollouts import serving
from fnstage.store import triggers as sql
from fnstage.store.records import RuntimeRecord
from fnstage.store.store import Store, now
from fnstage.store.triggers import TriggerRecord

logger = logging.getLogger("fnstage.scheduler")

ANSWER_GRACE_S = 10.0  # past the function's own time limit, for the runtime's answer to arrive
WAIT_FOR_RUNTIME_S = 30.0  # for a runtime that has the function live, before the run fails
RETRY_EVERY_S = 0.25
MAX_ERROR_CHARS = 4000


@dataclass(frozen=True)
class ClaimedRun:
    """A tick this scheduler claimed and must now run."""

    run_id: int
    trigger: TriggerRecord
    tick: datetime
    request_id: str


@dataclass(frozen=True)
class RunResult:
    status: str  # ok | failed
    http_status: int | None
    version: int | None
    runtime_id: str | None
    duration_ms: float
    error: str | None
    lines: list[str]


class TriggerRunner:
    def __init__(self, store: Store, wait_for_runtime_s: float = WAIT_FOR_RUNTIME_S) -> None:
        self.store = store
        self.wait_for_runtime_s = wait_for_runtime_s
        self.stopping = threading.Event()  # set: stop waiting for runtimes

    def run(self, claimed: ClaimedRun) -> RunResult:
        """Invoke and record; never raises (a failure is the run's result)."""
        started = time.perf_counter()
        try:
            result = self._invoke(claimed, started)
        except Exception as exc:  # a bug here must not stop the scheduler's other runs
            logger.exception("trigger run %s failed to run", claimed.run_id)
            result = _failed(f"the scheduler could not run it: {exc}", started)
        self.record(claimed.run_id, result)
        return result

    def record(self, run_id: int, result: RunResult) -> None:
        with self.store.write() as tx:
            sql.finish_run(
                tx,
                run_id,
                status=result.status,
                finished_at=now(),
                duration_ms=round(result.duration_ms, 3),
                http_status=result.http_status,
                version=result.version,
                runtime_id=result.runtime_id,
                error=result.error[:MAX_ERROR_CHARS] if result.error else None,
                lines=result.lines,
            )

    def _invoke(self, claimed: ClaimedRun, started: float) -> RunResult:
        """Ask runtimes until one runs it; while none could have, try again until the wait is over."""
        give_up = time.monotonic() + self.wait_for_runtime_s
        while True:
            result, retry = self._attempt(claimed, started)
            if not retry or time.monotonic() >= give_up or self.stopping.wait(RETRY_EVERY_S):
                return result

    def _attempt(self, claimed: ClaimedRun, started: float) -> tuple[RunResult, bool]:
        """The result, and whether trying again may help (no runtime ran it, none may have)."""
        trigger = claimed.trigger
        name = trigger.function
        with self.store.read() as tx:
            function = tx.get_function(trigger.gateway_id, trigger.env, trigger.base)
            runtimes = serving(tx, trigger.gateway_id)
            live_on = {r.runtime_id for r in tx.runtime_functions(trigger.gateway_id, name) if r.version}
        if function is None:
            message = f"no function {name} in gateway {trigger.gateway_id} (deleted or renamed?)"
            return _failed(message, started), False
        candidates = list({r.url: r for r in runtimes if r.id in live_on}.values())
        if not candidates:
            message = f"no runtime serving gateway {trigger.gateway_id} had {name} live"
            return _failed(f"{message} within {self.wait_for_runtime_s:g} s", started), True
        random.shuffle(candidates)  # spread runs over the runtimes
        order = {
            "gateway": trigger.gateway_id,
            "name": name,
            "request_id": claimed.request_id,
            "payload": trigger.payload,
            "trigger": {
                "name": trigger.name,
                "schedule": trigger.cron,
                "timezone": trigger.timezone,
                "tick": claimed.tick.isoformat(),
            },
        }
        reasons = []
        timeout = httpx.Timeout(function.timeout_s + ANSWER_GRACE_S, connect=2.0)
        with httpx.Client(timeout=timeout) as client:
            for runtime in candidates:
                outcome, reason, may_have_run = _ask(client, runtime, order)
                if outcome is not None:
                    return _result(outcome, runtime, started), False
                if may_have_run:  # never run a tick twice
                    return _failed(reason, started, runtime.id), False
                reasons.append(reason)
        return _failed("; ".join(reasons), started), True


def _ask(client: httpx.Client, runtime: RuntimeRecord, order: dict[str, Any]) -> tuple[Any, str, bool]:
    """(the runtime's outcome, "", True), or (None, why not, whether the function may have run)."""
    try:
        answer = client.post(
            f"{runtime.url}/_fnstage/invoke",
            json=order,
            headers={"Authorization": f"Bearer {runtime.control_key}"},
        )
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        return None, f"runtime {runtime.host}:{runtime.pid} unreachable ({type(exc).__name__})", False
    except httpx.HTTPError as exc:
        return None, f"no answer from runtime {runtime.host}:{runtime.pid} ({type(exc).__name__})", True
    if answer.status_code != 200:
        try:
            message = answer.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = answer.text[:200]
        reason = f"runtime {runtime.host}:{runtime.pid} refused the run: {answer.status_code} {message}"
        return None, reason, False
    try:
        return answer.json(), "", True
    except ValueError:
        return None, f"an unreadable answer from runtime {runtime.host}:{runtime.pid}", True


def _result(outcome: Any, runtime: RuntimeRecord, started: float) -> RunResult:
    status = int(outcome.get("status") or 0)
    error = outcome.get("error")
    if status >= 400 and not error:
        error = f"the function answered HTTP {status}"
    return RunResult(
        status="ok" if 0 < status < 400 else "failed",
        http_status=status,
        version=outcome.get("version"),
        runtime_id=runtime.id,
        duration_ms=float(outcome.get("duration_ms") or (time.perf_counter() - started) * 1000),
        error=error,
        lines=[str(line) for line in outcome.get("lines") or []],
    )


def _failed(error: str, started: float, runtime_id: str | None = None) -> RunResult:
    duration = (time.perf_counter() - started) * 1000
    return RunResult("failed", None, None, runtime_id, duration, error, [])


def run_deadline(started_at: datetime, timeout_s: float) -> datetime:
    """When a run claimed at `started_at` (wall clock) has certainly ended, answered or not."""
    return started_at + timedelta(seconds=WAIT_FOR_RUNTIME_S + timeout_s + 2 * ANSWER_GRACE_S)
