"""The supervisor's side of its cells: start them, load into them, restart and quarantine.

Cells are forked by a zygote (`runtime.zygote`) that has imported the runtime and nothing else: no
store, no credentials. A cell costs a fork and a few megabytes of its own, not an interpreter start.

A cell runs one (gateway, environment, dependency lock): a function whose version has a lock lives in
that lock's cell, whose `sys.path` has the lock's environment (`fnstage.deps.environments`), so two
versions of one package never meet in one process. A function that changes lock is loaded into the
new lock's cell first, then routed there (`CellEvents.moved`), then removed from the old one; a cell
left with no function stops.

A cell that dies is restarted and given back what was live in it. A load that kills its cell is
retried once, alone, in the restarted cell; if it kills the cell again it is quarantined: reported as
failed ("killed its cell at load: exit code 3"), never loaded again, and the version that was live
before keeps serving.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import queue
import shutil
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from multiprocessing import Pipe
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fnstage.domain.canary import BUCKETS_MS, ArmCounts
from fnstage.runtime.cell import PENDING, CellSpec
from fnstage.runtime.channel import ChannelClosed, SupervisorEnd
from fnstage.runtime.loader import LiveVersion, LoadError, methods_of, mirror_version
from fnstage.runtime.loads import BULK_LOAD, PENDING_LOAD_MS
from fnstage.runtime.log_format import fields
from fnstage.runtime.zygote import Zygote
from fnstage.store.records import FunctionCounts, PublishedFunction, published_fields

if TYPE_CHECKING:  # prometheus_client is imported only when metrics are asked for
    from fnstage.runtime.metrics import RuntimeMetrics

logger = logging.getLogger("fnstage.runtime")

Slot = tuple[str, str, str]  # (gateway, environment, lock hash; "": no dependencies)
READY_TIMEOUT_S = 30.0
LOAD_TIMEOUT_S = 120.0  # a batch; each load in it is limited by the cell (DEFAULT_LOAD_TIMEOUT_S)
# Rows go to a cell in batches of this many: the cell loads one while the supervisor pickles the next
# (a cold start's cell no longer waits for one message of every row), and neither side holds all the
# rows' pickled bytes at once (a cell's memory keeps the high-water mark of what it received).
LOAD_BATCH = 1000
LOAD_AHEAD = 2  # batches sent ahead of the answers (`Cell.load`)
MAX_WARMED_PARTS = 20_000  # rows of a `warmed` batch held for its last message, at most
RESTART_DELAYS_S = (0.0, 0.1, 0.5, 1.0, 2.0, 5.0)
STABLE_AFTER_S = 30.0  # a cell that lived this long starts its restart delays afresh
MOVE_GRACE_S = 2.0  # a function that moved to another lock's cell leaves its old cell this much later
MAX_PARALLEL_SLOTS = 64  # cells started and loaded at once (10 gateways x 3 environments fit)


class CellDied(Exception):
    def __init__(self, exitcode: int | None) -> None:
        super().__init__(describe_exit(exitcode))
        self.exitcode = exitcode


def describe_exit(code: int | None) -> str:
    if code is None:
        return "stopped answering"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"killed by {name}" + (" (out of memory?)" if -code == signal.SIGKILL else "")
    return f"exit code {code}"


@dataclass
class _Pending:
    done: threading.Event = field(default_factory=threading.Event)
    answer: dict[str, Any] | None = None
    died: CellDied | None = None


class Cell:
    """One cell process and its channel."""

    def __init__(
        self,
        spec: CellSpec,
        zygote: Zygote,
        on_counts: Callable[[Cell, list[FunctionCounts]], None],
        on_exit: Callable[[Cell], None],
        on_event: Callable[[Cell, dict[str, Any]], None] = lambda cell, event: None,
        log_pipe: Callable[[Cell], Any] = lambda cell: None,
        *,
        on_metrics: Callable[[Cell, dict[str, Any]], None] = lambda cell, message: None,
    ) -> None:
        self.spec = spec
        self._log_pipe = log_pipe  # the cell's socket to the log writer (`log_process.LogPipe`), or None
        self._logs_to: Any = None
        self._on_metrics = on_metrics
        self._zygote = zygote
        self._on_counts = on_counts
        self._on_exit = on_exit
        self._on_event = on_event
        self.ready = threading.Event()
        self.sandbox: dict[str, Any] = {}
        self.pid: int | None = None
        self.exitcode: int | None = None
        self.dead = threading.Event()
        self.started_at = 0.0
        self._pending: dict[int, _Pending] = {}
        self._batches = itertools.count(1)
        self._lock = threading.Lock()
        self._channel: SupervisorEnd | None = None
        self._exited = threading.Event()
        self._sent_loads = False  # a fresh cell's first big load is a bulk load (`load`)
        self.stopping = False
        # a version URL's version asked for by the cell: (cell, want id, gateway, name, version)
        self.on_want: Callable[[Cell, int, str, str, int], None] | None = None
        # a canary's counts per version: (cell, [(gateway, name, version, ArmCounts)])
        self.on_split_counts: Callable[[Cell, list[tuple[str, str, int, ArmCounts]]], None] | None = None
        # versions it held pending (answered as loadable) that failed when it ran them: (cell, items)
        self.on_failed: Callable[[Cell, list[tuple[str, str, int, LoadError]]], None] | None = None
        self.on_warmed: Callable[[Cell, list[tuple[str, str, int, float]]], None] | None = None
        self.pending = 0  # versions it holds without having run them yet, as it last said
        # the pending versions it was running when it last said: (gateway, name, version); if it dies,
        # one of them may be why (`CellSet._restart` tries each alone)
        self.warming: list[tuple[str, str, int]] = []
        self._warmed_parts: list[tuple[str, str, int, float]] = []  # a `warmed` batch's first messages

    def start(self) -> None:
        _fresh_folder(self.spec.temp_dir)
        ours, theirs = Pipe(duplex=True)
        self._logs_to = pipe = self._log_pipe(self)
        self.started_at = time.monotonic()
        try:
            log_fd = pipe.cell_end.fileno() if pipe is not None else None
            self.pid = self._zygote.fork(self.spec, theirs.fileno(), self._set_exitcode, log_fd=log_fd)
        except BaseException:
            if pipe is not None:
                pipe.close()
            raise
        finally:
            theirs.close()
            if pipe is not None:
                pipe.cell_end.close()  # the cell has its own: when it ends, the writer reads the end
        self._channel = SupervisorEnd(ours)
        threading.Thread(target=self._read, name=f"fnstage-cell-{self.spec.key}", daemon=True).start()

    def _set_exitcode(self, code: int) -> None:
        self.exitcode = code
        self._exited.set()

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> bool:
        deadline = time.monotonic() + timeout
        while not self.ready.is_set():
            if self.dead.is_set() or time.monotonic() >= deadline:
                return False
            self.ready.wait(0.05)
        return True

    def load(
        self,
        rows: list[PublishedFunction],
        each: Callable[[int, list[Any]], None] | None = None,
        *,
        defer: bool = False,
    ) -> list[Any]:
        """Load `rows` in the cell; one answer per row (`_result` reads them). Raises CellDied if the
        cell died meanwhile. `each(start, answers)`: called on this thread with each batch's answers
        as they arrive (the rows from `start` on), while the cell loads the next batch.

        Sent in batches of LOAD_BATCH rows, LOAD_AHEAD of them ahead of the answers: the cell always
        has the next batch while this thread handles an answer and pickles the batch after (a send
        blocks until the cell reads it, the batch being larger than the socket's buffer). A fresh
        cell's first load of at least BULK_LOAD rows is a bulk load: the cell loads it with its
        collector paused and freezes what it made (`cell.SupervisorLink._load`)."""
        if not rows:
            return []
        bulk = not self._sent_loads and len(rows) >= BULK_LOAD
        batches = (rows[start : start + LOAD_BATCH] for start in range(0, len(rows), LOAD_BATCH))
        return self.load_stream(batches, each, bulk=bulk, defer=defer)

    def load_stream(
        self,
        batches: Iterable[list[PublishedFunction]],
        each: Callable[[int, list[Any]], None] | None = None,
        *,
        bulk: bool | None = None,
        defer: bool = False,
    ) -> list[Any]:
        """`load` of batches as they come (a cold start's snapshot, as it is read): each is sent when
        taken, LOAD_AHEAD ahead of the answers. `bulk` None: a fresh cell's first batch of at least
        BULK_LOAD rows makes it one. A bulk load with `defer` (a cold start's snapshot, a restart's
        reload: never saves) into a cell that defers (`CellSpec.defer_cold_start`) is answered at once
        with its rows pending; the cell's warm-up starts after the last answer ("warm")."""
        results: list[Any] = []
        sent: deque[tuple[int, _Pending, int]] = deque()  # (batch, pending, rows) awaiting answers
        source = iter(batches)
        more = True
        try:
            while True:
                # an answer already here is handled before the next chunk is waited for
                while more and len(sent) < LOAD_AHEAD and not (sent and sent[0][1].done.is_set()):
                    chunk = next(source, None)
                    if chunk is None:
                        more = False
                        break
                    if not chunk:
                        continue
                    if bulk is None:
                        bulk = not self._sent_loads and len(chunk) >= BULK_LOAD
                    self._sent_loads = True
                    batch, pending = next(self._batches), _Pending()
                    with self._lock:
                        if self.dead.is_set():
                            raise CellDied(self.exitcode)
                        self._pending[batch] = pending
                    sent.append((batch, pending, len(chunk)))
                    self._send_load(batch, chunk, bulk, defer)
                if not sent:
                    if bulk and defer and self.spec.defer_cold_start:  # rows pending: load them now
                        self.send(("warm",))
                    return results
                _, pending, count = sent[0]
                if not pending.done.wait(LOAD_TIMEOUT_S):
                    self.kill()
                    self.dead.wait(5.0)
                    raise CellDied(None)
                if pending.died is not None:
                    raise pending.died
                assert pending.answer is not None
                answers = pending.answer.get("results")
                if not isinstance(answers, list) or len(answers) != count:
                    raise CellDied(None)
                sent.popleft()
                if each is not None:
                    each(len(results), answers)
                results.extend(answers)
        finally:  # batches never answered (a death, a time-out) are not waited for by anyone
            with self._lock:
                for batch, _, _ in sent:
                    self._pending.pop(batch, None)

    def _send_load(self, batch: int, rows: list[PublishedFunction], bulk: bool, defer: bool) -> None:
        try:
            assert self._channel is not None
            # each row as the tuple of its fields (`records.published_fields`): a third of the pickling
            self._channel.send(("load", batch, list(map(published_fields, rows)), bulk, defer))
        except ChannelClosed:
            self.dead.wait(5.0)
            raise CellDied(self.exitcode) from None

    def call(self, kind: str, payload: Any, timeout: float = READY_TIMEOUT_S) -> dict[str, Any]:
        """Send `(kind, batch, payload)` and wait for the cell's answer (`loaded` with that batch).
        Raises CellDied if the cell died or did not answer in time."""
        pending = _Pending()
        batch = next(self._batches)
        with self._lock:
            if self.dead.is_set():
                raise CellDied(self.exitcode)
            self._pending[batch] = pending
        try:
            assert self._channel is not None
            self._channel.send((kind, batch, payload))
        except ChannelClosed:
            raise CellDied(self.exitcode) from None
        if not pending.done.wait(timeout):
            with self._lock:
                self._pending.pop(batch, None)
            raise CellDied(None)
        if pending.died is not None:
            raise pending.died
        assert pending.answer is not None
        return pending.answer

    def send(self, message: tuple[Any, ...]) -> None:
        if self._channel is not None and not self.dead.is_set():
            with contextlib.suppress(ChannelClosed):
                self._channel.send(message)

    def stop(self, timeout: float = 10.0) -> None:
        self.stopping = True
        self.send(("stop",))
        if not self._exited.wait(timeout):
            self.kill()
            self._exited.wait(5.0)

    def kill(self) -> None:
        if self.pid is not None and not self._exited.is_set():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)  # the cell leads its own group: children go too
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)

    def _read(self) -> None:
        assert self._channel is not None
        while True:
            try:
                message = self._channel.receive()
            except ChannelClosed:
                break
            except ValueError:
                logger.warning("cell %s sent a malformed message; stopping it", self.spec.key)
                self.kill()
                break
            try:
                self._handle(message)
            except (TypeError, ValueError, KeyError):
                logger.warning("cell %s sent a message that does not fit; ignored", self.spec.key)
        if not self._exited.wait(10.0):  # closed its channel but lives on: no half cells
            self.kill()
            self._exited.wait(5.0)
        with self._lock:
            self.dead.set()
            pending, self._pending = self._pending, {}
        for waiting in pending.values():
            waiting.died = CellDied(self.exitcode)
            waiting.done.set()
        self._channel.close()
        if self._logs_to is not None:
            self._logs_to.close()
        self._on_exit(self)

    def _handle(self, message: dict[str, Any]) -> None:
        kind = message["t"]
        if kind == "ready":
            self.sandbox = message["sandbox"] if isinstance(message.get("sandbox"), dict) else {}
            self.ready.set()
        elif kind == "loaded":
            with self._lock:
                pending = self._pending.pop(int(message["batch"]), None)
            if pending is not None:
                pending.answer = message
                pending.done.set()
        elif kind == "event" and isinstance(message.get("event"), dict):
            event = {k: v for k, v in message["event"].items() if isinstance(v, str | int | float | None)}
            self._on_event(self, event)
        elif kind == "counts":
            counts = [_counts(item, self.spec) for item in message["items"]]
            self._on_counts(self, [c for c in counts if c is not None])
        elif kind == "metrics":
            self._on_metrics(self, message)
        elif kind == "pending":
            self.pending = max(0, int(message["n"]))
        elif kind == "warming":
            self.warming = [(str(g), str(name), int(v)) for g, name, v in message["rows"]]
        elif kind == "failed" and self.on_failed is not None:
            failures = [_late_failure(item, self.spec) for item in message["items"]]
            self.on_failed(self, [f for f in failures if f is not None])
        elif kind == "warmed" and self.on_warmed is not None:
            warmed = [w for w in (_warmed(item, self.spec) for item in message["rows"]) if w is not None]
            # a batch comes in several messages, the rest `more` (`cell.SupervisorLink._send_warmed`):
            # told once, so reported in one write; bounded, whatever a cell says
            if message.get("more") is True and len(self._warmed_parts) < MAX_WARMED_PARTS:
                self._warmed_parts += warmed
            else:
                warmed, self._warmed_parts = self._warmed_parts + warmed, []
                self.on_warmed(self, warmed)
        elif kind == "split_counts" and self.on_split_counts is not None:
            items = [_split_counts(item, self.spec) for item in message["items"]]
            self.on_split_counts(self, [i for i in items if i is not None])
        elif kind == "want":
            want, gateway, name, version = (
                int(message["id"]),
                str(message["gateway"]),
                str(message["name"]),
                int(message["version"]),
            )
            if gateway != self.spec.gateway or not name.startswith(f"{self.spec.env}/") or version < 1:
                self.send(("version", want, None, f"{gateway}/{name} is not served by this cell", 404))
            elif self.on_want is None:
                self.send(("version", want, None, "this runtime serves no version URLs", 404))
            else:
                self.on_want(self, want, gateway, name, version)


