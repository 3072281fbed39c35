"""The supervisor's side of canary releases (issue 14): tell cells the splits, store their counts.

The follower reads the running canaries of what this runtime serves (one small query) when the change
feed announces a canary started, stepped or decided (`store.canaries.announce`: a publish log entry,
NOTIFY on PostgreSQL; the watcher calls `wake`), after every resync, and every `safety_poll_s` as a
safety net. It sends each cell the splits of its (gateway, environment) when they changed or the cell
is new (a restarted cell gets them at the next tick, without a read). The cells' counts per version
arrive every second, cumulative per cell; the follower adds up its cells (a restarted cell counts from
zero again: what the dead one counted stays in the sum) and every `tick_s` stores the sums per
(canary, arm) under this runtime's id, where the control plane's judge adds up every runtime's.
Between a canary's start and the runtime's read the environment serves the stable version only: the
split begins late, never early.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fnstage.domain.canary import ArmCounts
from fnstage.runtime.cells import CellSet, Slot

if TYPE_CHECKING:
    from fnstage.store.canaries import CanaryRecord

logger = logging.getLogger("fnstage.runtime")

TICK_S = 0.5  # counts written, restarted cells given their splits
RETRY_DELAYS_S = (0.05, 0.5, 1.0, 5.0)  # the store's work again after failures in a row (as the feed)
SAFETY_POLL_S = 10.0  # canaries read again without a feed event (the feed has its own poll as well)
RETIRED_S = 5.0  # a decided canary's late counts still written (cells report every second)

SplitRow = tuple[str, str, int, int, int]  # (gateway, name, stable, canary, share)


@dataclass(frozen=True)
class CanaryState:
    """A running canary as this runtime serves it: what /metrics shows (`runtime.metrics`). `stable`
    and `canary` are this runtime's counts of each side (requests, errors) since its cells split."""

    gateway: str
    name: str
    share: int
    stable_version: int
    canary_version: int
    stable: ArmCounts
    canary: ArmCounts


