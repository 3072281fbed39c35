"""The scheduler of the control plane: claim each due tick once, then run it through a runtime.

Every `fnstage up` (with or without its runtime) runs one. Any number of them may share a database:
a tick is claimed by one transaction (`store.triggers.claim_tick`), so exactly one of them runs it.
A scheduler wakes every `poll_s` (or sooner, at the next tick), reads the due triggers and, per
trigger, plans with `domain.schedules.plan_tick`: ticks missed while no scheduler ran collapse into
the latest, which runs once if it is within the catch-up window, or is recorded as missed.

Time comes from an injected clock (`service.clock`), so tests move across ticks without waiting;
`tick()` is one pass, for tests that drive a scheduler by hand. A scheduler counts its passes
(`health()`, shown by `/api/v1/health`): an operator sees that it is alive, and a test that must see
nothing run twice waits for passes instead of sleeping.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from fnstage.domain.schedules import Schedule, plan_tick
from fnstage.service.clock import Clock
from fnstage.service.trigger_runs import ClaimedRun, RunResult, TriggerRunner, run_deadline
from fnstage.store import triggers as sql
from fnstage.store.store import Store, now
from fnstage.store.triggers import TriggerRecord

logger = logging.getLogger("fnstage.scheduler")

DEFAULT_CATCH_UP = timedelta(minutes=15)
DEFAULT_POLL_S = 1.0
DEFAULT_PARALLEL_RUNS = 8


@dataclass(frozen=True)
class SchedulerHealth:
    """How a scheduler fares: its passes so far (each read what was due and claimed it), the passes
    that failed (the store unreachable, say) and when (wall clock) the last pass ended."""

    passes: int
    failed_passes: int
    last_pass_at: datetime | None


class Scheduler:
    def __init__(
        self,
        store: Store,
        clock: Clock = now,
        *,
        catch_up: timedelta = DEFAULT_CATCH_UP,
        poll_s: float = DEFAULT_POLL_S,
        parallel_runs: int = DEFAULT_PARALLEL_RUNS,
        runner: TriggerRunner | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.catch_up = catch_up
        self.poll_s = poll_s
        self.runner = runner or TriggerRunner(store)
        self.identity = f"{socket.gethostname()}:{os.getpid()}"[:80]
        self._parallel_runs = parallel_runs
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._pending: dict[Future[RunResult], ClaimedRun] = {}
        self._lock = threading.Lock()
        self._health = SchedulerHealth(0, 0, None)

    def health(self) -> SchedulerHealth:
        return self._health

    # one pass ---------------------------------------------------------------------------------------
    def tick(self) -> list[ClaimedRun]:
        """Claim every due tick this scheduler wins, and record missed ones; the claimed runs are
        returned, not run (`start` hands them to its workers; tests call `run`)."""
        moment = self.clock()
        with self.store.read() as tx:
            due = sql.due_triggers(tx, moment)
        claimed = []
        for trigger in due:
            run = self._claim(trigger, moment)
            if run is not None:
                claimed.append(run)
        with self._lock:  # a whole pass: every claim it made is in the store now
            self._health = replace(self._health, passes=self._health.passes + 1, last_pass_at=now())
        return claimed

    def run(self, claimed: ClaimedRun) -> RunResult:
        return self.runner.run(claimed)

    def _claim(self, trigger: TriggerRecord, moment: datetime) -> ClaimedRun | None:
        schedule = Schedule(trigger.cron, trigger.timezone)
        plan = plan_tick(schedule, trigger.next_tick, moment, self.catch_up)
        if plan is None:
            return None
        tick = plan.run or plan.missed
        assert tick is not None
        request_id = f"trigger-{uuid.uuid4().hex}"
        started_at = now()  # wall clock: when it really started (the tick is the schedule's time)
        with self.store.write() as tx:
            function = tx.get_function(trigger.gateway_id, trigger.env, trigger.base)
            timeout_s = function.timeout_s if function is not None else 30.0
            values: dict[str, object] = {
                "tick": tick,
                "status": "running" if plan.run is not None else "missed",
                "claimed_by": self.identity,
                "started_at": started_at,
                "deadline_at": run_deadline(started_at, timeout_s),
                "request_id": request_id,
                "skipped": plan.skipped,
                "lines": [],
            }
            if plan.run is None:
                late = int((moment - tick).total_seconds())
                values["finished_at"] = started_at
                values["error"] = (
                    f"missed: no control plane ran at the tick; it was {late} s late when one started, "
                    f"past the catch-up window of {int(self.catch_up.total_seconds())} s"
                )
            run_id = sql.claim_tick(tx, trigger.id, trigger.next_tick, plan.following, values)
        if run_id is None or plan.run is None:
            return None
        return ClaimedRun(run_id, trigger, tick, request_id)

    # the loop ---------------------------------------------------------------------------------------
    def start(self) -> None:
        self._executor = ThreadPoolExecutor(self._parallel_runs, thread_name_prefix="fnstage-trigger")
        self._thread = threading.Thread(target=self._loop, name="fnstage-scheduler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop claiming; runs not begun are recorded as failed, runs under way get `timeout` s."""
        self._stopping.set()
        self.runner.stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
        with self._lock:
            pending = list(self._pending.items())
        for future, claimed in pending:
            if future.cancel():
                self.runner.record(claimed.run_id, _not_begun())
        if self._executor is not None:
            self._executor.shutdown(wait=False)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                for claimed in self.tick():
                    self._submit(claimed)
                wait = self._until_next_tick()
            except Exception:  # the store unreachable, say: try again at the next poll
                logger.exception("the scheduler's pass failed; trying again in %s s", self.poll_s)
                with self._lock:
                    self._health = replace(self._health, failed_passes=self._health.failed_passes + 1)
                wait = self.poll_s
            self._stopping.wait(wait)

    def _submit(self, claimed: ClaimedRun) -> None:
        assert self._executor is not None
        future = self._executor.submit(self.runner.run, claimed)
        with self._lock:
            self._pending[future] = claimed
        future.add_done_callback(self._done)

    def _done(self, future: Future[RunResult]) -> None:
        with self._lock:
            self._pending.pop(future, None)

    def _until_next_tick(self) -> float:
        with self.store.read() as tx:
            earliest = sql.earliest_tick(tx)
        if earliest is None:
            return self.poll_s
        return max(0.01, min(self.poll_s, (earliest - self.clock()).total_seconds()))


def _not_begun() -> RunResult:
    return RunResult("failed", None, None, None, 0.0, "the control plane stopped before the run began", [])