def _counts(item: Any, spec: CellSpec) -> FunctionCounts | None:
    """A cell's counts, believed only for its own gateway and environment."""
    gateway, name, version, requests, errors, last_error = item
    if gateway != spec.gateway or not str(name).startswith(f"{spec.env}/"):
        return None
    return FunctionCounts(
        str(gateway),
        str(name),
        int(version),
        int(requests),
        int(errors),
        str(last_error)[:2000] if last_error is not None else None,
    )


def _late_failure(item: Any, spec: CellSpec) -> tuple[str, str, int, LoadError] | None:
    """A pending version's failure, as a cell reports it: only its own gateway and environment."""
    gateway, name, version, summary, trace, took = item
    if gateway != spec.gateway or not isinstance(name, str) or not name.startswith(f"{spec.env}/"):
        return None
    load_ms = float(took) if isinstance(took, int | float) and 0 <= took < 1e9 else None
    return str(gateway), name, int(version), LoadError(str(summary), str(trace or ""), load_ms)


def _warmed(item: Any, spec: CellSpec) -> tuple[str, str, int, float] | None:
    """A pending version its cell has loaded, as the cell says, with the seconds its load took: only
    its own gateway and environment."""
    gateway, name, version, took_us = item
    if gateway != spec.gateway or not isinstance(name, str) or not name.startswith(f"{spec.env}/"):
        return None
    seconds = took_us / 1e6 if type(took_us) is int and 0 <= took_us < 10**12 else 0.0
    return str(gateway), name, int(version), seconds