class SplitFollower:
    def __init__(
        self,
        database_url: str,
        cells: CellSet,
        runtime_id: Any,  # () -> this runtime's id in the store, or None before it registered
        gateway: str | None = None,
        env: str | None = None,
        tick_s: float = TICK_S,
        safety_poll_s: float = SAFETY_POLL_S,
    ) -> None:
        self.database_url = database_url
        self.cells = cells
        self.runtime_id = runtime_id
        self.gateway = gateway
        self.env = env
        self.tick_s = tick_s
        self.safety_poll_s = safety_poll_s
        self._store: Any = None
        self._stop = threading.Event()
        self._wake = threading.Event()  # set: read the running canaries now
        self._thread: threading.Thread | None = None
        self._wanted: dict[tuple[str, str], list[SplitRow]] = {}  # (gateway, env) -> its splits
        self._sent: dict[Slot, tuple[int, list[SplitRow]]] = {}  # cell pid, splits
        self._arms: dict[tuple[str, str, int], tuple[int, str]] = {}  # version -> (canary id, arm)
        # a decided canary's versions -> (canary id, arm), until a monotonic deadline
        self._retired: dict[tuple[str, str, int], tuple[tuple[int, str], float]] = {}
        self._pending: dict[tuple[int, str], ArmCounts] = {}
        self._running: list[CanaryRecord] = []
        self._seen: dict[tuple[int, str], ArmCounts] = {}  # the newest counts per (canary id, arm)
        self._by_cell: dict[tuple[int, str], dict[int, ArmCounts]] = {}  # (canary id, arm) -> cell pid
        self._lock = threading.Lock()
        cells.split_sink = self.counts

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="fnstage-splits", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._store is not None:
            self._store.close()

    def wake(self) -> None:
        """The feed announced a canary change (any thread): read the running canaries now."""
        self._wake.set()

    def counts(self, cell: int, items: list[tuple[str, str, int, ArmCounts]]) -> None:
        """A cell's counts (its reader thread), cumulative since that cell began splitting: kept per
        cell, so a restarted cell (a new pid, counting from zero) adds to what the dead one counted
        instead of replacing it; the sum over cells waits for the next tick's write."""
        with self._lock:
            for gateway, name, version, counts in items:
                arm = self._arms.get((gateway, name, version))
                if arm is None:
                    retired = self._retired.get((gateway, name, version))
                    if retired is None:
                        continue
                    arm = retired[0]
                per_cell = self._by_cell.setdefault(arm, {})
                per_cell[cell] = counts
                total = ArmCounts()
                for counted in per_cell.values():
                    total.add(counted)
                self._pending[arm] = total
                self._seen[arm] = total

    def states(self) -> list[CanaryState]:
        """The running canaries with this runtime's counts (a scrape of /metrics, any thread)."""
        with self._lock:
            running, seen = list(self._running), dict(self._seen)
        return [
            CanaryState(
                c.gateway_id,
                c.name,
                c.share,
                c.stable_version,
                c.canary_version,
                seen.get((c.id, "stable")) or ArmCounts(),
                seen.get((c.id, "canary")) or ArmCounts(),
            )
            for c in running
        ]

    def _run(self) -> None:
        next_read = 0.0
        failures = 0  # in a row: the store's work waits longer after each (`RETRY_DELAYS_S`)
        retry_at = 0.0
        last_error = ""
        while not self._stop.is_set():
            if time.monotonic() < retry_at:  # backing off: restarted cells still get their splits
                self._send_quietly()
                self._stop.wait(min(self.tick_s, retry_at - time.monotonic()))
                continue
            try:
                woken = self._wake.is_set()
                self._wake.clear()  # before the read: a change committed after it wakes the next one
                if woken or time.monotonic() >= next_read:
                    next_read = time.monotonic() + self.safety_poll_s
                    self._read()
                self._send()
                self._write_counts()
            # whatever the store raised: logged, backed off and retried, never the thread's end
            except Exception as exc:
                failures += 1
                delay = RETRY_DELAYS_S[min(failures, len(RETRY_DELAYS_S)) - 1]
                retry_at, next_read = time.monotonic() + delay, 0.0
                error = f"{type(exc).__name__}: {exc}"
                # the traceback once per error, not once per attempt (a store down for an hour)
                logger.warning(
                    "runtime: following canaries failed (%s, %d time(s) in a row); trying again in %g s",
                    error,
                    failures,
                    delay,
                    exc_info=error != last_error,
                )
                last_error = error
                continue
            if failures:
                logger.info("runtime: following canaries again after %d failure(s)", failures)
                failures, last_error = 0, ""
            self._wake.wait(self.tick_s)

    def _send_quietly(self) -> None:
        try:
            self._send()
        except Exception:  # a cell's channel closing: its restart sends again; the next tick retries
            logger.debug("runtime: sending a cell its splits failed", exc_info=True)

    def _open(self) -> Any:
        from fnstage.store.store import Store

        if self._store is None:
            self._store = Store.open(self.database_url, run_migrations=False)
        return self._store

    def _read(self) -> None:
        from fnstage.store import canaries as sql

        with self._open().read() as tx:
            running = sql.running(tx, self.gateway, self.env)
        self._follow(running)

    def _follow(self, running: list[CanaryRecord]) -> None:
        """What the running canaries mean here: each pair's splits, and which version is which arm. A
        decided canary's arms are kept RETIRED_S more: its cells' last counts, sent after the decision
        (`SplitStats.keep_only`), are still added up and written (the canary's record misses none)."""
        wanted: dict[tuple[str, str], list[SplitRow]] = {}
        arms: dict[tuple[str, str, int], tuple[int, str]] = {}
        for c in running:
            wanted.setdefault((c.gateway_id, c.env), []).append(
                (c.gateway_id, c.name, c.stable_version, c.canary_version, c.share)
            )
            arms[(c.gateway_id, c.name, c.stable_version)] = (c.id, "stable")
            arms[(c.gateway_id, c.name, c.canary_version)] = (c.id, "canary")
        now = time.monotonic()
        with self._lock:
            retired = {key: kept for key, kept in self._retired.items() if kept[1] > now and key not in arms}
            for key, arm in self._arms.items():
                if key not in arms:
                    retired[key] = (arm, now + RETIRED_S)
            self._arms, self._retired = arms, retired
            self._running = list(running)
            kept = set(arms.values()) | {arm for arm, _ in retired.values()}
            self._seen = {arm: counts for arm, counts in self._seen.items() if arm in kept}
            self._by_cell = {arm: cells for arm, cells in self._by_cell.items() if arm in kept}
        self._wanted = wanted

    def _send(self) -> None:
        """Each cell of a pair with (or that had) a canary gets the pair's splits, once per change."""
        for pair in set(self._wanted) | {(slot[0], slot[1]) for slot in self._sent}:
            splits = self._wanted.get(pair, [])
            for slot, cell in self.cells.cells_of(*pair).items():  # every lock's cell of the pair
                if cell.pid is not None and self._sent.get(slot) != (cell.pid, splits):
                    cell.send(("splits", splits))
                    self._sent[slot] = (cell.pid, splits)

    def _write_counts(self) -> None:
        from fnstage.store import canaries as sql

        with self._lock:
            pending, self._pending = self._pending, {}
        runtime_id = self.runtime_id()
        if pending and runtime_id is not None:
            try:
                with self._open().write() as tx:
                    sql.write_counts(tx, runtime_id, [(cid, arm, c) for (cid, arm), c in pending.items()])
            except BaseException:  # not swallowed: the counts go back, and the error goes on
                with self._lock:  # written at the next tick, unless newer counts came meanwhile (sums)
                    self._pending = {**pending, **self._pending}
                raise
