"""The writer of durable invocation logs: cells ship what they served, this writes it.

Cells send their invocations every 0.2 s over a socket of their own to the log writer process
(`runtime.log_process`), whose reader hands them here without waiting: a bounded queue, drained by
one thread that writes batches in one transaction each and prunes every function it wrote to (count
and age bounds). A full queue, a slow store (SQLite locked by a long write) or a stopped one
(PostgreSQL down) never reaches a request: what cannot be kept is dropped, counted by cause, logged,
and shown in the runtime's status.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from operator import itemgetter
from typing import Any

from sqlalchemy import Engine

from fnstage.store import invocation_log
from fnstage.store.invocation_log import LogColumns

logger = logging.getLogger("fnstage.runtime")
_FUNCTION_OF = itemgetter(0, 1)  # a LogColumns' (gateway, name), in C

BATCH = 2000  # invocations per transaction, at least (whole shipments: fewer than 2 * BATCH)
# how often the writer writes what is queued (sooner when a BATCH is waiting): not at every shipment,
# whose messages are about 270 invocations each; a transaction of 250 rows cost about twice as much a
# row as one of 2000 (BENCHMARKS.md, "Durable invocation logs")
FLUSH_INTERVAL_S = 0.1
PRUNE_INTERVAL_S = 5.0  # often enough that a busy function's prune is a few chunks (invocation_log.prune)
RETRY_AFTER_S = 1.0  # after a failed write, before the next attempt
REPORT_INTERVAL_S = 10.0  # losses are logged at most this often


class LogSettingsError(ValueError):
    pass


@dataclass(frozen=True)
class LogSettings:
    """`FNSTAGE_LOGS=off` keeps logs in the cells' memory only (as before durable logs);
    `FNSTAGE_LOG_KEEP` invocations kept per function (default 1000), `FNSTAGE_LOG_DAYS` how long
    (default 7, fractions allowed), `FNSTAGE_LOG_QUEUE` invocations waiting to be written before new
    ones are dropped (default 50000)."""

    enabled: bool = True
    keep: int = 1000
    max_age_s: float = 7 * 86400.0
    queue: int = 50_000

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> LogSettings:
        env = os.environ if environ is None else environ
        settings = cls()
        switch = env.get("FNSTAGE_LOGS", "on").strip().lower()
        if switch not in ("on", "off", "1", "0", "true", "false"):
            raise LogSettingsError(f"FNSTAGE_LOGS must be on or off, not {switch!r}")
        settings = replace(settings, enabled=switch in ("on", "1", "true"))
        keep = _number(env, "FNSTAGE_LOG_KEEP", settings.keep, 1, 1_000_000)
        days = _number(env, "FNSTAGE_LOG_DAYS", settings.max_age_s / 86400, 0.001, 3650)
        queue = _number(env, "FNSTAGE_LOG_QUEUE", settings.queue, 1, 10_000_000)
        return replace(settings, keep=int(keep), max_age_s=float(days) * 86400, queue=int(queue))


def _number(env: Any, name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise LogSettingsError(f"{name} must be a number from {low:g} to {high:g}, not {raw!r}") from None
    if not low <= value <= high:
        raise LogSettingsError(f"{name} must be a number from {low:g} to {high:g}, not {raw!r}")
    return value


class LogWriter:
    """Bounded queue in, batched transactions out, on a thread of its own."""

    def __init__(
        self,
        engine_factory: Callable[[], Engine],
        settings: LogSettings,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self._engine_factory = engine_factory
        self._engine: Engine | None = None
        self._clock = clock
        self._queue: deque[LogColumns] = deque()  # shipments' columns, a function each
        self._waiting = 0  # invocations in the queue
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._touched: set[tuple[str, str]] = set()
        self._last_prune = 0.0
        self._last_report = 0.0
        self._reported: dict[str, int] = {}
        self.runtime_id: str | None = None
        self.written = 0
        self.pruned = 0
        # cell_outbox_full: a cell's outbox between two shipments; cell_socket_full: shipments a cell
        # could not send (the writer behind, or down); writer_down: held by a writer that died
        self.dropped = {
            "queue_full": 0,
            "store_failed": 0,
            "cell_outbox_full": 0,
            "cell_socket_full": 0,
        }
        self.last_error: str | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="fnstage-log-writer", daemon=True)
        self._thread.start()

    def offer(
        self,
        batch: list[LogColumns],
        dropped_by_cell: int = 0,
        unsent_by_cell: int = 0,
        pruned_by_cell: int = 0,
    ) -> None:
        """Queue `batch` (never blocks): the invocations that do not fit are dropped and counted.
        `pruned_by_cell`: invocations a cell did not ship, older than its function's newest `keep` in
        that shipment."""
        with self._lock:
            self.pruned += pruned_by_cell
            self.dropped["cell_outbox_full"] += dropped_by_cell
            self.dropped["cell_socket_full"] += unsent_by_cell
            for columns in batch:
                n, room = len(columns.request_ids), self.settings.queue - self._waiting
                if n > room:
                    self.dropped["queue_full"] += n - max(room, 0)
                    if room <= 0:
                        continue
                    columns, n = _head(columns, room), room
                self._queue.append(columns)
                self._waiting += n
            full = self._waiting >= BATCH
        if full:  # else the next tick writes them (FLUSH_INTERVAL_S)
            self._wake.set()

    def stats(self) -> dict[str, Any]:
        with self._lock:
            waiting = self._waiting
        return {
            "written": self.written,
            "waiting": waiting,
            "pruned": self.pruned,
            "dropped": dict(self.dropped),
            "last_error": self.last_error,
        }

    def stop(self, timeout: float = 5.0) -> None:
        """Write what is queued (for at most `timeout`), then stop."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._engine is not None:
            self._engine.dispose()

    # the writer thread --------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            self._wake.wait(FLUSH_INTERVAL_S)
            self._wake.clear()
            while self._write_batch():
                pass
            self._maybe_prune()
            self._maybe_report()
            if self._stopping.is_set():
                with self._lock:
                    if not self._waiting:
                        return

    def _write_batch(self) -> bool:
        batch: list[LogColumns] = []
        with self._lock:
            taken = 0
            while self._queue and taken < BATCH:
                columns = self._queue.popleft()
                n = len(columns.request_ids)
                # a shipment goes whole (a cell's message holds a few hundred), so its columns keep
                # their texts (a cut one is parsed and encoded again: BENCHMARKS.md); only one larger
                # than a batch is cut, and the rest waits, first in the queue
                if n > BATCH and taken + n > BATCH:
                    self._queue.appendleft(_tail(columns, BATCH - taken))
                    columns, n = _head(columns, BATCH - taken), BATCH - taken
                batch.append(columns)
                taken += n
            self._waiting -= taken
        if not batch:
            return False
        try:
            if self._engine is None:
                self._engine = self._engine_factory()
            invocation_log.write_columns(self._engine, batch, self.runtime_id)
        except Exception as error:  # any store failure: the batch is lost, counted, and reported
            with self._lock:
                self.dropped["store_failed"] += taken
            self.last_error = (
                f"{type(error).__name__}: {str(error).splitlines()[0][:300] if str(error) else ''}"
            )
            self._maybe_report()
            if not self._stopping.is_set():
                self._stopping.wait(RETRY_AFTER_S)
            return False
        self.written += taken
        self.last_error = None
        self._touched.update(map(_FUNCTION_OF, batch))
        return True

    def _maybe_prune(self) -> None:
        now = self._clock()
        if not self._touched or now - self._last_prune < PRUNE_INTERVAL_S or self._engine is None:
            return
        touched, self._touched = self._touched, set()
        try:
            pruned = invocation_log.prune(
                self._engine, touched, self.settings.keep, now - self.settings.max_age_s
            )
            with self._lock:  # `offer` adds what cells did not ship
                self.pruned += pruned
            self._last_prune = now
        except Exception:
            self._touched |= touched  # next time
            logger.warning("runtime: could not prune the invocation log", exc_info=True)

    def _maybe_report(self) -> None:
        now = time.monotonic()
        if now - self._last_report < REPORT_INTERVAL_S:
            return
        with self._lock:
            lost = {cause: n - self._reported.get(cause, 0) for cause, n in self.dropped.items()}
            self._reported = dict(self.dropped)
        lost = {cause: n for cause, n in lost.items() if n}
        if lost:
            self._last_report = now
            causes = ", ".join(f"{n} ({cause.replace('_', ' ')})" for cause, n in lost.items())
            suffix = f"; last error: {self.last_error}" if self.last_error else ""
            logger.warning("runtime: invocation log entries dropped: %s%s", causes, suffix)


def _head(columns: LogColumns, n: int) -> LogColumns:
    """The first `n` invocations of `columns`."""
    return LogColumns._make((*columns[:2], *(column[:n] for column in columns[2:])))


def _tail(columns: LogColumns, n: int) -> LogColumns:
    """`columns` but its first `n` invocations."""
    return LogColumns._make((*columns[:2], *(column[n:] for column in columns[2:])))