def _split_counts(item: Any, spec: CellSpec) -> tuple[str, str, int, ArmCounts] | None:
    """A cell's canary counts, believed only for its own gateway and environment, and well formed."""
    gateway, name, version, requests, errors, latency = item
    if gateway != spec.gateway or not str(name).startswith(f"{spec.env}/"):
        return None
    buckets = [int(n) for n in latency]
    if len(buckets) != len(BUCKETS_MS) or min(buckets) < 0 or int(requests) < 0 or int(errors) < 0:
        return None
    return str(gateway), str(name), int(version), ArmCounts(int(requests), int(errors), buckets)


def _fresh_folder(folder: Path) -> None:
    """The cell's private temp folder, empty at every start (nothing of a dead cell's is kept)."""
    if folder.exists():
        shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, mode=0o700)


class CellEvents:
    """What the cell set tells its supervisor (the reporter, the front's routes)."""

    def ready(self, slot: Slot, cell: Cell) -> None: ...

    def restarting(self, slot: Slot, cause: str) -> None: ...

    def stopped(self, slot: Slot) -> None: ...

    def cell_counts(self, slot: Slot, items: list[FunctionCounts]) -> None: ...

    def lost(self, slot: Slot, row: PublishedFunction, cause: str) -> None: ...

    def failed_late(self, slot: Slot, gateway: str, name: str, version: int, error: LoadError) -> None:
        """A version reported loadable (held pending by its cell) failed when the cell ran it."""

    def warmed(self, slot: Slot, items: list[tuple[str, str, int, float]]) -> None:
        """Versions reported pending that their cell has now loaded (they are live): `(gateway, name,
        version, seconds the load took)`."""

    def held(self, slot: Slot, rows: list[PublishedFunction]) -> None:
        """Versions a restarted cell was given back pending (held, not run yet)."""

    def log_pipe(self, slot: Slot) -> Any:
        """A new cell's socket to the log writer (`log_process.LogPipe`), or None: logs stay in memory."""
        return None

    def moved(self, gateway: str, name: str, slot: Slot, cell: Cell) -> None:
        """`name` is now live in `slot`'s cell (route it there); called before it leaves its old cell."""


def slot_key(slot: Slot) -> str:
    """`demo/dev`, or `demo/dev@3f2a9c1b0d4e` for a lock's cell."""
    return f"{slot[0]}/{slot[1]}" + (f"@{slot[2][:12]}" if slot[2] else "")


def _later(delay_s: float, call: Callable[..., None], args: tuple[Any, ...]) -> None:
    timer = threading.Timer(delay_s, call, args=args)
    timer.daemon = True
    timer.start()


@dataclass
class _SlotState:
    cell: Cell | None = None
    live: dict[str, PublishedFunction] = field(default_factory=dict)  # name -> row live in the cell
    names: set[str] = field(default_factory=set)  # published names sent here (live or failed)
    lock: threading.RLock = field(default_factory=threading.RLock)
    deaths: int = 0
    restarts: int = 0
    events: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=20))  # the watchdog's
    last_cause: str | None = None


