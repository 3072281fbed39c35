"""A cell: the only kind of process that runs function code.

One cell serves the functions of one (gateway, environment). It is forked from a forkserver that has
already imported the runtime (so it starts in milliseconds and shares those pages), sandboxes itself
before it touches any function code (`runtime.sandbox`), then serves HTTP itself on its own Unix
socket or port with granian, embedded in the cell's event loop. It has no database, no token, no
data folder: its supervisor sends it the rows to load over a private channel (`runtime.channel`), and
it answers with load results and request counts. When the supervisor goes, the cell goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import importlib
import itertools
import json
import logging
import os
import socket
import sys
import threading
import time
from bisect import bisect_left
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from itertools import accumulate, chain, compress, groupby, repeat
from multiprocessing.connection import Connection
from operator import add
from pathlib import Path
from typing import Any, cast

from orjson import dumps as _orjson_dumps

from fnstage.runtime.answer_json import ORJSON_OPTIONS
from fnstage.runtime.app import DEFAULT_MAX_BODY_BYTES, RuntimeApp
from fnstage.runtime.channel import CellEnd, ChannelClosed
from fnstage.runtime.configuration import CellConfiguration
from fnstage.runtime.invoker import InvocationLogs, OutboxColumns
from fnstage.runtime.loader import DEFAULT_LOAD_TIMEOUT_S, LiveVersion, LoadError, load_each, load_rows
from fnstage.runtime.log_format import configure
from fnstage.runtime.registry import Registry
from fnstage.runtime.request_metrics import RequestMetrics
from fnstage.runtime.router import Router
from fnstage.runtime.split import Split
from fnstage.runtime.versions import ExtraVersions, VersionUnavailable
from fnstage.runtime.watchdog import Watchdog, WatchdogSettings
from fnstage.runtime.zygote import passed_to_cells
from fnstage.store.records import PublishedFunction, published_from_fields

logger = logging.getLogger("fnstage.runtime")

COUNTS_INTERVAL_S = 3.0
SPLIT_COUNTS_INTERVAL_S = 1.0
# the collector's first threshold in a cell (Python's default: 700). Under load, every young collection
# walks the requests in flight (their coroutines, tasks, `ctx`), which a collection cannot free: at 700
# allocations it ran every few dozen requests (BENCHMARKS.md, "A cell speaks RSGI")
GC_YOUNG_THRESHOLD = 10_000
LOGS_INTERVAL_S = 0.2  # how often a cell ships its invocations to the log writer (`--follow` < 1 s)
LOG_OUTBOX = 20_000  # invocations a cell queues between two shipments; past it, dropped and counted
LOG_MESSAGE_BYTES = 32 * 1024  # one shipment is cut into messages of about this many characters
# one invocation's lines in a message, at most (a message must fit the socket's buffer: 416 KB with
# Linux's default wmem_max); longer ones are cut, as the writer cuts them past 1,000,000
LOG_ROW_LINES_CHARS = 150_000
LOG_ROW_ERROR_CHARS = 20_000  # the writer keeps as much of a traceback
LOG_SEND_TIMEOUT_S = 1.0  # a socket full this long (the writer behind, or down): the shipment is dropped
LOG_ROW_BYTES = 100  # what a row counts towards LOG_MESSAGE_BYTES, besides its lines and error
# a float's int, as `int(x)` (the same errors for NaN and the infinities): a method's C call, not a
# type's (`int` through `type_call`: 2.4x the time a value)
_TRUNC = float.__trunc__
_PR_SET_CHILD_SUBREAPER = 36
PENDING = -1  # a deferred load's answer: held, not run yet (`SupervisorLink._defer`)
# pending rows the warm-up tells the supervisor it may run next (`warming`: if the cell dies, each is
# tried alone); a request's row goes before the rest of them (`_take_pending`)
WARM_CHUNK = 16
# while the warm-up runs, a thread waiting for the interpreter lock (the event loop with a request that
# waits for its load) gets it within this long, not CPython's default 5 ms
WARM_SWITCH_INTERVAL_S = 0.0001
WARM_PROGRESS = 5000  # warm-up loads between two "pending" counts sent to the supervisor
WARMED_MESSAGE = 250  # rows of a `warmed` message (about 0.2 ms of encoding with the interpreter lock)


@dataclass(frozen=True)
class CellSpec:
    """Everything a cell needs, sent by its supervisor: no credentials among it."""

    gateway: str
    env: str
    temp_dir: Path  # private, writable; the Unix socket lives here when `uds` is set
    control_key: str  # guards the cell's /_fnstage/ endpoints (the control plane reads logs with it)
    host: str = "127.0.0.1"
    port: int | None = None  # serve on host:port (the supervisor uses `uds` for all its cells now)
    uds: Path | None = None  # or on this Unix socket (behind the supervisor's front)
    domain: str = "localhost"
    bound: bool = True  # routes as a runtime bound to its gateway (`/ENV/PATH`); False: `/GW/ENV/PATH`
    sandbox: bool = True
    log_level: str = "warning"
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    load_timeout_s: float = DEFAULT_LOAD_TIMEOUT_S
    watchdog: WatchdogSettings = field(default_factory=WatchdogSettings.from_env)
    ship_logs: bool = False  # send every invocation to the supervisor (it keeps durable logs)
    log_keep: int = 0  # the log's count bound: a shipment has each function's newest this many (0: all)
    metrics: bool = True  # count requests per version for the supervisor's /metrics (--metrics-port)
    log_format: str = "text"  # or "json" (runtime.log_format)
    lock: str = ""  # the dependency lock this cell runs ("": none)
    site_packages: Path | None = None  # that lock's environment: first on sys.path, readable in the sandbox
    # a lock's cell of an --env runtime: its environment's cell (which forwards its functions' requests)
    # may connect to its socket (`sandbox.SandboxPolicy.share_gid`); behind a front only the front may
    shared_with_env_cell: bool = False
    # alone on a runtime's public port: function requests wait until the supervisor says `serve` (it
    # holds its functions), as the front waits for a cell (`RuntimeApp.hold`); behind a front: False
    held: bool = False
    # a fresh cell's first bulk load (a cold start's published versions) is held pending and answered at
    # once; they are loaded in the background, a request to one first (`SupervisorLink._defer`)
    defer_cold_start: bool = False
    interface: str = "rsgi"  # what the cell's server speaks: "rsgi" or "asgi" (`server.cell_interface`)

    @property
    def key(self) -> str:
        return f"{self.gateway}/{self.env}" + (f"@{self.lock[:12]}" if self.lock else "")

    @property
    def slot(self) -> tuple[str, str, str]:
        return (self.gateway, self.env, self.lock)


def preload() -> None:
    """Import, once in the zygote, everything a cell imports when it starts, so that each forked cell
    finds it imported (and shares its pages) instead of reading and running it again: granian's
    embedded server, uvloop and the sandbox were about 40 of the 55 ms of a cell's start on a quiet
    machine (BENCHMARKS.md, "Cells")."""
    import uvloop  # noqa: F401

    import fnstage.runtime.cell_server
    import fnstage.runtime.sandbox  # noqa: F401


def run_cell(spec: CellSpec, conn: Connection, log_fd: int | None = None) -> None:
    """The cell process's target (forked from the forkserver): sandbox, then serve until told to stop
    or until the supervisor is gone. `log_fd`: the cell's socket to the log writer (`log_process`)."""
    configure(spec.log_level, spec.log_format, cell=os.getpid())
    # orphans of the function's children stay under the cell (not init) while it lives; its zygote kills
    # whatever is left when it ends
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1)
    channel = CellEnd(conn)
    kept = [conn.fileno(), 0, 1, 2] + ([log_fd] if log_fd is not None else [])
    sandbox = _sandbox(spec, keep_fds=kept)
    if spec.site_packages is not None:
        # the lock's packages come before anything the runtime's own interpreter has installed
        sys.path.insert(0, str(spec.site_packages))
        importlib.invalidate_caches()
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        runner = asyncio.run
    sender = LogSender(socket.socket(fileno=log_fd)) if log_fd is not None and spec.ship_logs else None
    runner(_serve(spec, channel, sandbox, sender))
    os._exit(0)  # granian's threads and the function threads must not hold the exit


