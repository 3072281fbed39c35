"""Where a version is live: each runtime serving the gateway has it, is loading it, failed, or is silent.

Read from what runtimes report (`store.runtime_status`). This answers `--wait` and the "live 2/2" or
"failed on 1: NameError at utils.py:3" that the overview and the console show.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from fnstage.store.records import FunctionRecord, RuntimeFunctionRecord, RuntimeRecord
from fnstage.store.runtime_status import INSTALLING
from fnstage.store.store import Tx, now

# Runtimes heartbeat every 3 s. FNSTAGE_SILENT_AFTER_S (read by the API process at start) shortens this
# for tests that stop a runtime; production has no reason to change it.
SILENT_AFTER = timedelta(seconds=float(os.environ.get("FNSTAGE_SILENT_AFTER_S") or 10))
# A runtime silent this long is no longer listed, and the control plane deletes it (runtime_reaper).
FORGOTTEN_AFTER = timedelta(seconds=float(os.environ.get("FNSTAGE_FORGET_RUNTIMES_AFTER_S") or 900))


@dataclass(frozen=True)
class RuntimeState:
    runtime_id: str
    host: str
    pid: int
    state: str  # live | pending | failed | silent
    version: int | None  # what it has live for this function
    error: str | None
    loaded_at: datetime | None
    heartbeat_at: datetime
    feed_state: str
    feed_since: datetime
    environment: str | None = None  # the cell's environment (None: a runtime serving every one)
    sandbox: dict[str, Any] | None = None  # the cell's protections in force and missing
    requests: int = 0  # answered by the live version here since it went live (heartbeat, <= 3 s old)
    errors: int = 0  # of which failed: an exception or a time-out
    last_error: str | None = None
    # pending because its cell holds it, published and servable within a load, not run yet (a cold
    # start's, loaded by the warm-up or by its first request), not because it has not arrived there
    held: bool = False


@dataclass(frozen=True)
class Rollout:
    name: str
    version: int
    committed_at: datetime
    runtimes: list[RuntimeState]

    def count(self, state: str) -> int:
        return sum(1 for r in self.runtimes if r.state == state)

    @property
    def held(self) -> int:
        """Runtimes whose cells hold the version pending: servable within a load, not run yet."""
        return sum(1 for r in self.runtimes if r.state == "pending" and r.held)

    @property
    def active(self) -> int:
        return sum(1 for r in self.runtimes if r.state != "silent")

    @property
    def done(self) -> bool:
        """Every active runtime has the version live, or some runtime refused it."""
        return self.count("failed") > 0 or (self.active > 0 and self.count("live") == self.active)

    @property
    def latency_ms(self) -> float | None:
        """Commit to the last active runtime having it live."""
        loaded = [r.loaded_at for r in self.runtimes if r.state == "live" and r.loaded_at]
        if not loaded or self.count("live") != self.active:
            return None
        return max(0.0, (max(loaded) - self.committed_at).total_seconds() * 1000)

    @property
    def summary(self) -> str:
        if not self.runtimes:
            return "no runtime"
        parts = [f"live {self.count('live')}/{self.active}"]
        failed = [r for r in self.runtimes if r.state == "failed"]
        if failed:
            parts.append(f"failed on {len(failed)}: {failed[0].error}")
        live = [r for r in self.runtimes if r.state == "live"]
        errors = sum(r.errors for r in live)
        if errors:
            requests = sum(r.requests for r in live)
            last = next((r.last_error for r in live if r.errors and r.last_error), "see fnstage logs")
            parts.append(f"{errors} of {requests} requests failed: {last}")
        if self.held:
            parts.append(f"pending on {self.held}: not run yet, loads on its first request")
        installing = sum(1 for r in self.runtimes if r.state == "pending" and r.error == INSTALLING)
        if installing:
            parts.append(f"installing dependencies on {installing}")
        if self.count("silent"):
            parts.append(f"{self.count('silent')} silent")
        return ", ".join(parts)


def serving(tx: Tx, gateway: str, environment: str | None = None) -> list[RuntimeRecord]:
    """The runtimes serving `gateway` (and `environment`, given one) that are heard from (not silent)."""
    clock = now()
    return [r for r in tx.list_runtimes(gateway, environment) if clock - r.heartbeat_at <= SILENT_AFTER]


def rollout(
    tx: Tx, gateway: str, name: str, version: int, committed_at: datetime, bundle_hash: str | None = None
) -> Rollout:
    """Where `version` of `name` is live: on the runtimes (cells) that serve its environment. Given
    `bundle_hash`, "live" means that very code: the same number with another hash is still pending."""
    clock = now()
    reports = {r.runtime_id: r for r in tx.runtime_functions(gateway, name)}
    return _rollout(tx.list_runtimes(gateway), reports, name, version, committed_at, clock, bundle_hash)


def current_rollouts(tx: Tx, gateway: str, functions: list[FunctionRecord]) -> dict[str, Rollout]:
    """Where each function's current version is live, read in two queries whatever their number:
    the console's function list marks failing and not-live functions from this."""
    clock = now()
    runtimes = tx.list_runtimes(gateway)
    reports: dict[str, dict[str, RuntimeFunctionRecord]] = {}
    for report in tx.runtime_functions(gateway):
        reports.setdefault(report.name, {})[report.runtime_id] = report
    return {
        f.name: _rollout(
            runtimes, reports.get(f.name, {}), f.name, f.version, f.updated_at, clock, f.bundle_hash
        )
        for f in functions
    }


