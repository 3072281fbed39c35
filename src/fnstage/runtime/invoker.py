"""Call one function version for one request: build `ctx`, run `main` with a time limit, and turn what it
returns (or raises) into a status, headers and body. A function's failure never escapes: it becomes a
500 with the request id, its traceback goes to the `fnstage.runtime` logger and to the invocation log.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import threading
import time
from bisect import bisect_left
from collections import Counter, defaultdict, deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from functools import reduce
from itertools import compress, repeat
from operator import add, eq, floordiv, itemgetter
from typing import Any, NamedTuple, overload
from urllib.parse import parse_qsl

from orjson import dumps as _orjson_dumps

from fnstage.runtime.answer_json import ORJSON_OPTIONS, answer_json
from fnstage.runtime.loader import LiveVersion, describe_exception, format_traceback
from fnstage.runtime.request_metrics import (
    BUCKETS,
    CLASS_SLOT,
    FAILURES,
    FIRST_BOUND,
    FIRST_BUCKET,
    SECONDS,
    RequestMetrics,
    new_slots,
)
from fnstage.runtime.rsgi import HTTPProtocol
from fnstage.sdk import Context, HTTPError, Log, Response, Settings, TriggerInfo
from fnstage.store.records import FunctionCounts

logger = logging.getLogger("fnstage.runtime")

JSON = "application/json"
TEXT = "text/plain; charset=utf-8"
BINARY = "application/octet-stream"

Headers = list[tuple[str, str]]
# a request's headers as its server gave them: ASGI's bytes, or RSGI's text (names lowercased)
RawHeaders = Iterable[tuple[bytes, bytes]] | Iterable[tuple[str, str]]
# what a function returning a dict or list answers with: one tuple, shared by every such request and
# never changed, so the app knows it by identity and sends its bytes form without encoding it again
JSON_HEADERS: tuple[tuple[str, str], ...] = (("content-type", JSON),)


# loop -> the task it runs now: asyncio's own table, which asyncio.current_task() reads; on the hot path
# `invoke` reads it itself (in 3.11 current_task is Python: a frame and a loop lookup on every request).
# On a Python whose tasks no longer fill it, `invoke` finds no task and falls back to a timer per call,
# still correct; tests/test_runtime_invoker.py fails on such a Python.
RUNNING_TASKS: dict[asyncio.AbstractEventLoop, asyncio.Task[Any]] = vars(asyncio.tasks)["_current_tasks"]

# The lines of an invocation that logged nothing: one shared empty tuple. A log entry made of strings,
# numbers, None and this is untracked by the garbage collector at its first collection; with a new empty
# list in it, it stayed tracked, and the entries a cell keeps (its recent ring, the durable logs'
# outbox: thousands a second under load) were promoted from generation to generation until a full
# collection walked them all (BENCHMARKS.md, "Where a cell's CPU goes").
NO_LINES: tuple[str, ...] = ()


class Outcome(NamedTuple):
    status: int
    headers: Sequence[tuple[str, str]]  # `JSON_HEADERS` itself, or a list of the function's own
    body: bytes
    lines: Sequence[str]  # `NO_LINES` when the function logged nothing
    error: str | None = None  # the function's failure (summary, then traceback) or time-out
    seconds: float = 0.0  # how long the invocation took (the app's metrics and split time it by this)


class InvocationLog(NamedTuple):
    request_id: str
    time: float  # time.time() when the request started
    version: int
    status: int
    duration_ms: float
    lines: Sequence[str]  # `NO_LINES` when the function logged nothing
    error: str | None = None  # one-line summary, then the traceback
    trigger: str | None = None  # the trigger's name when a schedule ran it, None for an HTTP request


# An invocation as `InvocationLogs` keeps it: `InvocationLog`'s fields in its order, as a plain tuple
# (what `record` gets, and what a drain makes of `invoke`'s fields for a ring) or an `InvocationLog`
# (what other callers may pass). `recent` answers the named form; `take_outbox` hands the entries'
# fields over as columns.
LogEntry = tuple[str, float, int, int, float, Sequence[str], str | None, str | None]


@dataclass
class Counts:
    """Requests one function version answered on this worker since it went live, and how many failed
    (an exception or a time-out: the function's fault, not an `HTTPError` it chose to raise)."""

    version: int
    requests: int = 0
    errors: int = 0
    last_error: str | None = None  # the last failure's one-line summary


class _Kept:
    """One function's invocations as `InvocationLogs` keeps them: its ring and its counts, found by
    one dict lookup a drained run of its invocations."""

    __slots__ = ("counts", "key", "ring")

    def __init__(self, key: tuple[str, str], per_function: int) -> None:
        self.key = key
        self.ring: deque[LogEntry] = deque(maxlen=per_function)
        self.counts: Counts | None = None  # None until a counted request (not a version URL's)


# A served invocation as `invoke` queues it in `InvocationLogs.pending`: these fields, one after the
# other in that flat list, so that each is a strided slice of the list when drained. Its log entry's
# fields (`LogEntry`, `ENTRY`) lie side by side in it, not as a tuple of their own: the drain makes
# entries only for the rings' newest (a function's last `per_function` of a drain), and hands the
# outbox the fields as columns, which the shipping thread ships as columns (a tuple an invocation, then
# transposed by `zip(*entries)` there, was most of what shipping cost: BENCHMARKS.md, "cellship")
PENDING_FIELDS = (
    "gateway",
    "name",
    *InvocationLog._fields,  # `LogEntry`: request_id, time, version, status, duration_ms, lines, ...
    "seconds",
)
_WIDTH = len(PENDING_FIELDS)
ENTRY = slice(2, 2 + len(InvocationLog._fields))  # where an invocation's `LogEntry` lies among its fields
_SECONDS = PENDING_FIELDS.index("seconds")
# what the outbox holds of a drain, and `take_outbox` hands over: the gateways, the names, then the
# entries' fields in `LogEntry`'s order, a list each (columns: the same length, in the order queued)
OutboxColumns = tuple[list[Any], ...]
# `invoke` drains the queue itself once it holds this many (nothing else read it meanwhile: a runtime
# without a watcher, a cell between two heartbeats under load), so that it stays bounded
DRAIN_AT = 1024 * _WIDTH  # the list's length: 1,024 invocations
_PASSES = 8  # up to this many functions in a drain, each found by a pass in C over the names

# floats added one by one in order, as `record` adds each (the same sum to the last bit). Up to 3.11
# `sum` does it in C doubles (about 50 instructions a value against 250 for `reduce(add, ...)`, which
# calls `add` with an arguments tuple); from 3.12 `sum` compensates the rounding (other bits)
if sys.version_info < (3, 12):
    _sum_in_order: Callable[[Iterable[float], float], float] = sum
else:

    def _sum_in_order(values: Iterable[float], start: float) -> float:
        return reduce(add, values, start)


class InvocationLogs:
    """The last `per_function` invocations of each function, newest last, and each function's counts.

    With `outbox` > 0 (a cell whose supervisor keeps durable logs), every invocation is also queued to
    be shipped (`take_outbox`, from another thread); a full outbox drops the newest and counts it,
    never waits. The outbox holds the drained columns as they are (a drain's gateways, names and
    each field of the entries: `OutboxColumns`), not a tuple an invocation: no object made, tracked by
    the collector and freed for each, and the shipping thread gets columns, which it ships as columns.

    `invoke` does not record an invocation of the app's (counted, and for the metrics this counts
    into: `count_into`) one by one: it appends its `PENDING_FIELDS` to `pending` (the event loop
    only), and the ring, the outbox, the counts and the metrics take the queue in bulk, in C where they can
    (`itertools`, `map`, `list.count`), whenever any of them is read (`recent`, `take_counts`,
    `take_outbox`, `RequestMetrics.take`) and every `DRAIN_AT` invocations. So every read sees every
    invocation that finished before it, exactly as if each had been recorded when it finished; a
    request no longer pays about a fifth of the app's instructions for it (BENCHMARKS.md, "invfast").
    Drains and reads hold `lock` (`take_outbox` runs on the shipping thread)."""

    def __init__(self, per_function: int = 100, outbox: int = 0) -> None:
        self.per_function = per_function
        self._kept: dict[tuple[str, str], _Kept] = {}
        self._counted: set[_Kept] = set()  # counts changed since `take_counts` (hashed by identity)
        self.outbox_size = outbox
        # chunks of `OutboxColumns`, in the order queued; `_queued`: their invocations
        self._outbox: list[OutboxColumns] = []
        self._queued = 0
        self._dropped = 0  # ever
        self._dropped_taken = 0  # ... of which `take_outbox` reported
        # `PENDING_FIELDS` of each invocation `invoke` queued, flat: extended by the event loop only
        # (one C call a request), taken from the front by slices under `lock` (two C calls, each atomic
        # under the interpreter lock: what the loop adds meanwhile goes after them and stays)
        self.pending: list[Any] = []
        self.metrics: RequestMetrics | None = None  # where `pending`'s invocations are counted too
        self.lock = threading.Lock()

    def count_into(self, metrics: RequestMetrics) -> None:
        """Count the invocations `invoke` queues for these logs in `metrics` too (the app's: `invoke`
        queues a request only when its metrics are these); `metrics.take` drains the queue first."""
        with self.lock:
            self._drain()  # what was queued before was not for these metrics
            self.metrics = metrics
        metrics.sources.append(self)

    def record(
        self,
        gateway: str,
        name: str,
        entry: LogEntry | InvocationLog,
        count: bool = True,
        metrics: RequestMetrics | None = None,
        seconds: float = 0.0,
    ) -> None:
        """Keep `entry`; count it unless `count` is False (a version URL's or canary's version: the
        live version's counts are the status of what the environment serves). With `metrics`, count
        the request there too (what `RequestMetrics.observe` does; tests/test_runtime_metrics.py checks
        both count alike); `seconds`: the invocation's duration. After what `invoke` queued before it."""
        with self.lock:
            self._drain()
            if self.outbox_size:
                if self._queued < self.outbox_size:
                    # one-row columns of the entry's fields (it may be an `InvocationLog`)
                    self._outbox.append(([gateway], [name], *([field] for field in entry)))
                    self._queued += 1
                else:
                    self._dropped += 1
            key = (gateway, name)
            kept = self._kept.get(key)
            if kept is None:
                kept = self._kept[key] = _Kept(key, self.per_function)
            kept.ring.append(entry)
            # by index: a NamedTuple's field by name is a property's call each
            self._record_one(kept, entry[2], entry[3], entry[6], count, metrics, seconds)

    def _record_one(
        self,
        kept: _Kept,
        version: int,
        status: int,
        error: str | None,
        count: bool,
        metrics: RequestMetrics | None,
        seconds: float,
    ) -> None:
        """One invocation's counts and metrics (its ring and outbox are the caller's)."""
        if metrics is not None:  # off the hot path now (`invoke` queues the app's requests): one call
            metrics.observe(kept.key[0], kept.key[1], version, status, seconds, error is not None)
        if not count:
            return
        counts = kept.counts
        if counts is None or version > counts.version:
            counts = kept.counts = Counts(version)
        elif version < counts.version:
            return  # a request that began on the version before: the new one's counts are not its
        counts.requests += 1
        if error is not None:
            counts.errors += 1
            counts.last_error = error.partition("\n")[0][:500]
        self._counted.add(kept)

    def drain(self) -> None:
        """Take what `invoke` queued into the ring, outbox, counts and metrics."""
        with self.lock:
            self._drain()

    def _drain(self) -> None:  # holding `lock`
        pending = self.pending
        size = len(pending)
        if not size:
            return
        flat = pending[:size]
        del pending[:size]
        gateways, names, seconds = flat[0::_WIDTH], flat[1::_WIDTH], flat[_SECONDS::_WIDTH]
        # the entries' fields, a column each (`LogEntry`'s order): no entry made here but the rings'
        fields = [flat[at::_WIDTH] for at in range(ENTRY.start, ENTRY.stop)]
        n = len(gateways)
        if self.outbox_size:
            room = self.outbox_size - self._queued
            if room >= n:
                self._outbox.append((gateways, names, *fields))  # the lists themselves: none changes them
                self._queued += n
            else:  # full: the newest are dropped, and counted
                room = max(room, 0)
                if room:
                    self._outbox.append((gateways[:room], names[:room], *(f[:room] for f in fields)))
                    self._queued += room
                self._dropped += n - room
        columns = (*fields, seconds)
        gateway = gateways[0]
        # a cell serves one gateway: its functions are told apart by name alone
        one_gateway = gateways.count(gateway) == n
        if one_gateway and names.count(names[0]) == n:  # one function's (most drains under load)
            self._take((gateway, names[0]), columns)
            return
        keys: list[Any] = names if one_gateway else list(zip(gateways, names, strict=True))
        functions = dict.fromkeys(keys)
        if len(functions) <= _PASSES:  # a few functions': a pass in C each finds its invocations
            runs = [list(compress(range(n), map(eq, keys, repeat(key)))) for key in functions]
        else:  # many functions': a step in Python each
            by_key: defaultdict[Any, list[int]] = defaultdict(list)
            for index, key in enumerate(keys):
                by_key[key].append(index)
            runs = list(by_key.values())
        for indices in runs:
            first = indices[0]
            key = (gateways[first], names[first])
            if len(indices) == 1:
                self._take(key, [[column[first]] for column in columns])
            else:
                self._take(key, list(map(itemgetter(*indices), columns)))

    def _take(self, key: tuple[str, str], columns: Sequence[Sequence[Any]]) -> None:
        """One function's queued invocations, in order, as columns (the entries' fields in
        `LogEntry`'s order, then their seconds): as `record` of each (`count` True, into
        `self.metrics`), with a pass in C over each field instead of a step in Python each. Its ring
        gets entries made of its newest only (a drain's others would be pushed out unread)."""
        kept = self._kept.get(key)
        if kept is None:
            kept = self._kept[key] = _Kept(key, self.per_function)
        seconds = columns[-1]
        fields = columns[:-1]
        n = len(seconds)
        keep = self.per_function
        newest = [field[-keep:] for field in fields] if n > keep else fields
        kept.ring.extend(zip(*newest, strict=True))
        versions, statuses, errors = fields[2], fields[3], fields[6]
        metrics = self.metrics
        version = versions[0]
        if versions.count(version) != n:  # a new version went live between two drains: one by one
            for one_version, status, error, took in zip(versions, statuses, errors, seconds, strict=True):
                self._record_one(kept, one_version, status, error, True, metrics, took)
            return
        failures = n - errors.count(None)
        counts = kept.counts
        if counts is None or version > counts.version:
            counts = kept.counts = Counts(version)
        if version == counts.version:  # else older than the counted one: not counted, as in `record`
            counts.requests += n
            if failures:
                counts.errors += failures
                last = next(error for error in reversed(errors) if error is not None)
                counts.last_error = last.partition("\n")[0][:500]
            self._counted.add(kept)
        if metrics is None:
            return
        with metrics.lock:
            metrics_key = (key[0], key[1], version)
            counted = metrics.counted.get(metrics_key)
            if counted is None:
                counted = metrics.counted[metrics_key] = new_slots()
            status = statuses[0]
            if statuses.count(status) == n:
                counted[CLASS_SLOT.get(status // 100, FAILURES - 1)] += n
            else:
                for klass, k in Counter(map(floordiv, statuses, repeat(100))).items():
                    counted[CLASS_SLOT.get(klass, FAILURES - 1)] += k
            counted[FAILURES] += failures
            # added one by one in order, as `record` does: the same float sum to the last bit
            counted[SECONDS] = _sum_in_order(seconds, counted[SECONDS])
            if max(seconds) <= FIRST_BOUND:  # most drains: all in the first bucket
                counted[FIRST_BUCKET] += n
            else:
                for bucket, k in Counter(map(bisect_left, repeat(BUCKETS), seconds)).items():
                    counted[FIRST_BUCKET + bucket] += k

    def recent(self, gateway: str, name: str) -> list[InvocationLog]:
        with self.lock:
            self._drain()
            kept = self._kept.get((gateway, name))
            return [] if kept is None else list(map(InvocationLog._make, kept.ring))

    def take_counts(self) -> list[FunctionCounts]:
        """The counts that changed since the last call (the watcher reports them with its heartbeat)."""
        with self.lock:
            self._drain()
            changed, self._counted = self._counted, set()
            return [
                FunctionCounts(*kept.key, c.version, c.requests, c.errors, c.last_error)
                for kept in sorted(changed, key=_by_key)
                if (c := kept.counts) is not None
            ]

    def take_outbox(self) -> tuple[OutboxColumns, int]:
        """The invocations queued since the last call, as columns in the order queued (their
        gateways, names, then each field of their entries: `OutboxColumns`), and how many a full
        outbox dropped meanwhile."""
        with self.lock:
            self._drain()
            chunks, self._outbox, self._queued = self._outbox, [], 0
            dropped_total = self._dropped
            dropped, self._dropped_taken = dropped_total - self._dropped_taken, dropped_total
        if len(chunks) == 1:  # the drain's lists themselves: none else holds them now
            return chunks[0], dropped
        columns: list[list[Any]] = [[] for _ in PENDING_FIELDS[:_SECONDS]]
        for chunk in chunks:  # a drain's each: a copy in C a column
            for column, part in zip(columns, chunk, strict=True):
                column += part
        return tuple(columns), dropped

    def forget(self, gateway: str, name: str) -> None:
        with self.lock:
            self._drain()
            kept = self._kept.pop((gateway, name), None)
            if kept is not None:
                self._counted.discard(kept)


def _by_key(kept: _Kept) -> tuple[str, str]:
    return kept.key


class RunningCall(NamedTuple):  # a tuple: made on every sync call, so cheap to make
    """A sync `main` running on a thread now: what the watchdog checks against its time limit."""

    live: LiveVersion
    request_id: str
    since: float  # time.monotonic() when it started


class RunningCalls:
    """The sync calls running now, by thread. The invoker records each one for as long as its thread
    runs it (past its 504 too, until `main` returns), so the watchdog reads this record instead of the
    thread pool's internals."""

    def __init__(self) -> None:
        self._by_thread: dict[int, RunningCall] = {}

    def run(self, live: LiveVersion, ctx: Context) -> Any:
        """Call `live.main(ctx)` on this thread, recorded while it runs."""
        ident = threading.get_ident()
        self._by_thread[ident] = RunningCall(live, ctx.request_id, time.monotonic())
        try:
            return live.main(ctx)
        finally:
            del self._by_thread[ident]

    def now(self) -> dict[int, RunningCall]:
        """Thread ident -> the call it runs, as of now (a copy: the threads go on meanwhile)."""
        return self._by_thread.copy()


running_calls = RunningCalls()  # the process's: every sync call `invoke` runs is recorded here


_new_tuple = tuple.__new__


class Expired(Exception):
    """An invocation ran past its function's time limit."""


async def _with_timeout(call: Awaitable[Any], timeout_s: float) -> Any:
    deadline = asyncio.timeout(timeout_s)
    try:
        async with deadline:
            return await call
    except TimeoutError:
        if deadline.expired():
            raise Expired from None
        raise


class Deadlines:
    """Cancels invocations that outlive their time limit. One sweeper task per event loop, waking every
    `tick_s` while anything is in flight, instead of a timer per request (a timer costs about as much as
    the rest of the runtime's per-request work). Limits are honoured to within `tick_s`."""

    def __init__(self, tick_s: float = 0.01) -> None:
        self.tick_s = tick_s
        # `invoke` reads and writes these two itself, inline around its await (methods were two frames
        # on every request, a coroutine of their own one more): task -> its deadline, a
        # `time.perf_counter()` time (the clock `invoke` reads anyway to time the call) ...
        self.pending: dict[asyncio.Task[Any], float] = {}
        self.expired: set[asyncio.Task[Any]] = set()  # ... and the tasks the sweeper cancelled for it
        self.sweeper: asyncio.Task[None] | None = None  # runs while anything is pending

    def sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start the sweeper on `loop` unless it runs (`invoke`, after adding a pending deadline)."""
        if self.sweeper is None:
            self.sweeper = loop.create_task(self._sweep())

    def forgive(self, task: asyncio.Task[Any]) -> None:
        """`task`, cancelled for its deadline, is done waiting: undo the sweeper's cancellation so that
        it can still answer 504 (`invoke`, for an expired task only)."""
        self.expired.discard(task)
        task.uncancel()

    async def _sweep(self) -> None:
        try:
            while self.pending:
                await asyncio.sleep(self.tick_s)
                now = time.perf_counter()
                pending = self.pending
                # most ticks under load find nothing due: `min` in C over the deadlines, not a step in
                # Python over each request in flight (dozens, a hundred times a second)
                if not pending or min(pending.values()) > now:
                    continue
                for task, deadline in list(pending.items()):
                    if deadline <= now:
                        del self.pending[task]
                        self.expired.add(task)
                        task.cancel()
        finally:
            self.sweeper = None


def error_body(code: str, message: str, request_id: str | None = None) -> bytes:
    error: dict[str, str] = {"code": code, "message": message}
    if request_id is not None:
        error["request_id"] = request_id
    return json.dumps({"error": error}).encode()


def _header_map(ctx: RequestContext) -> dict[str, str]:
    """`ctx.headers` from the request's raw headers: names lowercased, a repeated header's values
    joined as HTTP allows."""
    header_map: dict[str, str] = {}
    raw_key: bytes | str
    raw_value: bytes | str
    for raw_key, raw_value in ctx._raw_headers:  # a loop, not a comprehension: in 3.11 that is a call more
        # RSGI's are text already, names lowercased; ASGI's bytes
        key = raw_key if isinstance(raw_key, str) else raw_key.decode("latin-1").lower()
        value = raw_value if isinstance(raw_value, str) else raw_value.decode("latin-1")
        header_map[key] = f"{header_map[key]}, {value}" if key in header_map else value
    return header_map


def _query(ctx: RequestContext) -> dict[str, str]:
    raw = ctx._query_string
    if not raw:
        return {}
    query_string = raw if isinstance(raw, str) else raw.decode("latin-1")  # RSGI's is text already
    return dict(parse_qsl(query_string, keep_blank_values=True))


class _OnFirstRead:
    """A `ctx` field made the first time the function reads it, then an ordinary attribute (a non-data
    descriptor: the instance's own value, once set, is found first). Most functions never read their
    headers or log a line; building them cost every request about a tenth of the app's time."""

    __slots__ = ("make", "name")

    def __init__(self, make: Callable[[RequestContext], Any]) -> None:
        self.make = make
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, ctx: RequestContext | None, owner: type | None = None) -> Any:
        if ctx is None:
            return self
        value = self.make(ctx)
        setattr(ctx, self.name, value)  # the instance's own now (its inline values: no dict made)
        return value


_UNSET: Any = object()  # `ctx.log` not read nor set yet


def _get_log(ctx: RequestContext) -> Any:
    log = ctx._log
    if log is _UNSET:
        log = ctx._log = Log()
    return log


def _set_log(ctx: RequestContext, log: Any) -> None:
    ctx._log = log


def _del_log(ctx: RequestContext) -> None:
    if ctx._log is _UNSET:
        raise AttributeError("log")
    ctx._log = _UNSET


class RequestContext(Context):
    """The `ctx` the runtime passes: a `Context` (same fields, same dataclass methods; `replace` and
    `Context(...)` positional construction still work) whose `headers`, `query` and `log` are made on
    first read. Made by `invoke` without an `__init__` call, its fields set one by one as attributes
    (kept in the object itself, where a dict of eleven fields cost about 3,000 instructions a request;
    BENCHMARKS.md, "invfast"); `trigger` only when a schedule runs it (the class's None otherwise).

    `log` is a property over `_log` so that `invoke` reads what the function logged, or the log it
    set, without making one for a function that did neither (one attribute read)."""

    headers = _OnFirstRead(_header_map)  # a field, made when read
    query = _OnFirstRead(_query)  # a field, made when read
    log = property(_get_log, _set_log, _del_log)  # a field, made when read
    _log: Any = _UNSET
    _raw_headers: RawHeaders = ()
    _query_string: bytes | str = b""  # ASGI's or RSGI's


_new_object = object.__new__
# the clocks and the running loop, read on every request: one global look-up each, not two
_wall_time = time.time
_perf_counter = time.perf_counter
_running_loop = asyncio.get_running_loop


Send = Callable[[Any], Awaitable[None]]  # an ASGI send


@overload
async def invoke(
    live: LiveVersion,
    method: str,
    path: str,
    request_id: str,
    query_string: bytes | str = b"",
    headers: RawHeaders = (),
    body: bytes = b"",
    executor: Executor | None = None,
    logs: InvocationLogs | None = None,
    deadlines: Deadlines | None = None,
    trigger: TriggerInfo | None = None,
    settings: tuple[Mapping[str, Any], Mapping[str, str]] | None = None,
    count: bool = True,
    metrics: RequestMetrics | None = None,
    send: None = None,
    proto: None = None,
) -> Outcome: ...


@overload
async def invoke(
    live: LiveVersion,
    method: str,
    path: str,
    request_id: str,
    query_string: bytes | str,
    headers: RawHeaders,
    body: bytes,
    executor: Executor | None,
    logs: InvocationLogs | None,
    deadlines: Deadlines | None,
    trigger: TriggerInfo | None,
    settings: tuple[Mapping[str, Any], Mapping[str, str]] | None,
    count: bool,
    metrics: RequestMetrics | None,
    send: Send,
    proto: None = None,
) -> None: ...


@overload
async def invoke(
    live: LiveVersion,
    method: str,
    path: str,
    request_id: str,
    query_string: bytes | str,
    headers: RawHeaders,
    body: bytes,
    executor: Executor | None,
    logs: InvocationLogs | None,
    deadlines: Deadlines | None,
    trigger: TriggerInfo | None,
    settings: tuple[Mapping[str, Any], Mapping[str, str]] | None,
    count: bool,
    metrics: RequestMetrics | None,
    send: None,
    proto: HTTPProtocol,
) -> None: ...


async def invoke(
    live: LiveVersion,
    method: str,
    path: str,
    request_id: str,
    query_string: bytes | str = b"",
    headers: RawHeaders = (),
    body: bytes = b"",
    executor: Executor | None = None,
    logs: InvocationLogs | None = None,
    deadlines: Deadlines | None = None,
    trigger: TriggerInfo | None = None,
    settings: tuple[Mapping[str, Any], Mapping[str, str]] | None = None,
    count: bool = True,
    metrics: RequestMetrics | None = None,
    send: Send | None = None,
    proto: HTTPProtocol | None = None,
) -> Outcome | None:
    """Run `live.main` for one request. A sync `main` runs in `executor` (a bounded thread pool).
    `deadlines` enforces the time limit more cheaply than a timer per call (the app has one).
    `trigger`: the schedule that runs it (`ctx.trigger`); only the runtime's guarded internal
    endpoint passes one, so no HTTP client can pose as a schedule. `metrics`: where the request is
    counted for /metrics (with the invocation log's record, one call), and held in its `in_flight`
    meanwhile. `send`: an ASGI send, to answer the request with the outcome here (the app's common
    request: its coroutine is this one, no coroutine of the app's own around it). Positional on the
    app's hot path (a dozen keyword arguments cost a call's matching of each). `proto`: an RSGI
    request's protocol, to answer it here instead (`RuntimeApp.__rsgi__`: no ASGI message is built)."""
    started_at = _wall_time()
    started = _perf_counter()
    # `ctx`, made here (not by a function of its own: its call cost 450-780 instructions a request)
    if settings is None:
        config: Mapping[str, Any] = live.config
        secrets: Mapping[str, str] = Settings({}, kind="secret", env=live.env)
    else:
        config, secrets = settings
    ctx = _new_object(RequestContext)
    ctx.method = method
    ctx.path = path
    ctx.body = body
    ctx.env = live.env
    ctx.function = live.info
    ctx.config = config
    ctx.request_id = request_id
    if trigger is not None:
        ctx.trigger = trigger
    ctx.secrets = secrets
    ctx._raw_headers = headers
    ctx._query_string = query_string
    error: str | None = None
    out_headers: Sequence[tuple[str, str]]
    if metrics is not None:
        metrics.in_flight += 1
    try:
        if live.is_async:
            call = live.main(ctx)
        else:
            call = _running_loop().run_in_executor(executor, running_calls.run, live, ctx)
        task = RUNNING_TASKS.get(_running_loop()) if deadlines is not None else None
        if deadlines is None or task is None:
            result = await _with_timeout(call, live.timeout_s)
        else:  # the deadline kept inline (see `Deadlines`): no coroutine or method call of its own
            deadlines.pending[task] = started + live.timeout_s
            if deadlines.sweeper is None:
                deadlines.sweep(task.get_loop())
            try:
                result = await call
            except asyncio.CancelledError:
                if task not in deadlines.expired:
                    raise
                raise Expired from None
            finally:
                # still pending: not expired (the sweeper moves a task from `pending` to `expired`)
                if deadlines.pending.pop(task, None) is None and task in deadlines.expired:
                    deadlines.forgive(task)
        if result.__class__ is dict:  # what most functions return, encoded here by orjson: two calls less
            try:
                status, out_headers, out_body = 200, JSON_HEADERS, _orjson_dumps(result, None, ORJSON_OPTIONS)
            except TypeError:  # orjson refused: `answer_json`'s standard library answers, or says why
                status, out_headers, out_body = to_response(result)
        else:
            status, out_headers, out_body = to_response(result)
    except HTTPError as exc:
        status, out_headers, out_body = _http_error(exc)
    except asyncio.CancelledError:
        if metrics is not None:
            metrics.in_flight -= 1
        raise  # the client went away or the server is stopping: nothing to answer
    except BaseException as exc:  # SystemExit too: a function must not stop the runtime
        if isinstance(exc, Expired):
            message = f"function {live.name} did not answer within {live.timeout_s:g} s"
            status, out_body, error = 504, error_body("timeout", message, request_id), message
            logger.warning(
                "%s (gateway %s, version %d, request %s)", message, live.gateway, live.version, request_id
            )
        else:
            message = f"function {live.name} failed; see its logs for request {request_id}"
            status, out_body = 500, error_body("function_failed", message, request_id)
            error = f"{describe_exception(exc, live.files)}\n{format_traceback(exc, live.files)}"
            logger.error(
                "function %s (gateway %s, version %d) failed, request %s\n%s",
                live.name,
                live.gateway,
                live.version,
                request_id,
                error,
            )
        out_headers = [("content-type", JSON)]
    seconds = _perf_counter() - started
    log = ctx._log  # made only if the function read `ctx.log` (or set it)
    # nothing logged: the shared empty tuple, not a new list, so that the log entry holds only atomic
    # values and the collector stops tracking it (see `NO_LINES`)
    lines: Sequence[str]
    if log is _UNSET or log is None:
        lines = NO_LINES
    else:
        lines = log.lines
        if lines.__class__ is not list:  # the function's own list, replaced: a message of it would be refused
            lines = [f"(ctx.log.lines was replaced by a {type(lines).__name__}: its lines are not kept)"]
    # the log entry's fields in `InvocationLog`'s order (`LogEntry`): queued flat, or a plain tuple (the
    # collector untracks an exact tuple of atomic values, never a NamedTuple's); `recent` makes the
    # named form when read
    if logs is not None:
        trigger_name = trigger.name if trigger is not None else None
        version = live.version
        if count and metrics is logs.metrics:  # the app's request: queued, taken in bulk when read
            pending = logs.pending
            pending += (  # PENDING_FIELDS: the entry's fields flat, no tuple of its own
                live.gateway,
                live.name,
                request_id,
                started_at,
                version,
                status,
                seconds * 1000,
                lines,
                error,
                trigger_name,
                seconds,
            )
            if len(pending) >= DRAIN_AT:
                logs.drain()
        else:
            entry = (request_id, started_at, version, status, seconds * 1000, lines, error, trigger_name)
            logs.record(live.gateway, live.name, entry, count, metrics, seconds)
    if metrics is not None:
        metrics.in_flight -= 1
    if proto is not None:  # granian frames the body itself: no content-length to build
        if out_headers is JSON_HEADERS:  # most functions' answer: its one header is known already
            text_headers = [
                _JSON_TEXT_HEADER,
                ("x-fnstage-version", str(live.version)),
                ("x-request-id", request_id),
            ]
        else:
            text_headers = [
                *out_headers,
                ("x-fnstage-version", str(live.version)),
                ("x-request-id", request_id),
            ]
        proto.response_bytes(status, text_headers, out_body)
        return None
    if send is not None:
        if out_headers is JSON_HEADERS:  # most functions' answer: its one header is known already
            headers = [
                _JSON_HEADER,
                _VERSION_HEADERS.get(live.version) or _version_header(live.version),
                (b"content-length", b"%d" % len(out_body)),
                (b"x-request-id", request_id.encode()),
            ]
        else:
            headers = response_headers(live, out_headers, out_body, request_id)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": out_body})
        return None  # an ASGI app's coroutine returns None (servers say so when it does not)
    return _new_tuple(Outcome, (status, out_headers, out_body, lines, error, seconds))


_JSON_HEADER = (b"content-type", JSON.encode())
_JSON_TEXT_HEADER = ("content-type", JSON)
# version -> its `x-fnstage-version` header as the app sends it: made once, not formatted per request
_VERSION_HEADERS: dict[int, tuple[bytes, bytes]] = {}
_VERSION_HEADERS_SIZE = 4096  # bounded: versions only go up


def _version_header(version: int) -> tuple[bytes, bytes]:
    if len(_VERSION_HEADERS) >= _VERSION_HEADERS_SIZE:
        _VERSION_HEADERS.clear()
    header = _VERSION_HEADERS[version] = (b"x-fnstage-version", b"%d" % version)
    return header


def response_headers(
    live: LiveVersion, headers: Sequence[tuple[str, str]], body: bytes, request_id: str
) -> list[tuple[bytes, bytes]]:
    """An answer's headers as the app sends them: the function's, then the version, the length and
    the request id. `JSON_HEADERS` (a dict or list answer's) is known by identity: sent as bytes made
    once. Values go as UTF-8, as granian sends an RSGI cell's text: a client gets the same bytes from
    a cell of either interface (`é` is `\xc3\xa9`, never latin-1's `\xe9`)."""
    if headers is JSON_HEADERS:
        out = [_JSON_HEADER]
    else:
        out = [(k.encode("latin-1"), v.encode()) for k, v in headers]
    out += (
        (b"x-fnstage-version", b"%d" % live.version),
        (b"content-length", b"%d" % len(body)),
        (b"x-request-id", request_id.encode()),
    )
    return out


def _http_error(exc: HTTPError) -> tuple[int, Headers, bytes]:
    status = exc.status if isinstance(exc.status, int) and 400 <= exc.status <= 599 else 500
    headers = _safe_headers(exc.headers)
    headers.append(("content-type", JSON))
    return status, headers, error_body("function_error", exc.message)


def to_response(result: Any) -> tuple[int, Sequence[tuple[str, str]], bytes]:
    """What `main` returned -> (status, headers, body). Raises TypeError for something unanswerable."""
    kind = type(result)
    if kind is dict or kind is list:  # what most functions return: encoded here, one call less
        try:
            return 200, JSON_HEADERS, answer_json(result)
        except (TypeError, ValueError, RecursionError):
            pass  # not JSON after all: `_encode` below fails the same way and says why
    if isinstance(result, Response):
        if not isinstance(result.status, int) or not 100 <= result.status <= 599:
            raise TypeError(f"Response.status must be an HTTP status code, not {result.status!r}")
        headers = _safe_headers(result.headers)
        if result.body is None or result.body == b"":
            return result.status, headers, b""
        content_type, body = _encode(result.body)
        if not any(k.lower() == "content-type" for k, _ in headers):
            headers.append(("content-type", content_type))
        return result.status, headers, body
    if result is None:
        return 204, [], b""
    content_type, body = _encode(result)
    return 200, [("content-type", content_type)], body


def _encode(value: Any) -> tuple[str, bytes]:
    if isinstance(value, str):
        return TEXT, value.encode("utf-8")
    if isinstance(value, (bytes, bytearray, memoryview)):  # a tuple: faster than a union here
        return BINARY, bytes(value)
    try:
        return JSON, answer_json(value)
    except (TypeError, ValueError, RecursionError) as exc:
        why = "it refers to itself, or is nested too deeply" if isinstance(exc, RecursionError) else exc
        raise TypeError(
            f"main returned {type(value).__name__}, which is not JSON: return a dict, list, str, bytes, "
            f"None or fnstage.Response ({why})"
        ) from None


_FRAMING = frozenset({"content-length", "transfer-encoding", "connection"})


def _safe_headers(headers: Mapping[str, str] | None) -> Headers:
    """The function's headers, minus framing ones (the runtime sets those) and any that could split
    the response (CR or LF) or hold characters beyond latin-1 (HTTP's field values are bytes; those
    in latin-1's range are sent as UTF-8: `response_headers`)."""
    safe = []
    for key, value in (headers or {}).items():
        key, value = str(key).lower(), str(value)
        if key in _FRAMING or "\r" in key or "\n" in key or "\r" in value or "\n" in value:
            continue
        if not (key.isascii() and _is_latin1(value)):
            continue
        safe.append((key, value))
    return safe


def _is_latin1(text: str) -> bool:
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True