def _sandbox(spec: CellSpec, keep_fds: list[int]) -> dict[str, Any]:
    from fnstage.runtime import sandbox

    if not spec.sandbox:
        return {"protections": {}, "missing": ["sandbox: turned off for this runtime"]}
    extra = [spec.site_packages] if spec.site_packages is not None else []
    share_with = f"{spec.gateway}/{spec.env}" if spec.shared_with_env_cell else None
    policy = sandbox.default_policy(
        spec.temp_dir, key=spec.key, keep_fds=keep_fds, extra_read=extra, share_with=share_with
    )
    if policy.max_data_bytes is not None:
        # the watchdog's headroom (FNSTAGE_WORKER_MEMORY_MB) over what the cell holds now; 0: no limit
        headroom = spec.watchdog.memory_mb
        limit = _data_bytes() + headroom * 1024 * 1024 if headroom else None
        policy = replace(policy, max_data_bytes=limit)
    passed = {name: os.environ[name] for name in passed_to_cells(os.environ) if name in os.environ}
    report = sandbox.apply(policy)
    os.environ.update(passed)  # what the operator gives function code, by name (FNSTAGE_CELL_ENV)
    return {"protections": report.as_dict()["protections"], "missing": [str(p) for p in report.missing]}


def _data_bytes() -> int:
    """The private data this process has mapped (what RLIMIT_DATA counts), read before Landlock closes
    /proc to the cell."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmData:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


async def _serve(
    spec: CellSpec, channel: CellEnd, sandbox: dict[str, Any], sender: LogSender | None = None
) -> None:
    from granian.constants import HTTPModes, Interfaces
    from granian.log import LogLevels

    from fnstage.runtime.cell_server import ListeningServer, listen

    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    registry = Registry()
    logs = InvocationLogs(outbox=LOG_OUTBOX if sender is not None else 0)
    configuration = CellConfiguration(spec.env)
    link = SupervisorLink(channel, registry, logs, sandbox, spec.load_timeout_s, configuration)
    link.log_sender = sender
    link.log_keep = spec.log_keep
    link.defer_cold_start = spec.defer_cold_start
    link.metrics = RequestMetrics() if spec.metrics else None
    # the memory limit is the sandbox's (RLIMIT_DATA, set before the cell dropped its privileges)
    watchdog = Watchdog(
        replace(spec.watchdog, memory_mb=0, events_path=None),
        on_event=link.event,
        respawn_guard=False,
    )
    app = RuntimeApp(
        registry,
        # the request as its client sent it: host `{gateway}.{env}.<domain>`, or the path form of a
        # runtime bound to its gateway (`/ENV/PATH`) or serving every gateway (`/GATEWAY/ENV/PATH`)
        Router(domain=spec.domain, gateway=spec.gateway if spec.bound else None),
        watcher=link,
        watchdog=watchdog,
        logs=logs,
        max_body_bytes=spec.max_body_bytes,
        internal_token=spec.control_key,
        versions=link.versions,
        configuration=configuration,
        metrics=link.metrics,
    )
    # listening before `app.start()` says ready: the front routes to this cell from then on
    listener = listen(uds=spec.uds, host=spec.host, port=spec.port)
    if spec.uds is not None and spec.shared_with_env_cell:
        os.chmod(spec.uds, 0o660)  # its group (the environment cell's, by the folder's setgid) connects
    server = ListeningServer(
        app,
        listener,
        interface=Interfaces.RSGI if spec.interface == "rsgi" else Interfaces.ASGI,
        http=HTTPModes.http1,
        websockets=False,
        log_enabled=False,
        log_level=LogLevels(spec.log_level),
        log_access=False,
    )
    link.stop_server = server.stop
    link.app = app
    app.load_pending = link.load_pending
    if spec.held:
        app.hold()
        # alone on a runtime's public port (no front): a carrier of raw headers there is a client's
        app.trusts_carrier = False
    if spec.interface != "rsgi":
        await server.serve()  # ASGI's lifespan starts the app (the supervisor hears "ready") and stops it
        return
    # RSGI has no lifespan: the app starts (and the supervisor hears "ready") while the socket
    # listens, before granian serves; connections meanwhile wait in the kernel's queue, as before
    await app.start()
    try:
        await server.serve()
    finally:
        await app.stop()


class SupervisorLink:
    """The cell's side of the channel, run for the app's lifetime (its lifespan starts and stops it).

    A thread reads the supervisor's commands: `load` (rows: load each, swap it in, answer with the
    results), `config` (this environment's configuration and secrets: a new snapshot), `remove`,
    `forwards` (functions of this environment that run in a lock's cell: forward them there), `serve`
    (a held cell now holds its functions: answer requests), `fail`
    (a load the supervisor saw kill this cell: answer 503 for it) and `stop`. Counts of requests per
    live version go back every few seconds."""

    log_keep = 0  # a shipment's invocations per function, at most (`CellSpec.log_keep`); 0: all
    defer_cold_start = False  # `CellSpec.defer_cold_start`

    def __init__(
        self,
        channel: CellEnd,
        registry: Registry,
        logs: InvocationLogs,
        sandbox: dict[str, Any],
        load_timeout_s: float | None,
        configuration: CellConfiguration | None = None,
    ) -> None:
        self.channel = channel
        self.configuration = configuration
        self.registry = registry
        self.logs = logs
        self.sandbox = sandbox
        self.load_timeout_s = load_timeout_s
        self.stop_server: Any = None
        self.app: RuntimeApp | None = None  # set once made: canary splits are the app's
        self._loop: asyncio.AbstractEventLoop | None = None
        self._counts_task: asyncio.Task[None] | None = None
        self._shipping = threading.Event()  # set: stop shipping
        self._ship_lock = threading.Lock()
        self.loads = 0
        self.versions = ExtraVersions(self.fetch_version)
        self._wanted: dict[int, asyncio.Future[LiveVersion]] = {}
        self._wants = itertools.count(1)
        self._frozen = False  # a bulk load's objects are frozen (gc.freeze) until the next change
        self.metrics: RequestMetrics | None = None  # what the cell counts for /metrics, sent with the counts
        self.log_sender: LogSender | None = None  # where invocations go when durable logs are on
        self._in_flight_sent = 0
        # a deferred cold start (`_defer`): the pending rows in the order they came, those a request
        # waits for (loaded first), and the requests' futures per function; all under `_warm_lock`
        self._warm: deque[PublishedFunction] = deque()
        self._asked: deque[PublishedFunction] = deque()
        self._waiters: dict[tuple[str, str], list[asyncio.Future[None]]] = {}
        # pending rows the warm-up loaded and made live, not yet told (`_send_warmed`; warm-up thread)
        self._warmed: list[list[Any]] = []
        self._chunk: deque[PublishedFunction] = deque()  # the warm-up's next rows, told as `warming`
        self._warm_lock = threading.Lock()
        self._warm_wake = threading.Event()
        self._report_wake = threading.Event()  # `_report_warm_up`: tell what the warm-up loaded
        self._warmer: threading.Thread | None = None
        self._warming = False  # the supervisor said its cold start's last batch was answered ("warm")

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        threading.Thread(target=self._read, name="fnstage-cell-link", daemon=True).start()
        self._counts_task = asyncio.create_task(self._send_counts())
        if self.logs.outbox_size:  # a thread: a writer slow to read never holds the event loop
            threading.Thread(target=self._ship_logs, name="fnstage-cell-logs", daemon=True).start()
        self.channel.send({"t": "ready", "pid": os.getpid(), "sandbox": self.sandbox})

    async def stop(self) -> None:
        if self._counts_task is not None:
            self._counts_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._counts_task
        self._shipping.set()
        if self.logs.outbox_size:
            self.ship_logs()  # what the last requests logged
        self._send_metrics()  # what the last requests counted

    def status(self) -> dict[str, Any]:
        return {
            "loads": self.loads,
            "pending": self.registry.pending_count(),  # held, not run yet: loaded on first request or soon
            "sandbox": {"missing": self.sandbox.get("missing", [])},
        }

    def event(self, event: dict[str, Any]) -> None:
        """A watchdog event: the supervisor keeps it, so status shows it after this cell is gone."""
        with contextlib.suppress(ChannelClosed):
            self.channel.send({"t": "event", "event": event})

    async def fetch_version(self, gateway: str, name: str, version: int) -> LiveVersion:
        """Ask the supervisor for a version of the history (a version URL); it answers with a row to
        load, which the reading thread loads, or why there is none."""
        assert self._loop is not None
        want = next(self._wants)
        waiting: asyncio.Future[LiveVersion] = self._loop.create_future()
        self._wanted[want] = waiting
        try:
            self.channel.send({"t": "want", "id": want, "gateway": gateway, "name": name, "version": version})
            return await waiting
        except ChannelClosed:
            raise VersionUnavailable(503, "the runtime is stopping") from None
        finally:
            self._wanted.pop(want, None)

    def _version(self, want: int, row: PublishedFunction | None, why: str | None, status: int) -> None:
        """The supervisor's answer to a `want`: load the row here (this thread), hand the result over."""
        result: LiveVersion | VersionUnavailable
        if row is None:
            result = VersionUnavailable(status, why or "no such version")
        else:
            loaded = load_rows([row], self.load_timeout_s)[0]
            if isinstance(loaded, LiveVersion):
                result = loaded
            else:
                message = f"version {row.version} of {row.name} failed to load: {loaded.summary}"
                result = VersionUnavailable(503, message)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._settle, want, result)

    def _settle(self, want: int, result: LiveVersion | VersionUnavailable) -> None:
        waiting = self._wanted.get(want)
        if waiting is None or waiting.done():
            return
        if isinstance(result, LiveVersion):
            waiting.set_result(result)
        else:
            waiting.set_exception(result)

    def _read(self) -> None:
        while True:
            try:
                message = self.channel.receive()
            except ChannelClosed:
                os._exit(0)  # the supervisor is gone: so is this cell
            kind = message[0]
            if kind == "load":  # its rows as tuples of their fields (`cells.Cell._send_load`)
                rows = list(map(published_from_fields, message[2]))
                self._load(message[1], rows, bulk=message[3], defer=message[4])
            elif kind == "remove":
                self._thaw()
                for gateway, name, version in message[1]:
                    if self.registry.remove(gateway, name, version):
                        self.logs.forget(gateway, name)
                        if self._loop is not None:
                            self._loop.call_soon_threadsafe(self.versions.forget, gateway, name)
            elif kind == "warm":  # the cold start's batches are all answered: load what is pending
                with self._warm_lock:
                    self._warming = True
                self._warm_wake.set()
            elif kind == "serve":  # this cell holds its functions: a held app lets requests through
                if self._loop is not None and self.app is not None:
                    self._loop.call_soon_threadsafe(self.app.serve)
            elif kind == "forwards":
                self._forwards(message[1], message[2])
            elif kind == "splits":
                splits = {(g, n): Split(int(st), int(ca), int(sh)) for g, n, st, ca, sh in message[1]}
                if self._loop is not None and self.app is not None:
                    self._loop.call_soon_threadsafe(self.app.set_splits, splits)
            elif kind == "version":
                _, want, row, why, status = message
                self._version(want, row, why, status)
            elif kind == "fail":
                _, gateway, name, version, summary = message
                self.registry.record_failure(gateway, name, version, LoadError(summary))
            elif kind == "config" and self.configuration is not None:
                self.configuration.apply(message[1])  # this environment's, from the supervisor only
            elif kind == "stop":
                self._stop()
                return

    def _forwards(self, batch: int, table: list[tuple[str, str, str]]) -> None:
        """Which of this environment's functions run in a lock's cell, and its socket: the app forwards
        their requests there (an --env runtime's environment cell, alone on the public port). Applied
        before the answer, so the supervisor reports a function live there only once it is routed."""
        if table:  # imported here, off the event loop: the first forwarded request does not wait for it
            importlib.import_module("fnstage.runtime.forward")
        app = self.app
        if app is not None:
            app.set_forwards({(str(g), str(name)): str(target) for g, name, target in table})
            if self._loop is not None:
                self._loop.call_soon_threadsafe(app.close_unused_pools)
        if batch:
            self.channel.send({"t": "loaded", "batch": batch, "results": []})

    def _load(self, batch: int, rows: list[PublishedFunction], *, bulk: bool, defer: bool = False) -> None:
        # `defer`: the supervisor's cold start (or a restart's reload), never a save or a resync
        if bulk and defer and self.defer_cold_start:
            self._defer(batch, rows)
            return
        # As the watcher does for a cold start (loads.BULK_LOAD): a big first load (`bulk`, said by
        # the supervisor, which sends it in several batches) runs with the collector paused, and what
        # it made is frozen, thawed again at the next change; the collections that a thousand loads
        # trigger otherwise cost about as much as the loads.
        if not bulk:
            self._thaw()
        paused = bulk and gc.isenabled()
        if paused:
            gc.disable()
        try:
            results = load_rows(rows, self.load_timeout_s)
        finally:
            if paused:
                gc.enable()
        if bulk:
            gc.freeze()
            self._frozen = True
        # a load that worked is answered by one integer, its microseconds: a cold start sends 100,000
        # of them (a float's 17 digits took longer to write and to read than the rest of the answer)
        answers: list[int | dict[str, Any]] = []
        # the supervisor decides what goes live (forward only); the cell does as it is told, a batch
        # under one taking of the registry's lock when every load of it worked (a cold start's)
        whole = not any(isinstance(result, LoadError) for result in results)
        if whole:
            self.registry.apply_many(cast("list[LiveVersion]", results), allow_older=True)
        for row, result in zip(rows, results, strict=True):
            if isinstance(result, LiveVersion):
                if not whole:
                    self.registry.apply(result, allow_older=True)
                answers.append(int(result.load_ms * 1000))
            else:
                self.registry.record_failure(row.gateway, row.name, row.version, result)
                answers.append(
                    {
                        "ok": False,
                        "summary": result.summary,
                        "traceback": result.traceback,
                        "load_ms": result.load_ms,
                    }
                )
        self.loads += len(rows)
        self.channel.send({"t": "loaded", "batch": batch, "results": answers})

    def _defer(self, batch: int, rows: list[PublishedFunction]) -> None:
        """A cold start's batch: hold its rows pending and answer at once (100,000 loads took longer
        than the rest of a start, BENCHMARKS.md). A request to one loads it first, on the warm-up
        thread; once the supervisor says its last batch is answered ("warm": the warm-up does not
        take a core from the supervisor's own part of the start), that thread loads the rest in
        order. Every row is published and servable within one load, with the load's time limit; a
        failure shows on its first request or when the warm-up reaches it, and is reported to the
        supervisor then (`failed`)."""
        self.registry.add_pending(rows)
        self.channel.send({"t": "loaded", "batch": batch, "results": [PENDING] * len(rows)})
        self._send_pending()
        with self._warm_lock:  # after the answer: a failure is never reported before its row's answer
            self._warm.extend(rows)
        if self._warmer is None:
            self._warmer = threading.Thread(target=self._warm_up, name="fnstage-cell-warm-up", daemon=True)
            self._warmer.start()
            name = "fnstage-cell-warm-report"
            threading.Thread(target=self._report_warm_up, name=name, daemon=True).start()
        self._warm_wake.set()

    def load_pending(self, gateway: str, name: str) -> asyncio.Future[None] | None:
        """On the event loop: the function is pending? Then a future done once the warm-up thread has
        loaded it (or found it replaced or removed); the caller reads the registry again. None: not
        pending. Module code never runs on the event loop."""
        assert self._loop is not None
        with self._warm_lock:
            row = self.registry.pending(gateway, name)
            if row is None:
                return None
            waiting: asyncio.Future[None] = self._loop.create_future()
            self._waiters.setdefault((gateway, name), []).append(waiting)
            self._asked.append(row)
        self._warm_wake.set()
        return waiting

    def _warm_up(self) -> None:
        """The warm-up thread: loads pending rows while there are any, one at a time (`load_each`), a
        row a request waits for before the next of the others; with the collector paused and what
        it made frozen after, as an eager cold start's loads were."""
        while True:
            self._warm_wake.wait()
            self._warm_wake.clear()
            paused = gc.isenabled()
            if paused:
                gc.disable()
            interval = sys.getswitchinterval()
            sys.setswitchinterval(min(interval, WARM_SWITCH_INTERVAL_S))
            try:
                load_each(self._take_pending, self._settle_pending, self.load_timeout_s)
            finally:
                sys.setswitchinterval(interval)
                with self._warm_lock:  # (empty unless the loading raised: its rows go back in order)
                    self._warm.extendleft(reversed(self._chunk))
                    self._chunk.clear()
                self._send_warming([])
                if paused:
                    gc.freeze()
                    self._frozen = True
                    gc.enable()
            self._report_wake.set()  # idle: what it loaded is told

    def _take_pending(self) -> PublishedFunction | None:
        """The next row to load (on the loading thread, before each load): a row a request waits for,
        else the next of the warm-up's chunk (WARM_CHUNK rows still pending, in order); None: none.
        The supervisor hears which rows may run before they do (`warming`): if one of them kills the
        cell, it tries each alone after the restart."""
        announce: list[PublishedFunction] | None = None
        pause = False
        stale: list[asyncio.Future[None]] = []
        row: PublishedFunction | None = None
        with self._warm_lock:
            pending, chunk = self.registry.pending, self._chunk
            while self._asked:
                asked = self._asked.popleft()
                if pending(asked.gateway, asked.name) is asked:
                    row = asked
                    announce = [asked, *chunk]
                    break
                # loaded meanwhile, replaced by a save or removed: its requests read the registry again
                stale += self._waiters.pop((asked.gateway, asked.name), ())
            while row is None and chunk:
                candidate = chunk.popleft()
                if pending(candidate.gateway, candidate.name) is candidate:
                    row = candidate
            if row is None and self._warming:
                warm = self._warm
                while warm and len(chunk) < WARM_CHUNK:
                    candidate = warm.popleft()
                    if pending(candidate.gateway, candidate.name) is candidate:
                        chunk.append(candidate)
                if chunk:
                    announce = list(chunk)
                    row = chunk.popleft()
                    pause = True
        if stale and self._loop is not None:
            self._loop.call_soon_threadsafe(_wake, stale)
        if announce is not None:
            self._send_warming(announce)
        if pause:  # every WARM_CHUNK loads, the interpreter lock (and this core) to whoever waits
            time.sleep(0)
        return row

    def _settle_pending(self, row: PublishedFunction, result: LiveVersion | LoadError) -> None:
        """A pending row loaded (on the loading thread, at once): live or failed, unless a save or a
        removal came first; the requests waiting for it are woken, a failure is told now, and what
        loaded is told in batches (`_report_warm_up`)."""
        with self._warm_lock:
            settled = self.registry.settle(row, result)
            woken = self._waiters.pop((row.gateway, row.name), None)
            if settled and isinstance(result, LiveVersion):
                # with its microseconds, for /metrics (an eager load's answer carries them)
                self._warmed.append([row.gateway, row.name, row.version, int(result.load_ms * 1000)])
            told = len(self._warmed) >= WARM_PROGRESS
        self.loads += 1
        if woken and self._loop is not None:
            self._loop.call_soon_threadsafe(_wake, woken)
            # this core and the interpreter lock to the event loop now, which answers the requests
            time.sleep(0)
        if settled and isinstance(result, LoadError):
            failure = [row.gateway, row.name, row.version, result.summary, result.traceback, result.load_ms]
            with contextlib.suppress(ChannelClosed):
                self.channel.send({"t": "failed", "items": [failure]})
        if told:
            self._report_wake.set()

    def _report_warm_up(self) -> None:
        """A thread of its own tells the supervisor what the warm-up loaded (every WARM_PROGRESS loads,
        and when it goes idle), so the loading thread never waits for those messages."""
        while True:
            self._report_wake.wait()
            self._report_wake.clear()
            self._send_warmed()
            self._send_pending()

    def _send_warming(self, rows: list[PublishedFunction]) -> None:
        """The pending rows being loaded now (none: the warm-up is idle)."""
        with contextlib.suppress(ChannelClosed):
            self.channel.send({"t": "warming", "rows": [[r.gateway, r.name, r.version] for r in rows]})

    def _send_warmed(self) -> None:
        """The pending rows loaded since the last time, now live: the supervisor reports them so, in
        batches (every WARM_PROGRESS loads, and when the warm-up goes idle), not a write per load.
        A batch goes in messages of WARMED_MESSAGE rows, all but the last marked `more` (the
        supervisor writes the batch once): encoding 5,000 rows in one call held the interpreter lock,
        and every request of the cell, for 2-6 ms."""
        with self._warm_lock:
            rows, self._warmed = self._warmed, []
        for start in range(0, len(rows), WARMED_MESSAGE):
            message: dict[str, Any] = {"t": "warmed", "rows": rows[start : start + WARMED_MESSAGE]}
            if start + WARMED_MESSAGE < len(rows):
                message["more"] = True
            with contextlib.suppress(ChannelClosed):
                self.channel.send(message)

    def _send_pending(self) -> None:
        """How many versions this cell holds without having run them, for the supervisor's status."""
        with contextlib.suppress(ChannelClosed):
            self.channel.send({"t": "pending", "n": self.registry.pending_count()})

    def _thaw(self) -> None:
        if self._frozen:
            self._frozen = False
            gc.unfreeze()

    def _stop(self) -> None:
        if self._loop is not None and self.stop_server is not None:
            self._loop.call_soon_threadsafe(self.stop_server)
            # a server that does not stop in time (a function holding the loop) is not waited for
            threading.Timer(10.0, os._exit, args=(0,)).start()
        else:
            os._exit(0)

    async def _send_counts(self) -> None:
        ticks = 0
        while True:
            await asyncio.sleep(SPLIT_COUNTS_INTERVAL_S)
            if self.app is not None:  # a canary's counts: every second, so a regression is acted on soon
                split_items = self.app.split_stats.take()
                if split_items:
                    with contextlib.suppress(ChannelClosed):
                        self.channel.send({"t": "split_counts", "items": split_items})
            ticks += 1
            if ticks % round(COUNTS_INTERVAL_S / SPLIT_COUNTS_INTERVAL_S):
                continue
            counted = self.logs.take_counts()
            if counted:
                items = [[c.gateway, c.name, c.version, c.requests, c.errors, c.last_error] for c in counted]
                with contextlib.suppress(ChannelClosed):
                    self.channel.send({"t": "counts", "items": items, "at": time.time()})
            self._send_metrics()

    def _send_metrics(self) -> None:
        """What the cell counted for /metrics since the last time (the supervisor keeps the totals)."""
        if self.metrics is None:
            return
        rows, in_flight = self.metrics.take(), self.metrics.in_flight
        if rows or in_flight != self._in_flight_sent:
            self._in_flight_sent = in_flight
            with contextlib.suppress(ChannelClosed):
                self.channel.send({"t": "metrics", "rows": rows, "in_flight": in_flight})

    def _ship_logs(self) -> None:
        while not self._shipping.wait(LOGS_INTERVAL_S):
            self.ship_logs()

    def ship_logs(self) -> None:
        """Send the invocations queued since the last shipment, in messages of bounded size."""
        with self._ship_lock:
            self._ship_columns(*self.logs.take_outbox())

    def _ship(self, entries: list[Any], dropped: int) -> None:
        """`_ship_columns` of `(gateway, name, entry)` triples, oldest first."""
        if not entries:
            self._ship_columns(([], [], [], [], [], [], [], [], [], []), dropped)
            return
        gateways, names, rows = zip(*entries, strict=True)
        columns = (list(gateways), list(names), *map(list, zip(*rows, strict=True)))
        self._ship_columns(columns, dropped)

    def _ship_columns(self, outbox: OutboxColumns, dropped: int) -> None:
        """Grouped by function (the writer checks each function once, not each invocation), in
        messages of about LOG_MESSAGE_BYTES: each is encoded in one call that holds the interpreter
        lock, so small ones leave the event loop its turn. A group is `[gateway, name, rows]`, a row
        `[request_id, started_us, version, status, duration_us, lines, error, trigger]`: integer
        microseconds and the lines as a list encode about three times faster than floats and the
        lines' own JSON text (BENCHMARKS.md).

        Most invocations fail not and run for no trigger: a run of one function's such invocations
        goes as columns instead, `[gateway, name, {"id": [...], "t": [started_us...], "d":
        [duration_us...], "v": version or [...], "s": status or [...], "l": [lines...]}]` (a column
        whose values are all one goes as that value; "l" only when one logged a line), made by `zip`,
        `map` and `accumulate` without a Python step each: under load, encoding eight values a row
        was most of the shipping thread's time, and the loop a row most of what a logged line cost
        (BENCHMARKS.md, "Where a cell's CPU goes", "Logged lines as columns"). Either way a message
        is sent once its rows count LOG_MESSAGE_BYTES (LOG_ROW_BYTES a row, plus its lines and
        error), a large row alone, and each function's invocations stay in the order they were
        served.

        The invocations come as the outbox holds them (`InvocationLogs.take_outbox`): the gateway,
        name and each field of the entry of each, as lists (`OutboxColumns`), so that a run's columns
        are these lists or slices of them (no entry transposed, no tuple made an invocation). A run of
        one function is found by a count in C when the shipment is all one function's (the common
        case under load), else by `groupby` over the names: no key made an invocation."""
        sender = self.log_sender
        if sender is None or (not outbox[0] and not dropped):
            return
        if self.log_keep and len(outbox[0]) > self.log_keep:
            outbox = self._newest(outbox, self.log_keep)
        parts: list[list[Any]] = []  # the message's groups, in order
        groups: dict[tuple[str, str], list[tuple[Any, ...]]] = {}  # a function's rows among them
        count = size = 0

        def send() -> None:
            nonlocal parts, groups, count, size, dropped
            sender.send(parts, count, dropped)
            parts, groups, count, size, dropped = [], {}, 0, 0, 0

        for function, run in _runs(outbox):
            ids, started, versions, statuses, durations, all_lines, errors, triggers = run
            n = len(ids)
            ends = None
            if errors.count(None) == n and triggers.count(None) == n:
                ends = _row_ends(all_lines, n)
            if ends is not None:
                # seconds and milliseconds -> microseconds as `x * 1e6` and `x * 1000` (the same
                # floats): a comprehension, whose multiplication the interpreter specialises for
                # floats, costs fewer instructions a value than `map(_TRUNC, map(mul, ...))` (a
                # builtin's call each), and a bound `(1e6).__mul__` made an arguments tuple a value
                durations_us = [_TRUNC(d * 1000.0) for d in durations]
                started_us = [_TRUNC(t * 1e6) for t in started]
                logged = any(all_lines)
                at = 0
                while at < n:
                    # the rows that fill this message, at least one: the first whose end reaches it
                    before = ends[at - 1] if at else 0
                    end = min(n, bisect_left(ends, before + LOG_MESSAGE_BYTES - size) + 1)
                    columns = {
                        "id": ids[at:end],
                        "t": started_us[at:end],
                        "d": durations_us[at:end],
                        "v": _column(versions, at, end),
                        "s": _column(statuses, at, end),
                    }
                    if logged:
                        columns["l"] = all_lines[at:end]
                    parts.append([function[0], function[1], columns])
                    groups.pop(function, None)  # a later row of this function goes after these
                    count += end - at
                    size += ends[end - 1] - before
                    at = end
                    if size >= LOG_MESSAGE_BYTES:
                        send()
                continue
            for e in zip(*run, strict=True):
                lines, error = e[5], e[6]  # by index: `invoker.LogEntry`'s order
                row_size = LOG_ROW_BYTES
                if lines:
                    chars = _lines_chars(lines)
                    if chars > LOG_ROW_LINES_CHARS:
                        lines = [f"(cut: {chars} characters of lines)"]
                    row_size += chars
                if error is not None:
                    error = error[:LOG_ROW_ERROR_CHARS]
                    row_size += len(error)
                # a large row goes alone (too large, it alone is lost)
                if row_size > LOG_MESSAGE_BYTES and parts:
                    send()
                rows = groups.get(function)
                if rows is None:
                    rows = groups[function] = []
                    parts.append([function[0], function[1], rows])
                rows.append((e[0], int(e[1] * 1e6), e[2], e[3], int(e[4] * 1000), lines, error, e[7]))
                count += 1
                size += row_size
                if size >= LOG_MESSAGE_BYTES:
                    send()
        if parts or dropped:
            send()

    def _newest(self, columns: OutboxColumns, keep: int) -> OutboxColumns:
        """Each function's newest `keep` of the invocations in `columns` (oldest first): the store's
        count bound would delete the others within seconds, before anyone could read them, after
        the writer spent more on each than the request itself (BENCHMARKS.md). They are counted as
        pruned."""
        keys = _function_keys(columns[0], columns[1])
        over = {function: n - keep for function, n in Counter(keys).items() if n > keep}
        if not over:
            return columns
        wanted = []
        for key in keys:
            skip = over.get(key)
            if skip:
                over[key] = skip - 1
            wanted.append(not skip)
        assert self.log_sender is not None
        self.log_sender.pruned += wanted.count(False)
        return tuple(list(compress(column, wanted)) for column in columns)


def _wake(futures: list[asyncio.Future[None]]) -> None:
    for future in futures:
        if not future.done():  # a request gone meanwhile (cancelled) is not woken
            future.set_result(None)


def _function_keys(gateways: list[str], names: list[str]) -> list[Any]:
    """What tells a shipment's functions apart: their names when all are one gateway's (a cell's
    are), else (gateway, name) pairs."""
    if gateways and gateways.count(gateways[0]) == len(gateways):
        return names
    return list(zip(gateways, names, strict=True))


def _runs(columns: OutboxColumns) -> Iterator[tuple[tuple[str, str], Sequence[list[Any]]]]:
    """Each run of one function's invocations in `columns`, in order, with its (gateway, name): its
    entries' fields, a column each (the lists themselves when all are one function's)."""
    gateways, names = columns[0], columns[1]
    n = len(gateways)
    if not n:
        return
    if names.count(names[0]) == n and gateways.count(gateways[0]) == n:  # one function's: most shipments
        yield (gateways[0], names[0]), columns[2:]
        return
    at = 0
    for _, run in groupby(_function_keys(gateways, names)):
        end = at + len(list(run))
        yield (gateways[at], names[at]), [column[at:end] for column in columns[2:]]
        at = end


def _column(values: Sequence[Any], start: int, end: int) -> Any:
    """values[start:end] as a shipment's column: the one value when they are all it."""
    taken = values[start:end]
    first = taken[0]
    return first if taken.count(first) == len(taken) else taken


def _lines_chars(lines: Any) -> int:
    """What a row's lines count towards a message: their characters and 4 a line. A function may put
    other things than strings in `ctx.log.lines` (its own list): they count as their JSON, and lines
    that have none count past any bound (cut to a note); they must not stop the shipping thread, which
    ships every function of the cell."""
    try:
        return sum(map(len, lines)) + 4 * len(lines)
    except TypeError:
        try:
            return len(_encode_message(lines))
        except (TypeError, ValueError, RecursionError):
            return LOG_ROW_LINES_CHARS + 1


class _Ends:
    """A run's row ends when every row logged `lines` lines: the lines' characters summed up to each
    row (`chars`), plus `overhead` a row, made when asked for (by the bisect of a message's end, and
    the two ends of its rows: a few a message), not by a pass adding the overhead to each row."""

    __slots__ = ("chars", "overhead")

    def __init__(self, chars: list[int], overhead: int) -> None:
        self.chars = chars
        self.overhead = overhead

    def __len__(self) -> int:
        return len(self.chars)

    def __getitem__(self, row: int) -> int:
        return self.chars[row] + self.overhead * (row + 1)


def _row_ends(all_lines: Sequence[Any], n: int) -> Sequence[int] | _Ends | None:
    """Where each of a run's rows ends in a message's count (LOG_ROW_BYTES a row plus its lines,
    summed), made by C calls without a Python step a row; None when a row must go as a row: lines
    not all strings, or a row larger than a message (it goes alone, or is cut)."""
    if not any(all_lines):
        return range(LOG_ROW_BYTES, LOG_ROW_BYTES * (n + 1), LOG_ROW_BYTES)
    try:
        # one line a row (most functions that log): a row of another count raises ValueError, lines
        # that are no list TypeError (both: the ways below)
        flat = [line for (line,) in all_lines]
    # not swallowed: the ways below look at these rows again
    except (ValueError, TypeError):
        pass
    else:
        try:
            # TypeError: a line that is no string (a C pass, where `str.__len__` a line was a call
            # that made an arguments tuple)
            total = len("".join(flat))
        # the general way below (and then row by row), as before this path
        except TypeError:
            return None
        chars = list(map(len, flat))
        overhead = LOG_ROW_BYTES + 4  # `_ship`'s rule for a row, as below
        # no row larger than a message: surely so when all of them together are not (no pass for `max`)
        if total + overhead > LOG_MESSAGE_BYTES and max(chars) + overhead > LOG_MESSAGE_BYTES:
            return None
        return _Ends(list(accumulate(chars)), overhead)
    try:
        counts = list(map(len, all_lines))  # TypeError: lines that are no list
    # not swallowed: None sends the run row by row, where such lines are encoded or counted unsent
    except TypeError:
        return None
    first = counts[0]
    if first and counts.count(first) == n:  # every row logged as many lines (most functions: one each)
        try:
            # each line's characters, all rows' in one pass; `str.__len__`: TypeError for a line that
            # is no string (a join each row, as below, made and copied a string a row)
            chars = list(map(str.__len__, chain.from_iterable(all_lines)))
        # a line that is no string: the general way below (and then row by row), as before this path
        except TypeError:
            return None
        if first > 1:
            chars = list(map(sum, zip(*[iter(chars)] * first, strict=True)))
        overhead = LOG_ROW_BYTES + 4 * first  # `_ship`'s rule for a row, as below
        if max(chars) + overhead > LOG_MESSAGE_BYTES:
            return None
        return list(accumulate(map(add, chars, repeat(overhead))))  # `add`: no arguments tuple a row
    try:
        texts = list(map(len, map("".join, all_lines)))  # TypeError: not all strings
    except TypeError:
        return None
    # a row: LOG_ROW_BYTES, its lines' characters, 4 a line (`_ship`'s rule for a row)
    overheads = map(LOG_ROW_BYTES.__add__, map((4).__mul__, map(len, all_lines)))
    sizes = list(map(add, texts, overheads))
    if max(sizes) > LOG_MESSAGE_BYTES:
        return None
    return list(accumulate(sizes))


class LogSender:
    """A cell's end of its socket to the log writer process (`runtime.log_process`): one shipment a
    message. The shipping thread sends; a socket full for `timeout_s` (the writer behind, or down)
    drops the shipment and counts it, and the next one that goes says how many did not."""

    def __init__(self, sock: socket.socket, timeout_s: float = LOG_SEND_TIMEOUT_S) -> None:
        with contextlib.suppress(OSError):  # as large as the system allows (Linux doubles, to 2 x wmem_max)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
        sock.settimeout(timeout_s)
        self.sock = sock
        self.unsent = 0  # invocations not sent since the last shipment that went
        self.pruned = 0  # not shipped, past the count bound (`SupervisorLink._newest`), not yet said

    def send(self, groups: list[Any], count: int, dropped: int) -> bool:
        """Send one message (`log_process.FRAMED`): its header, then each columns group's id, start,
        duration and lines columns as a JSON text of their own, a line each, which the writer can
        store as they came once checked (no decoding and encoding the start times and ids again)."""
        frames: list[Any] = []
        header = []
        for group in groups:
            columns = group[2]
            if columns.__class__ is dict:
                frames += [columns["id"], columns["t"], columns["d"], columns.get("l")]
                group = [group[0], group[1], {"v": columns["v"], "s": columns["s"]}]
            header.append(group)
        message = {"n": count, "groups": header, "dropped": dropped, "unsent": self.unsent}
        if self.pruned:
            message["pruned"] = self.pruned
        try:
            # bytes joined, not text joined then encoded: one copy of the message less
            self.sock.send(b"\n".join([_encode_header(message), *map(_encode_frame, frames)]))
        # full for the time-out, too large, a writer gone; or lines a function made unencodable: counted
        except (OSError, ValueError, TypeError, RecursionError):
            self.unsent += count + dropped
            return False
        self.unsent = self.pruned = 0
        return True


# no check for circular lists (a dict insert and delete for each list: a row's lines are one): lines a
# function made circular raise RecursionError instead, which `LogSender.send` counts like any unencodable
_encode_message = json.JSONEncoder(ensure_ascii=False, check_circular=False, separators=(",", ":")).encode


def _encode_header(message: Any) -> bytes:
    """A message's header, by the standard library's encoder: its row groups hold whatever a function
    put in its lines, which orjson would write otherwise (a float's exponent) or accept where the
    standard library refuses (a datetime). A lone surrogate a function logged goes as its JSON escape
    (as the channel sent it)."""
    return _encode_message(message).encode("utf-8", "backslashreplace")


def _encode_frame(column: Any) -> bytes:
    """A column's frame: ids (strings), integer microseconds, lists of string lines, or None. For
    these orjson writes the standard library's very bytes (compact, not escaped to ASCII, the same
    escapes: tests/test_log_pipe.py checks) in a fraction of the instructions: integers' digits and
    strings' escaping were most of what shipping cost an invocation (BENCHMARKS.md). A lone
    surrogate or an integer past 64 bits makes orjson refuse: the standard library's text then, as
    before."""
    try:
        # ORJSON_OPTIONS: what orjson would write its own way (subclasses, datetimes) it refuses instead
        return _orjson_dumps(column, None, ORJSON_OPTIONS)
    except TypeError:  # orjson's JSONEncodeError: the standard library writes it, or says why not
        return _encode_header(column)