def _rollout(
    runtimes: list[RuntimeRecord],
    reports: dict[str, RuntimeFunctionRecord],
    name: str,
    version: int,
    committed_at: datetime,
    clock: datetime,
    bundle_hash: str | None = None,
) -> Rollout:
    environment = name.split("/", 1)[0]  # a runtime of one environment serves only its functions
    states = [
        _state(runtime, reports.get(runtime.id), version, clock, bundle_hash)
        for runtime in runtimes
        if runtime.environment in (None, environment)
        if clock - runtime.heartbeat_at < FORGOTTEN_AFTER
    ]
    return Rollout(name, version, committed_at, states)


def _state(
    runtime: RuntimeRecord,
    report: RuntimeFunctionRecord | None,
    version: int,
    clock: datetime,
    bundle_hash: str | None = None,
) -> RuntimeState:
    live = report.version if report else None
    error = None
    held = False
    same_code = (
        bundle_hash is None
        or report is None
        or report.bundle_hash is None  # a runtime that does not report hashes
        or live != version
        or report.bundle_hash == bundle_hash
    )
    if clock - runtime.heartbeat_at > SILENT_AFTER:
        state = "silent"
    elif live is not None and live >= version and same_code and not (report and report.pending):
        state = "live"
    elif report is not None and report.failed_version is not None and report.failed_version >= version:
        state, error = "failed", report.error
    else:
        state = "pending"
        held = report is not None and report.pending and live is not None and live >= version and same_code
        if report is not None and report.error == INSTALLING:
            error = INSTALLING  # the runtime installs the version's dependency lock before loading it
    return RuntimeState(
        runtime_id=runtime.id,
        host=runtime.host,
        pid=runtime.pid,
        state=state,
        version=live,
        error=error,
        loaded_at=report.loaded_at if report else None,
        heartbeat_at=runtime.heartbeat_at,
        feed_state=runtime.feed_state,
        feed_since=runtime.feed_since,
        environment=runtime.environment,
        sandbox=runtime.sandbox,
        held=held,
        **_counts(report, state, live),
    )


def _counts(report: RuntimeFunctionRecord | None, state: str, live: int | None) -> dict[str, Any]:
    """The live version's requests and failures here; counts of an earlier version do not count."""
    if report is None or state != "live" or report.counted_version != live:
        return {}
    return {"requests": report.requests, "errors": report.errors, "last_error": report.last_error}