class CellSet:
    """The cells of one supervisor, one per (gateway, environment) slot."""

    def __init__(
        self,
        make_spec: Callable[[Slot], CellSpec],
        events: CellEvents,
        zygote: Zygote,
        *,
        keep_empty: bool = False,
        prepare: Callable[[PublishedFunction], None] | None = None,
        direct: bool = False,
    ) -> None:
        self._make_spec = make_spec
        # direct (an --env runtime, no front): the environment's cell serves the port, and forwards the
        # requests of a function that lives in a lock's cell to that cell's socket; `_forwards` is what
        # it has been told, (gateway, name) -> socket, kept here to give it again when it restarts
        self.direct = direct
        self._forwards: dict[tuple[str, str], str] = {}
        self._forwards_lock = threading.Lock()
        # installs a row's lock on this host before it loads (None: one cell per (gateway, env), no locks)
        self._prepare = prepare
        self._where: dict[tuple[str, str], Slot] = {}  # (gateway, name) -> the slot it is live in
        self.installing: set[str] = set()  # lock hashes being installed now (status says so)
        self.events = events
        self._zygote = zygote
        self._slots: dict[Slot, _SlotState] = {}
        self._lock = threading.Lock()
        self._stopping = False
        self.keep_empty = keep_empty  # production's env cell stays up (and 404s) with nothing published
        self.quarantined: dict[tuple[str, str, int, str], str] = {}  # (gateway, name, version, hash)
        self.configs: dict[tuple[str, ...], dict[str, Any]] = {}  # (gateway, env) -> newest (decrypted)
        self._config_seq = itertools.count(1)
        self.metrics: RuntimeMetrics | None = None  # the supervisor's /metrics, when it keeps them
        self.version_source: Any = None  # runtime.version_source.VersionSource: what version URLs run
        # a cell's canary counts (its pid, then cumulative counts since it began splitting)
        self.split_sink: Callable[[int, list[tuple[str, str, int, ArmCounts]]], None] | None = None
        self._fetcher = ThreadPoolExecutor(max_workers=2, thread_name_prefix="fnstage-versions")
        # held cells (`CellSpec.held`) are told to serve once they hold their functions: after a start's
        # reload, and not before the supervisor's first sync (`serve_after_sync`) when it sets this False
        self.synced = True
        self._serving_lock = threading.Lock()
        # runs `_left` for a function that moved, MOVE_GRACE_S later (a test takes the call and makes it
        # when it chooses, instead of racing the timer)
        self.later: Callable[[float, Callable[..., None], tuple[Any, ...]], None] = _later
        # set once the supervisor's first sync applied what its cells answered (a supervisor clears it
        # until then): a pending version's failure is applied after the answer that made it live
        self.sync_done = threading.Event()
        self.sync_done.set()
        self._late = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fnstage-late-failures")

    # what the watcher calls (its reader thread) ---------------------------------------------------
    def slot_of(self, row: PublishedFunction) -> Slot:
        lock = (row.lock_hash or "") if self._prepare is not None else ""
        return (row.gateway, row.name.split("/", 1)[0], lock)

    def load(self, rows: list[PublishedFunction]) -> list[LiveVersion | LoadError]:
        results: dict[int, LiveVersion | LoadError] = {}
        by_slot: dict[Slot, list[tuple[int, PublishedFunction]]] = {}
        for index, row in enumerate(rows):
            failed = self._install(row)
            if failed is not None:
                results[index] = failed
                continue
            by_slot.setdefault(self.slot_of(row), []).append((index, row))

        def load_slot(slot: Slot, items: list[tuple[int, PublishedFunction]]) -> None:
            for index, result in zip(
                (i for i, _ in items), self._load_slot(slot, [r for _, r in items]), strict=True
            ):
                results[index] = result

        if len(by_slot) == 1:
            load_slot(*next(iter(by_slot.items())))
        elif by_slot:  # cells load side by side (a cold start of many cells; a resync touching several)
            # a thread per cell: each only waits for its cell, which loads in its own process; with a
            # pool of 8, a cold start of 10 cells forked and loaded the last two only after the others
            with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_SLOTS, len(by_slot))) as pool:
                for done in [pool.submit(load_slot, slot, items) for slot, items in by_slot.items()]:
                    done.result()
        self._settle_all(by_slot, results)
        return [results[i] for i in range(len(rows))]

    def load_stream(
        self, chunks: Iterable[list[PublishedFunction]]
    ) -> tuple[list[PublishedFunction], list[LiveVersion | LoadError], BaseException | None]:
        """`load` of rows as they are read (a cold start's snapshot, `FeedReader.snapshot_chunks`):
        each chunk goes to its cells at once, a thread per cell, which sends it on while this thread
        reads the next, so the cells load while the supervisor still reads. Returns every row taken,
        its result, and what reading the chunks raised (None): the rows taken before the error are
        loaded all the same, and must be applied (a cell serves what it loaded)."""
        rows: list[PublishedFunction] = []
        results: dict[int, LiveVersion | LoadError] = {}
        by_slot: dict[Slot, list[tuple[int, PublishedFunction]]] = {}
        feeds: dict[Slot, queue.SimpleQueue[list[PublishedFunction] | None]] = {}
        answers: dict[Slot, list[LiveVersion | LoadError]] = {}
        workers: list[threading.Thread] = []

        failures: list[BaseException] = []

        def load_slot(slot: Slot, feed: queue.SimpleQueue[list[PublishedFunction] | None]) -> None:
            try:
                answers[slot] = self._load_slot_stream(slot, iter(feed.get, None))
            except BaseException as exc:  # raised on the caller's thread, as `load`'s pool does
                failures.append(exc)
                for _ in iter(feed.get, None):  # the reader never waits on a queue: drained
                    pass

        error: BaseException | None = None
        try:
            for chunk in chunks:
                parts: dict[Slot, list[PublishedFunction]] = {}
                for row in chunk:
                    index = len(rows)
                    rows.append(row)
                    failed = self._install(row)
                    if failed is not None:
                        results[index] = failed
                        continue
                    slot = self.slot_of(row)
                    by_slot.setdefault(slot, []).append((index, row))
                    parts.setdefault(slot, []).append(row)
                for slot, part in parts.items():
                    feed = feeds.get(slot)
                    if feed is None:
                        feeds[slot] = feed = queue.SimpleQueue()
                        if len(workers) < MAX_PARALLEL_SLOTS:  # beyond: loaded after the others
                            worker = threading.Thread(
                                target=load_slot, args=(slot, feed), name="fnstage-cell-load", daemon=True
                            )
                            workers.append(worker)
                            worker.start()
                    feed.put(part)
        except Exception as exc:  # the read failed: what was taken is loaded, then the error goes on
            error = exc
        finally:
            for feed in feeds.values():
                feed.put(None)
            for worker in workers:
                worker.join()
        if failures:
            raise failures[0]
        for slot, feed in feeds.items():  # slots beyond MAX_PARALLEL_SLOTS: after the others
            if slot not in answers:
                answers[slot] = self._load_slot_stream(slot, iter(feed.get, None))
        for slot, items in by_slot.items():
            for (index, _), result in zip(items, answers[slot], strict=True):
                results[index] = result
        self._settle_all(by_slot, results)
        return rows, [results[i] for i in range(len(rows))], error

    def _settle_all(
        self,
        by_slot: dict[Slot, list[tuple[int, PublishedFunction]]],
        results: dict[int, LiveVersion | LoadError],
    ) -> None:
        # route each function loaded to its (new) cell, then take it out of the cell it left: after
        # every slot's load, so no slot's lock is held while another's is taken
        rerouted: set[tuple[str, str]] = set()  # direct: environments whose cell must be told, once
        left: list[tuple[Slot, str, str]] = []
        for slot, items in by_slot.items():
            for index, row in items:
                if isinstance(results[index], LiveVersion):
                    if self._settle(slot, row, left):
                        rerouted.add(slot[:2])
                elif self._where.get((row.gateway, row.name), slot) != slot:
                    # failed in the cell of its new lock: it keeps serving from its old cell, and the
                    # new one, if it holds nothing else, stops
                    self._forget(slot, row.name)
        for gateway, env in sorted(rerouted):  # one table per environment cell, and its answer
            self._push_forwards(gateway, env, wait=True)
        for old, gateway, name in left:
            # not at once: a request routed to the old cell just before the route changed is still on
            # its way there, and must find the function (its old version) when it arrives
            self.later(MOVE_GRACE_S, self._left, (old, gateway, name))

    def _forget(self, slot: Slot, name: str) -> None:
        state = self._slots.get(slot)
        if state is None:
            return
        with state.lock:
            if name in state.live:
                return
            state.names.discard(name)
            if not state.names and not (self.keep_empty and not slot[2]):
                self._stop_slot(slot, state)

    def _install(self, row: PublishedFunction) -> LoadError | None:
        """Install the row's lock on this host if it lacks it (before any cell is routed to it)."""
        if self._prepare is None or not row.lock_hash:
            return None
        self.installing.add(row.lock_hash)
        try:
            self._prepare(row)
        except Exception as error:  # reported as the version's load failure; the old one keeps serving
            message = getattr(error, "message", None) or str(error)
            return LoadError(f"installing dependencies failed: {message}")
        finally:
            self.installing.discard(row.lock_hash)
        return None

    def _settle(self, slot: Slot, row: PublishedFunction, left: list[tuple[Slot, str, str]]) -> bool:
        """Route `row`'s function to `slot`'s cell; a cell it left goes on `left`. True when the
        environment's cell must be told (direct: the function moved to or from a lock's cell)."""
        key = (row.gateway, row.name)
        old = self._where.get(key)
        state = self._slots.get(slot)
        cell = state.cell if state is not None else None
        rerouted = False
        if cell is not None:
            if self.direct:
                rerouted = self._route(row.gateway, row.name, slot, cell)
            self.events.moved(row.gateway, row.name, slot, cell)
        self._where[key] = slot
        if old is not None and old != slot:
            left.append((old, row.gateway, row.name))
        return rerouted

    def _route(self, gateway: str, name: str, slot: Slot, cell: Cell) -> bool:
        """Direct: where the environment's cell sends `name` now (a lock's cell: forward there; its own:
        serve it); True if that changed (the caller tells the cell, and waits for its answer, before
        "live" is reported)."""
        target = str(cell.spec.uds) if slot[2] and cell.spec.uds is not None else None
        with self._forwards_lock:
            if self._forwards.get((gateway, name)) == target:
                return False
            if target is None:
                self._forwards.pop((gateway, name), None)
            else:
                self._forwards[(gateway, name)] = target
        return True

    def _unroute(self, gateway: str, name: str) -> None:
        """Direct: the environment's cell stops forwarding `name` (it was removed from its lock's cell)."""
        with self._forwards_lock:
            if self._forwards.pop((gateway, name), None) is None:
                return
        self._push_forwards(gateway, name.split("/", 1)[0], wait=True)

    def _unroute_cell(self, slot: Slot, uds: Path | None) -> None:
        """Direct: a lock's cell stopped; nothing is forwarded to its socket any more."""
        if uds is None:
            return
        with self._forwards_lock:
            gone = [key for key, target in self._forwards.items() if target == str(uds)]
            for key in gone:
                del self._forwards[key]
        if gone:
            self._push_forwards(slot[0], slot[1], wait=False)

    def forwards(self, gateway: str, env: str) -> list[tuple[str, str, str]]:
        """Direct: the functions of (gateway, env) its environment's cell forwards, and where."""
        prefix = f"{env}/"
        with self._forwards_lock:
            return sorted(
                (g, name, target)
                for (g, name), target in self._forwards.items()
                if g == gateway and name.startswith(prefix)
            )

    def _push_forwards(self, gateway: str, env: str, *, wait: bool, cell: Cell | None = None) -> None:
        """Send the environment's cell its whole forwarding table (small: one entry per function in a
        lock's cell); with `wait`, until it has applied it (a cell that died meanwhile gets it again
        when it restarts, before it serves)."""
        if cell is None:
            state = self._slots.get((gateway, env, ""))
            cell = state.cell if state is not None else None
        if cell is None:
            return
        table = self.forwards(gateway, env)
        if not wait:
            cell.send(("forwards", 0, table))
            return
        with contextlib.suppress(CellDied):  # its restart sends the table again before it serves
            cell.call("forwards", table)

    def _left(self, old: Slot, gateway: str, name: str) -> None:
        """Take a moved function out of the cell it left, unless it has moved back there since."""
        if self._where.get((gateway, name)) != old and not self._stopping:
            self._remove_from(old, gateway, name, None)

    def remove(self, gateway: str, name: str, version: int | None = None) -> None:
        """Unload `name` from its cell; a removal older than the version live there is ignored (the
        function was deleted and created again). A cell left with nothing stops."""
        slot = self._where.get((gateway, name)) or (gateway, name.split("/", 1)[0], "")
        if self.direct and slot[2]:
            state = self._slots.get(slot)
            live_row = state.live.get(name) if state is not None else None
            if version is None or live_row is None or live_row.version <= version:
                self._unroute(gateway, name)  # answered 404 by the environment's cell from now on
        live = self._remove_from(slot, gateway, name, version)
        if live and self._where.get((gateway, name)) == slot:
            self._where.pop((gateway, name), None)

    def _remove_from(self, slot: Slot, gateway: str, name: str, version: int | None) -> bool:
        state = self._slots.get(slot)
        if state is None:
            return True
        with state.lock:
            live = state.live.get(name)
            if version is not None and live is not None and live.version > version:
                return False
            state.live.pop(name, None)
            state.names.discard(name)
            if state.cell is not None:
                state.cell.send(("remove", [(gateway, name, version)]))
            if not state.names and not (self.keep_empty and not slot[2]):
                self._stop_slot(slot, state)
        return True

    def locks_in_use(self) -> set[str]:
        """The locks of the cells this set runs or is starting, and of those being installed: their
        environments must stay on this host whatever the store says (`runtime.environment_collector`)."""
        with self._lock:
            slots = [(slot, state) for slot, state in self._slots.items() if slot[2]]
        used = {slot[2] for slot, state in slots if state.cell is not None or state.names}
        return used | set(self.installing)

    def live_names(self, slot: Slot) -> list[str]:
        state = self._slots.get(slot)
        return list(state.live) if state is not None else []

    def slot_of_function(self, gateway: str, name: str) -> Slot:
        return self._where.get((gateway, name)) or (gateway, name.split("/", 1)[0], "")

    def configure(self, slot: tuple[str, ...], payload: dict[str, Any]) -> None:
        """Keep a (gateway, env)'s newest configuration and send it to that environment's cells (one per
        lock), the only ones that ever receive it; a cell started later gets it before anything else."""
        with self._lock:
            # the order of delivery, not the version, says which is newer: a gateway deleted and made
            # again starts its versions at 1, and a restarted cell may get a resend after a newer one
            payload = {**payload, "seq": next(self._config_seq)}
            self.configs[slot[:2]] = payload
            cells = [s.cell for key, s in self._slots.items() if key[:2] == slot[:2] and s.cell is not None]
        for cell in cells:
            cell.send(("config", payload))

    def _send_config(self, slot: Slot, cell: Cell) -> None:
        with self._lock:
            payload = self.configs.get(slot[:2])
        if payload is not None:
            cell.send(("config", payload))

    def ensure(self, slot: Slot) -> Cell | None:
        """The slot's cell, started (and ready) if it was not."""
        state = self._state(slot)
        with state.lock:
            return self._ensure(slot, state)

    def spec_of(self, slot: Slot) -> CellSpec | None:
        state = self._slots.get(slot)
        cell = state.cell if state is not None else None
        return cell.spec if cell is not None and cell.ready.is_set() and not cell.dead.is_set() else None

    def status(self) -> list[dict[str, Any]]:
        out = []
        for (gateway, env, lock), state in sorted(self._slots.items()):
            cell = state.cell
            out.append(
                {
                    "gateway": gateway,
                    "env": env,
                    "lock": lock or None,
                    "pid": cell.pid if cell else None,
                    "ready": bool(cell and cell.ready.is_set() and not cell.dead.is_set()),
                    "functions": len(state.live),
                    "pending": cell.pending if cell else 0,  # of those, held but not run yet
                    "restarts": state.restarts,
                    "last_exit": state.last_cause,
                    "sandbox": cell.sandbox if cell else None,
                }
            )
        return out

    def pending(self) -> int:
        """Versions the cells hold without having run them yet (a deferred cold start's)."""
        return sum(state.cell.pending for state in list(self._slots.values()) if state.cell is not None)

    def quarantine_list(self) -> list[dict[str, Any]]:
        return [
            {"gateway": g, "name": n, "version": v, "cause": cause}
            for (g, n, v, _), cause in sorted(self.quarantined.items())
        ]

    def stop_all(self) -> None:
        """Stop every cell, all at once (each has a few seconds to finish its requests)."""
        self._stopping = True
        self.sync_done.set()  # a late failure waiting for a first sync that will not come goes on
        stoppers = [
            threading.Thread(target=self._stop_slot, args=(slot, state), daemon=True)
            for slot, state in list(self._slots.items())
        ]
        for stopper in stoppers:
            stopper.start()
        for stopper in stoppers:
            stopper.join(15.0)

    # internals -----------------------------------------------------------------------------------
    def _state(self, slot: Slot) -> _SlotState:
        with self._lock:
            state = self._slots.get(slot)
            if state is None:
                state = self._slots[slot] = _SlotState()
            return state

    def _ensure(self, slot: Slot, state: _SlotState) -> Cell | None:
        if state.cell is not None and not state.cell.dead.is_set():
            return state.cell if state.cell.wait_ready() else None
        if self._stopping:
            return None
        return self._start(slot, state)

    def _start(self, slot: Slot, state: _SlotState) -> Cell | None:
        """Start the slot's cell and give it back what was live; None if it cannot come up."""
        for attempt, delay in enumerate(RESTART_DELAYS_S):
            if self._stopping:
                return None
            if delay and attempt:
                time.sleep(delay)
            cell = self._new_cell(slot)
            state.cell = cell
            cell.start()
            if not cell.wait_ready():
                cell.kill()
                cell.dead.wait(5.0)
                state.last_cause = f"did not start: {describe_exit(cell.exitcode)}"
                continue
            self._send_config(slot, cell)
            if self.direct and not slot[2]:  # before it serves: requests for lock cells' functions
                self._push_forwards(slot[0], slot[1], wait=False, cell=cell)
            if self._reload(slot, state, cell):
                self._serve(state.cell)  # `_reload` may have replaced the cell
                logger.info(
                    "runtime: cell %s started (pid %s) with %d function(s)",
                    slot_key(slot),
                    cell.pid,
                    len(state.live),
                    extra=fields(event="cell_started", gateway=slot[0], env=slot[1], pid=cell.pid),
                )
                self.events.ready(slot, cell)
                return cell
        logger.error("cell %s cannot start: %s", slot_key(slot), state.last_cause)
        return None

    def _reload(self, slot: Slot, state: _SlotState, cell: Cell) -> bool:
        """Load what was live into a fresh cell; a row that now kills it is dropped (and reported)."""
        rows = list(state.live.values())
        if not rows:
            return True
        try:
            # what was live: a cold start again, as the first sync's (status: pending again)
            cell.load(rows, self._held(slot, rows), defer=True)
            return True
        except CellDied:
            pass
        # one of them kills the cell: find it, one load at a time, each in a cell of its own
        for row in rows:
            spec = self._make_spec(slot)
            # a probe never takes the public port (an --env runtime's environment cell serves it)
            spec = replace(spec, port=None, uds=spec.temp_dir / "cell.sock", held=False)
            probe = Cell(spec, self._zygote, self._counts, lambda cell: None)
            probe.start()
            if not probe.wait_ready():
                return False
            try:
                probe.load([row])
            except CellDied as died:
                cause = f"killed its cell at load: {died}"
                state.live.pop(row.name, None)
                self._quarantine(row, cause)
                self.events.lost(slot, row, cause)
            finally:
                probe.stop()
        # the survivors, together, in a fresh cell
        cell = self._new_cell(slot)
        state.cell = cell
        cell.start()
        if not cell.wait_ready():
            return False
        self._send_config(slot, cell)
        if self.direct and not slot[2]:
            self._push_forwards(slot[0], slot[1], wait=False, cell=cell)
        try:
            survivors = list(state.live.values())
            cell.load(survivors, self._held(slot, survivors), defer=True)
        except CellDied:
            return False
        return True

    def _held(self, slot: Slot, rows: list[PublishedFunction]) -> Callable[[int, list[Any]], None]:
        """A reload's answers, as each batch comes (before the cell is told "warm"): the rows given back
        pending go to `events.held`, so status says pending until the cell says `warmed`."""

        def answered(start: int, answers: list[Any]) -> None:
            held = [
                rows[start + i]
                for i, answer in enumerate(answers)
                if type(answer) is int and answer == PENDING
            ]
            if held:
                self.events.held(slot, held)

        return answered

    def _load_slot(self, slot: Slot, rows: list[PublishedFunction]) -> list[LiveVersion | LoadError]:
        return self._load_slot_stream(slot, iter([rows]), whole=True)

    def _load_slot_stream(
        self, slot: Slot, chunks: Iterator[list[PublishedFunction]], *, whole: bool = False
    ) -> list[LiveVersion | LoadError]:
        """Load the slot's rows, chunk by chunk as they come, in its cell; a result per row, in order.
        `whole`: one chunk that is every row (batched here as `Cell.load` does)."""
        state = self._state(slot)
        with state.lock:
            rows: list[PublishedFunction] = []
            out: list[LiveVersion | LoadError | None] = []
            todo: list[int] = []

            def take(chunk: list[PublishedFunction]) -> list[PublishedFunction]:
                """The chunk's rows to load (a quarantined version is not loaded again)."""
                state.names.update(row.name for row in chunk)
                wanted = []
                for row in chunk:
                    rows.append(row)
                    cause = self.quarantined.get((row.gateway, row.name, row.version, row.bundle_hash))
                    out.append(LoadError(cause) if cause is not None else None)
                    if cause is None:
                        todo.append(len(rows) - 1)
                        wanted.append(row)
                return wanted

            first = next(chunks, None)
            if first is None:
                return []
            first_wanted = take(first)
            cell = self._ensure(slot, state)
            if cell is None:
                for chunk in chunks:
                    take(chunk)
                cause = f"its cell cannot start: {state.last_cause or 'unknown cause'}"
                return [r if r is not None else LoadError(cause) for r in out]

            def answered(start: int, answers: list[Any]) -> None:  # while the cell loads the next batch
                for i, answer in zip(todo[start : start + len(answers)], answers, strict=True):
                    out[i] = self._result(state, rows[i], answer)

            try:
                if whole:
                    cell.load(first_wanted, answered)
                else:
                    # a cold start (the snapshot as it is read): a bulk load of it may be deferred, where a
                    # resync's or a catch-up's rows (saves among them) are loaded before they are answered
                    stream = itertools.chain([first_wanted], map(take, chunks))
                    cell.load_stream(stream, answered, defer=True)
            except CellDied:
                # a batch killed the cell: bring it back with what was live (the batches answered
                # before included), then each load not answered alone; one that kills it a second
                # time is quarantined
                for chunk in chunks:  # what was not sent yet
                    take(chunk)
                for i in todo:
                    if out[i] is None:
                        out[i] = self._load_alone(slot, state, rows[i])
            return [r if r is not None else LoadError("not loaded") for r in out]

    def _load_alone(self, slot: Slot, state: _SlotState, row: PublishedFunction) -> LiveVersion | LoadError:
        cell = self._ensure(slot, state)
        if cell is None:
            return LoadError(f"its cell cannot start: {state.last_cause or 'unknown cause'}")
        try:
            return self._result(state, row, cell.load([row])[0])
        except CellDied as died:
            cause = f"killed its cell at load: {died}"
            self._quarantine(row, cause)
            self._ensure(slot, state)  # back up, with what was live before
            if state.cell is not None:
                state.cell.send(("fail", row.gateway, row.name, row.version, cause))
            return LoadError(cause)

    def _quarantine(self, row: PublishedFunction, cause: str) -> None:
        logger.error(
            "runtime: %s v%d quarantined (gateway %s): %s",
            row.name,
            row.version,
            row.gateway,
            cause,
            extra=fields(
                event="quarantined", gateway=row.gateway, name=row.name, version=row.version, cause=cause
            ),
        )
        self.quarantined[(row.gateway, row.name, row.version, row.bundle_hash)] = cause
        if self.metrics is not None:
            self.metrics.quarantined(row.gateway, row.name)

    def _result(self, state: _SlotState, row: PublishedFunction, answer: Any) -> LiveVersion | LoadError:
        """A cell's answer for `row`: the microseconds its load took (an integer: it loaded; -1, PENDING:
        held, loaded on its first request or by the warm-up, whose failure comes later, `_failed`), or
        why not (`cell.SupervisorLink._load`)."""
        if type(answer) is int:  # not a bool
            state.live[row.name] = row
            if answer == PENDING:
                return _mirror(row, PENDING_LOAD_MS)  # reported pending until the cell says `warmed`
            return _mirror(row, answer / 1000 if 0 <= answer < 10**12 else 0.0)
        summary = answer.get("summary") if isinstance(answer, dict) else None
        trace = answer.get("traceback") if isinstance(answer, dict) else None
        took = answer.get("load_ms") if isinstance(answer, dict) else None
        load_ms = float(took) if isinstance(took, int | float) and 0 <= took < 1e9 else None
        return LoadError(str(summary or "failed to load"), str(trace or ""), load_ms)

    def _new_cell(self, slot: Slot) -> Cell:
        cell = Cell(
            self._make_spec(slot),
            self._zygote,
            self._counts,
            self._exited,
            self._event,
            self._log_pipe,
            on_metrics=self._metrics,
        )
        cell.on_want = self._want
        cell.on_split_counts = self._split_counts
        cell.on_failed = self._failed
        cell.on_warmed = self._warmed
        return cell

    def _serve(self, cell: Cell | None) -> None:
        """Let a held cell answer requests: it holds what was live (a start's reload), and the first
        sync has given the supervisor what is published."""
        with self._serving_lock:
            if cell is not None and cell.spec.held and self.synced:
                cell.send(("serve",))

    def serve_after_sync(self) -> None:
        """The supervisor's first sync is done: every held cell holds its functions now."""
        with self._serving_lock:
            self.synced = True
        self.sync_done.set()
        for state in list(self._slots.values()):
            with state.lock:  # never a cell still starting: its own start tells it, after its reload
                if state.cell is not None and state.cell.ready.is_set():
                    self._serve(state.cell)

    def _split_counts(self, cell: Cell, items: list[tuple[str, str, int, ArmCounts]]) -> None:
        if items and self.split_sink is not None and cell.pid is not None:
            self.split_sink(cell.pid, items)

    def cells_of(self, gateway: str, env: str) -> dict[Slot, Cell]:
        """The cells of (gateway, env) that are up, one per dependency lock (a canary's split is sent
        to each: a function lives in the cell of its lock)."""
        found: dict[Slot, Cell] = {}
        for slot, state in list(self._slots.items()):
            cell = state.cell
            if (
                slot[:2] == (gateway, env)
                and cell is not None
                and cell.ready.is_set()
                and not cell.dead.is_set()
            ):
                found[slot] = cell
        return found

    def _want(self, cell: Cell, want: int, gateway: str, name: str, version: int) -> None:
        """A cell asks for a version of the history (a version URL): read it on a thread of ours."""
        source = self.version_source
        if source is None:
            cell.send(("version", want, None, "this runtime serves no version URLs", 404))
            return
        self._fetcher.submit(_logged_fetch, source, cell, want, gateway, name, version)

    def _failed(self, cell: Cell, failures: list[tuple[str, str, int, LoadError]]) -> None:
        """Pending versions that failed when their cell ran them: on a thread of ours (the cell's reader
        must go on reading; the slot's lock may be held by a load waiting for that reader)."""
        if failures:
            self._late.submit(_logged_late, self._apply_failed, cell.spec.slot, failures)

    def _apply_failed(self, slot: Slot, failures: list[tuple[str, str, int, LoadError]]) -> None:
        self.sync_done.wait()
        state = self._slots.get(slot)
        for gateway, name, version, error in failures:
            if state is not None:
                with state.lock:
                    row = state.live.get(name)
                    if row is not None and row.version == version:
                        del state.live[name]  # not given back to a restarted cell
            if self.metrics is not None:
                seconds = error.load_ms / 1000 if error.load_ms is not None else None
                self.metrics.load_failed(gateway, name, seconds)
            self.events.failed_late(slot, gateway, name, version, error)

    def _warmed(self, cell: Cell, items: list[tuple[str, str, int, float]]) -> None:
        """Pending versions their cell has loaded: counted as loads (with the seconds each took, as an
        eager load's answer is) and reported live, on the thread (and in the order) of the late
        failures, after the first sync (which reported them pending)."""
        if items:
            self._late.submit(_logged_late, self._apply_warmed, cell.spec.slot, items)

    def _apply_warmed(self, slot: Slot, items: list[tuple[str, str, int, float]]) -> None:
        if self.metrics is not None:
            self.metrics.loaded_many([(gateway, name, seconds) for gateway, name, _, seconds in items])
        self.sync_done.wait()
        self.events.warmed(slot, items)

    def _event(self, cell: Cell, event: dict[str, Any]) -> None:
        state = self._slots.get(cell.spec.slot)
        if state is not None:
            state.events.append(event)

    def events_of(self, slot: Slot) -> list[dict[str, Any]]:
        state = self._slots.get(slot)
        return list(state.events) if state is not None else []

    def _counts(self, cell: Cell, items: list[FunctionCounts]) -> None:
        if items:
            self.events.cell_counts(cell.spec.slot, items)

    @staticmethod
    def _slot_of(cell: Cell) -> Slot:
        return (cell.spec.gateway, cell.spec.env, cell.spec.lock)

    def _log_pipe(self, cell: Cell) -> Any:
        return self.events.log_pipe(self._slot_of(cell))

    def _metrics(self, cell: Cell, message: dict[str, Any]) -> None:
        if self.metrics is not None:
            self.metrics.add_cell(self._slot_of(cell), message["rows"], message["in_flight"])

    def _exited(self, cell: Cell) -> None:
        """A cell's channel closed: a stop we asked for, or a death to recover from."""
        slot = cell.spec.slot
        state = self._slots.get(slot)
        if state is None or cell.stopping or self._stopping or state.cell is not cell:
            return
        cause = describe_exit(cell.exitcode)
        state.deaths += 1
        state.last_cause = cause
        logger.warning(
            "runtime: cell %s (pid %s) %s; restarting it",
            slot_key(slot),
            cell.pid,
            cause,
            extra=fields(event="cell_exited", gateway=slot[0], env=slot[1], pid=cell.pid, cause=cause),
        )
        self.events.restarting(slot, cause)
        threading.Thread(target=self._restart, args=(slot, state, cell), daemon=True).start()

    def _restart(self, slot: Slot, state: _SlotState, dead: Cell) -> None:
        with state.lock:
            if state.cell is not dead:  # a load already brought it back
                return
            state.restarts += 1
            if self.metrics is not None:
                self.metrics.cell_restarted(slot)
            if time.monotonic() - dead.started_at < STABLE_AFTER_S:
                time.sleep(min(5.0, 0.1 * 2 ** min(state.deaths, 6)))
            # pending versions it was loading when it died (its warm-up): each is tried alone in the
            # restarted cell, and one that kills it again is quarantined, as a load that kills its cell
            # is; given back pending with the rest, it would kill every restart in turn
            suspects = []
            for gateway, name, version in dead.warming:
                row = state.live.get(name)
                if gateway == slot[0] and row is not None and row.version == version:
                    suspects.append(state.live.pop(name))
            self._start(slot, state)
            for row in suspects:
                result = self._load_alone(slot, state, row)
                if isinstance(result, LiveVersion) and self.metrics is not None:
                    self.metrics.loaded(row.gateway, row.name, result.load_ms / 1000)
                if isinstance(result, LoadError):  # as a failure the cell reports (after the first sync)
                    failure = (row.gateway, row.name, row.version, result)
                    self._late.submit(_logged_late, self._apply_failed, slot, [failure])

    def _stop_slot(self, slot: Slot, state: _SlotState) -> None:
        cell, state.cell = state.cell, None
        if cell is not None:
            cell.stop()
            logger.info(
                "runtime: cell %s stopped",
                slot_key(slot),
                extra=fields(event="cell_stopped", gateway=slot[0], env=slot[1], pid=cell.pid),
            )
            if self.metrics is not None:
                self.metrics.forget_cell(slot)
            shutil.rmtree(cell.spec.temp_dir, ignore_errors=True)
            if self.direct and slot[2]:
                self._unroute_cell(slot, cell.spec.uds)
            self.events.stopped(slot)


