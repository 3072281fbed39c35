"""Canary releases (issue 14): start one, watch it, and decide it once.

A release with a canary does not replace the environment's version. In one transaction it records the
new code as a history entry of kind `canary` (its own version number, its semver and note) and a
`canaries` row; the function's row and published entry stay the stable version. Runtimes read running
canaries and have their cells serve the canary's version to `share` percent of requests, counting both
sides apart (`runtime.splits`). The control plane judges (`domain.canary.judge`) every second
(`CanaryJudge`, beside the trigger scheduler): a regression rolls the canary back, a baked last step
completes it. Either way the decision is one conditional UPDATE (`store.canaries.decide`) in the
transaction that writes its consequence as an ordinary deployment, so it is taken once whatever the
number of control planes, and recorded in history:
- completed: the canary's code becomes the environment's version (kind `promote`, its semver);
- rolled back (by `fnstage`, with the measured reason) or aborted (by hand): the stable code is
  released again as a new version (kind `rollback`, the stable semver), so history says when traffic
  went back and why.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from fnstage.domain.canary import ArmCounts, CanarySpec, judge
from fnstage.domain.errors import Conflict, NotFound
from fnstage.domain.names import FunctionName
from fnstage.service.identity import Actor
from fnstage.store import canaries as sql
from fnstage.store.records import FunctionRecord, GatewayRecord
from fnstage.store.store import Store, Tx, now

if TYPE_CHECKING:
    from fnstage.service.deployments import Code, Deployed, Deployments

logger = logging.getLogger("fnstage.canaries")

FNSTAGE = Actor(0, "fnstage", False)  # who an automatic decision is recorded as


def refuse_while_canary_runs(tx: Tx, gateway: str, fname: FunctionName, doing: str | None = None) -> None:
    """A deployment, rename or delete of a function whose canary is running would pull the ground
    from under it (its runtimes split between two versions of it): refused, saying how to end it."""
    canary = sql.latest(tx, gateway, fname.env, fname.base)
    if canary is None or canary.state != sql.RUNNING:
        return
    running = (
        f"a canary of {fname} ({canary.canary_semver}, version {canary.canary_version}, "
        f"{canary.share}% of requests) is running"
    )
    if doing is not None:
        raise Conflict(
            f"{fname} cannot be {doing} while {running}: end it first with "
            f"`fnstage rollout abort {fname}` (or `fnstage rollout promote {fname}`)",
            field="name",
        )
    raise Conflict(
        f"{running}: finish it first with `fnstage rollout promote {fname}` or "
        f"`fnstage rollout abort {fname}`",
        field="name",
    )


def start_canary(
    deployments: Deployments,
    tx: Tx,
    gw: GatewayRecord,
    fname: FunctionName,
    current: FunctionRecord | None,
    code: Code,
    spec: CanarySpec,
    *,
    semver: str,
    note: str,
    actor: Actor,
    source_env: str | None,
    source_history_id: int | None,
    source_version: int | None,
    latest_version: int,
) -> Deployed:
    """Record the canary (history entry + canaries row) in the caller's transaction; what the
    environment serves does not change until the canary is decided."""
    from fnstage.service.deployments import Deployed

    if current is None:
        raise Conflict(
            f"{fname} does not exist yet: a canary needs a stable version to compare with; release "
            "without --canary first",
            field="canary",
        )
    manifest = tx.put_files(gw.id, code.files)
    version = max(current.version, latest_version) + 1
    entry = deployments._history(
        tx,
        gw,
        current.id,
        fname,
        version,
        "canary",
        semver,
        code.entrypoint,
        manifest,
        code.bundle_hash,
        note,
        actor,
        code.dependencies,
        lock_hash=code.lock_hash,
        source_env=source_env,
        source_history_id=source_history_id,
        source_version=source_version,
    )
    tx.change_refs(gw.id, plus=list(manifest.values()))
    stamp = now()
    sql.insert_canary(
        tx,
        dict(
            gateway_id=gw.id,
            env=fname.env,
            base=fname.base,
            function_id=current.id,
            stable_version=current.version,
            stable_semver=current.semver,
            canary_version=version,
            canary_semver=semver,
            canary_history_id=entry.id,
            steps=list(spec.steps),
            step=0,
            bake_s=spec.bake_s,
            max_error_rate_increase=spec.max_error_rate_increase,
            max_p95_ratio=spec.max_p95_ratio,
            min_requests=spec.min_requests,
            state=sql.RUNNING,
            reason=None,
            started_at=stamp,
            started_by=actor.name,
            step_started_at=stamp,
        ),
    )
    return Deployed(current, entry)


@dataclass(frozen=True)
class CanaryView:
    canary: sql.CanaryRecord
    counts: dict[str, ArmCounts]
    at: datetime

    def as_dict(self) -> dict[str, Any]:
        c = self.canary
        running = c.state == sql.RUNNING
        step_ends = c.step_started_at.timestamp() + c.bake_s
        left = max(0.0, step_ends - self.at.timestamp()) + c.bake_s * (len(c.steps) - 1 - c.step)
        return {
            "id": c.id,
            "name": c.name,
            "state": c.state,
            "share": c.share if running else (100 if c.state == "completed" else 0),
            "steps": c.steps,
            "step": c.step,
            "bake_s": c.bake_s,
            "time_left_s": round(left, 1) if running else 0.0,
            "stable": {
                "version": c.stable_version,
                "semver": c.stable_semver,
                **self.counts["stable"].describe(),
            },
            "canary": {
                "version": c.canary_version,
                "semver": c.canary_semver,
                "history_id": c.canary_history_id,
                **self.counts["canary"].describe(),
            },
            "thresholds": {
                "max_error_rate_increase": c.max_error_rate_increase,
                "max_p95_ratio": c.max_p95_ratio,
                "min_requests": c.min_requests,
            },
            "reason": c.reason,
            "started_at": c.started_at.isoformat(),
            "started_by": c.started_by,
            "decided_at": c.decided_at.isoformat() if c.decided_at else None,
            "decided_by": c.decided_by,
        }


class Canaries:
    """The use cases: status, promote and abort by hand, and the judge's tick."""

    def __init__(self, store: Store, deployments: Deployments) -> None:
        self.store = store
        self.deployments = deployments

    def status(self, gateway: str, name: str) -> CanaryView:
        fname = FunctionName.parse(name)
        with self.store.read() as tx:
            canary = sql.latest(tx, gateway, fname.env, fname.base)
            if canary is None:
                raise NotFound(f"{fname} has had no canary release", field="name")
            return CanaryView(canary, sql.counts(tx, canary.id), now())

    def card(self, gateway: str, env: str, base: str, current_since: datetime) -> dict[str, Any] | None:
        """What an environment card shows: the running canary, or the decision that made the current
        version (`current_since`: when it was deployed); None otherwise."""
        with self.store.read() as tx:
            canary = sql.latest(tx, gateway, env, base)
            if canary is None:
                return None
            decided = canary.decided_at
            stale = decided is None or decided < current_since - timedelta(seconds=5)
            if canary.state != sql.RUNNING and stale:
                return None
            return CanaryView(canary, sql.counts(tx, canary.id), now()).as_dict()

    def promote(self, actor: Actor, gateway: str, name: str) -> CanaryView:
        """Give the canary all traffic now."""
        canary = self._running(gateway, name)
        if not self._conclude(canary, "completed", f"promoted by hand by {actor.name}", actor):
            raise Conflict(f"the canary of {name} was decided meanwhile", field="name")
        return self.status(gateway, name)

    def abort(self, actor: Actor, gateway: str, name: str) -> CanaryView:
        """Send all traffic back to the stable version now."""
        canary = self._running(gateway, name)
        if not self._conclude(canary, "aborted", f"aborted by hand by {actor.name}", actor):
            raise Conflict(f"the canary of {name} was decided meanwhile", field="name")
        return self.status(gateway, name)

    def tick(self) -> list[tuple[str, str]]:
        """Judge every running canary once; returns what was decided ((name, state) per decision)."""
        decided: list[tuple[str, str]] = []
        with self.store.read() as tx:
            running = [(c, sql.counts(tx, c.id)) for c in sql.running(tx)]
        clock = now()
        for canary, counts in running:
            baked = (clock - canary.step_started_at).total_seconds()
            verdict = judge(canary.spec, canary.step, baked, counts["canary"], counts["stable"])
            if verdict.action == "wait":
                continue
            if verdict.action == "step":
                with self.store.write() as tx:
                    if sql.decide(tx, canary, step=canary.step + 1, step_started_at=now()):
                        decided.append((f"{canary.gateway_id}/{canary.name}", "step"))
                continue
            state = "completed" if verdict.action == "complete" else "rolled_back"
            if self._conclude(canary, state, verdict.reason, FNSTAGE, counts):
                decided.append((f"{canary.gateway_id}/{canary.name}", state))
        return decided

    def _running(self, gateway: str, name: str) -> sql.CanaryRecord:
        fname = FunctionName.parse(name)
        with self.store.read() as tx:
            canary = sql.latest(tx, gateway, fname.env, fname.base)
        if canary is None or canary.state != sql.RUNNING:
            raise Conflict(f"no canary of {fname} is running", field="name")
        return canary

    def _conclude(
        self,
        canary: sql.CanaryRecord,
        state: str,
        reason: str,
        actor: Actor,
        counts: dict[str, ArmCounts] | None = None,
    ) -> bool:
        """Decide `canary` (once) and write the consequence as a deployment, in one transaction."""
        from fnstage.service.deployments import _metadata
        from fnstage.service.metadata import Metadata

        fname = FunctionName(canary.env, canary.base)
        canary_code: Code | None = None
        if state == "completed":  # build before the transaction: the lock is held for milliseconds
            gateway = self.deployments._gateway(canary.gateway_id)
            _, canary_code = self.deployments._rebuild_entry(
                gateway, canary.base, canary.env, canary.canary_history_id
            )
        with self.store.write() as tx:
            gw, current, latest = self.deployments._lock_target(tx, canary.gateway_id, fname)
            if counts is None:
                counts = sql.counts(tx, canary.id)
            measured = {arm: c.describe() for arm, c in counts.items()}
            if not sql.decide(
                tx,
                canary,
                state=state,
                reason=reason,
                decided_at=now(),
                decided_by=actor.name,
                measured=measured,
            ):
                return False
            if current is None:  # deleted meanwhile: nothing to serve either way
                return True
            source: tuple[str, int | None, int]
            if canary_code is not None:
                code, kind, semver = canary_code, "promote", canary.canary_semver
                note = f"canary {canary.canary_semver} took all traffic: {reason}"
                source = (canary.env, canary.canary_history_id, canary.canary_version)
            else:
                code, kind, semver = (
                    self.deployments._current_code(tx, current, gw),
                    "rollback",
                    current.semver,
                )
                verb = "rolled back" if state == "rolled_back" else "aborted"
                note = f"canary {canary.canary_semver} {verb}: {reason}"
                source = (canary.env, current.history_id, current.version)
            meta = _metadata(current)  # configuration belongs to the environment: never carried
            self.deployments._commit(
                tx,
                gw,
                fname,
                current,
                code,
                Metadata(meta.methods, meta.description, meta.tags, {}, meta.timeout_s),
                kind=kind,
                semver=semver,
                changelog=note[:2000],
                actor=actor,
                source_env=source[0],
                source_history_id=source[1],
                source_version=source[2],
                latest_version=latest,
            )
        logger.info("canary of %s/%s %s: %s", canary.gateway_id, canary.name, state, reason)
        return True


class CanaryJudge:
    """The control plane's loop that judges running canaries every `poll_s` (a thread, like the
    trigger scheduler's)."""

    def __init__(self, canaries: Canaries, poll_s: float = 1.0) -> None:
        self.canaries = canaries
        self.poll_s = poll_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="fnstage-canaries", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.canaries.tick()
            except Exception:
                logger.exception("canaries: judging failed; trying again")
            self._stop.wait(max(0.05, self.poll_s - (time.monotonic() - started)))