def _logged_fetch(source: Any, cell: Cell, want: int, gateway: str, name: str, version: int) -> None:
    """Read the version for the cell and send it; never leave the cell's request waiting unanswered."""
    from fnstage.runtime.version_source import VersionNotFound

    try:
        row = source.row(gateway, name, version)
    except VersionNotFound as exc:
        cell.send(("version", want, None, str(exc), 404))
    except Exception as exc:
        logger.warning("runtime: reading version %d of %s/%s failed", version, gateway, name, exc_info=True)
        cell.send(("version", want, None, f"version {version} of {name} could not be read: {exc}", 503))
    else:
        cell.send(("version", want, row, None, 200))


def _logged_late(call: Any, *args: Any) -> None:
    """Run `call` on the late failures' thread, logging what it raises (never lost in a future)."""
    try:
        call(*args)
    except Exception:
        logger.exception("runtime: applying a pending version's failure failed")


def _mirror(row: PublishedFunction, load_ms: float) -> LiveVersion:
    """What the supervisor's registry holds for a version live in a cell: its identity, not its code."""
    return mirror_version(
        row.gateway,
        row.name,
        row.version,
        row.semver,
        methods_of(row.methods),  # one set shared by every version with the same methods
        row.timeout_s,
        row.bundle_hash,
        load_ms,
    )


def probe_sandbox() -> list[str]:
    """The protections a cell started now would run without, each with its reason: a throwaway child
    applies the sandbox and reports (for `fnstage up`'s start-up message, before any cell exists)."""
    import json
    import tempfile

    from fnstage.runtime import sandbox

    folder = tempfile.mkdtemp(prefix="fnstage-probe-")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        try:
            os.close(read)
            policy = sandbox.default_policy(folder, key="probe/sandbox", keep_fds=[0, 1, 2, write])
            report = sandbox.apply(policy)
            os.write(write, json.dumps([str(p) for p in report.missing]).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as answer:
        data = answer.read()
    os.waitpid(pid, 0)
    shutil.rmtree(folder, ignore_errors=True)
    try:
        missing = json.loads(data)
    except ValueError:
        return ["sandbox: the probe could not report (see the runtime log)"]
    return [str(m) for m in missing]
