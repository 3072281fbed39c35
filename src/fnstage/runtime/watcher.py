"""The watcher keeps one worker's registry equal to the store's published state.

On start, and after any error, it resyncs from a snapshot of the published table (invariant 3: changes
made while it was away are never lost). Between resyncs it follows the publish log from the positions
the snapshot gave it. It wakes on a change in the database folder (inotify read by the event loop,
`runtime.inotify`, or watchfiles where that is missing; confirmed by the reader's cheap `change_token`),
on `poke()`, or on a slow poll as a safety net.

On PostgreSQL the reader also offers `notifications()` (LISTEN/NOTIFY, `store.notifications`): an event
wakes the watcher (the payload is only a hint: it reads the log from its positions); on every
(re)connect it catches up (the first time, from the log: it has just synced) or resyncs from a snapshot
(after an outage: whatever happened meanwhile); while disconnected it keeps serving from memory and its
heartbeat says "feed disconnected since ...".

Every call into the reader and every load runs on one dedicated thread: the event loop keeps serving
while a function loads, and a SQLite connection is only ever used from the thread that made it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from fnstage.runtime.inotify import FolderWatch
from fnstage.runtime.loader import (
    DEFAULT_LOAD_TIMEOUT_S,
    LiveVersion,
    LoadError,
    load_rows,
)
from fnstage.runtime.log_format import fields
from fnstage.runtime.registry import Registry
from fnstage.store.records import FeedEvent, FunctionCounts, PublishedFunction, published_time

if TYPE_CHECKING:  # psycopg: imported only where a reader pushes changes (PostgreSQL)
    from fnstage.store.notifications import Signal

logger = logging.getLogger("fnstage.runtime")

T = TypeVar("T")
R = TypeVar("R")
# A commit's write to the WAL file is seen (inotify) a moment before the commit is visible
# (`data_version` moves when the wal-index, a shared memory map, is updated; writes to a memory map make
# no inotify event): after a wake that finds no change, look again after these delays (each cut short
# by a new wake). They reach past the 1 s poll: a writer descheduled between its WAL write and the
# index update (a busy machine) once made about 1 save in 800 wait for the poll (issue 11, part 5);
# a look is a `PRAGMA data_version`, about 3 us.
RECHECK_DELAYS_S = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.3)
Key = tuple[str, str]
# a catch-up's reads and loads: the log entries, the deletes among them, the rows to load, their loads
Changes = tuple[list[FeedEvent], list[FeedEvent], list[PublishedFunction], list[LiveVersion | LoadError]]
# A first load at least this large (a cold start) runs with the cyclic garbage collector paused, and what
# it loaded is then frozen (`gc.freeze`): measured with 10,000 3-file functions, the collections that
# the load's ~470,000 new objects trigger took longer (0.7 s) than the loads themselves (0.55 s), and
# re-enabling the collector without freezing only moves that cost onto the first requests. The frozen
# objects are thawed (`gc.unfreeze`) at the next change, so a replaced version is collected as usual.
BULK_LOAD = 1000


class FeedReaderLike(Protocol):
    """What the watcher needs from the store (`fnstage.store.feed.FeedReader`); synchronous."""

    database_dir: Path | None

    def snapshot(self, gateway: str | None) -> tuple[list[PublishedFunction], dict[str, int]]: ...

    def events_after(self, positions: dict[str, int], gateway: str | None) -> list[FeedEvent] | None: ...

    def fetch(self, gateway: str, names: list[str]) -> list[PublishedFunction]: ...

    def change_token(self) -> int: ...

    def close(self) -> None: ...

    # optional: `notifications() -> AsyncIterator[Signal] | None`, a push feed (PostgreSQL's NOTIFY)


class ReporterLike(Protocol):
    """Tells the control plane what is live here (`fnstage.store.runtime_status.RuntimeReporter`)."""

    def register(self) -> None: ...

    def heartbeat(self, feed_state: str = "connected", feed_since: datetime | None = None) -> None: ...

    def live(self, gateway: str, name: str, version: int) -> None: ...

    def live_many(self, items: Sequence[tuple[str, str, int, str]]) -> None: ...

    def failed(self, gateway: str, name: str, version: int, error: str) -> None: ...

    def removed(self, gateway: str, name: str) -> None: ...

    def counts(self, items: list[FunctionCounts]) -> None: ...

    def deregister(self) -> None: ...

    def close(self) -> None: ...


class Watcher:
    def __init__(
        self,
        registry: Registry,
        reader_factory: Callable[[], FeedReaderLike],
        *,
        gateway: str | None = None,
        poll_interval_s: float = 1.0,
        retry_delays_s: Sequence[float] = (0.05, 0.5, 1.0, 5.0),
        load_timeout_s: float | None = DEFAULT_LOAD_TIMEOUT_S,
        watch_files: bool = True,
        startup_timeout_s: float = 10.0,
        reporter_factory: Callable[[], ReporterLike] | None = None,
        heartbeat_interval_s: float = 3.0,
        recheck_delays_s: Sequence[float] = RECHECK_DELAYS_S,
        bulk_load: int = BULK_LOAD,
        counts: Callable[[], list[FunctionCounts]] | None = None,
        load_rows: Callable[[list[PublishedFunction]], list[LiveVersion | LoadError]] | None = None,
        on_config: Callable[[list[tuple[str, str]] | None], None] | None = None,
        on_canary: Callable[[], None] | None = None,
        metrics: LoadMetrics | None = None,
    ) -> None:
        self.registry = registry
        # a supervisor's configuration delivery: called (on the reader's thread) with the (gateway, env)
        # pairs whose configuration the feed announced, or None after a resync (every pair)
        self._on_config = on_config
        # a supervisor's canary follower (`runtime.split_follower`): called (on the reader's thread) when
        # the feed announced a canary started, stepped or decided, and after a resync
        self._on_canary = on_canary
        self.metrics = metrics  # loads, their failures and publish -> live, for /metrics
        # where rows are loaded: here by default; a supervisor hands them to its cells
        self._load_rows = load_rows if load_rows is not None else self._load_here
        self._counts = counts  # requests and failures per live version, reported with the heartbeat
        self.gateway = gateway
        self.poll_interval_s = poll_interval_s
        self.recheck_delays_s = tuple(recheck_delays_s)
        self.bulk_load = bulk_load
        self._frozen = False  # this watcher froze a cold start's objects (gc.freeze), not thawed yet
        self.retry_delays_s = tuple(retry_delays_s)
        self.load_timeout_s = load_timeout_s
        self.watch_files = watch_files
        self.startup_timeout_s = startup_timeout_s
        self._reader_factory = reader_factory
        self._reader: FeedReaderLike | None = None
        self._reporter_factory = reporter_factory
        self._reporter: ReporterLike | None = None
        self.heartbeat_interval_s = heartbeat_interval_s
        self._last_heartbeat = 0.0
        self._positions: dict[str, int] = {}
        self._token: int | None = None
        self._executor: ThreadPoolExecutor | None = None
        # reports have a thread of their own: the feed and the loads never wait on the control plane's
        # bookkeeping (a cold start of 10,000 functions writes 10,000 rows)
        self._report_executor: ThreadPoolExecutor | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self._changed = asyncio.Event()
        self._synced = asyncio.Event()
        self._file_stop: Any = None
        self._folder_watch: FolderWatch | None = None
        self.resyncs = 0
        self.errors = 0
        self.last_error: str | None = None
        self.last_change_at: float | None = None
        self.feed_state = "connected"  # "disconnected" while a push feed (NOTIFY) is down
        self.feed_since = datetime.now(UTC)
        self._resync_wanted = False
        self._heard_once = False
        self._reconnected = asyncio.Event()

    # lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        """Start following the feed; returns once the first sync is done (or `startup_timeout_s`)."""
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fnstage-watcher")
        self._report_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fnstage-report")
        self._tasks.append(asyncio.create_task(self._run(), name="fnstage-watcher"))
        try:
            async with asyncio.timeout(self.startup_timeout_s):
                await self._synced.wait()
        except TimeoutError:
            logger.warning("runtime: first sync with the store not done after %g s", self.startup_timeout_s)

    async def stop(self) -> None:
        if self._folder_watch is not None:
            self._folder_watch.close()
            self._folder_watch = None
        if self._file_stop is not None:
            self._file_stop.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._report_executor is not None:
            if self._reporter is not None:
                self._report("deregister")
                self._report("close")
                self._reporter = None
            # every queued report is written before stop returns
            await asyncio.get_running_loop().run_in_executor(self._report_executor, lambda: None)
            self._report_executor.shutdown(wait=False)
            self._report_executor = None
        if self._executor is not None:
            if self._reader is not None:
                await self._call(self._reader.close)
            self._executor.shutdown(wait=False)
            self._executor = None
        self._reader = None

    def poke(self) -> None:
        """Check the feed now (e.g. after a NOTIFY, or in tests)."""
        self._wake.set()

    def status(self) -> dict[str, Any]:
        return {
            "gateway": self.gateway,
            "synced": self._synced.is_set(),
            "positions": dict(self._positions),
            "resyncs": self.resyncs,
            "errors": self.errors,
            "last_error": self.last_error,
            "last_change_at": self.last_change_at,
            "feed_state": self.feed_state,
            "feed_since": self.feed_since.isoformat(),
        }

    async def wait_for(self, gateway: str, name: str, version: int, timeout: float = 5.0) -> LiveVersion:
        """Wait until `version` (or newer) of a function is live; LoadError if it failed to load."""
        async with asyncio.timeout(timeout):
            while True:
                changed = self._changed
                live = self.registry.get(gateway, name)
                if live is not None and live.version >= version:
                    return live
                failure = self.registry.failure(gateway, name)
                if failure is not None and failure.version >= version:
                    raise LoadError(failure.summary, failure.traceback)
                await changed.wait()

    async def wait_for_removal(self, gateway: str, name: str, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while True:
                changed = self._changed
                if self.registry.get(gateway, name) is None:
                    return
                await changed.wait()

    # the loop ------------------------------------------------------------------------------------
    async def _run(self) -> None:
        attempt = 0
        while True:
            try:
                if self._reader is None:
                    self._reader = await self._call(self._reader_factory)
                    self._start_file_watch(self._reader.database_dir)
                    self._start_notifications(self._reader)
                if self._reporter is None and self._reporter_factory is not None:
                    assert self._report_executor is not None
                    self._reporter = await asyncio.get_running_loop().run_in_executor(
                        self._report_executor, self._reporter_factory
                    )
                    self._report("register")
                await self._resync()
                attempt = 0
                while True:
                    await self._wait_for_change()
                    if self._resync_wanted:
                        await self._resync()
                    else:
                        await self._catch_up()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                delay = self.retry_delays_s[min(attempt, len(self.retry_delays_s) - 1)]
                attempt += 1
                logger.warning(
                    "runtime: feed error (%s); resync in %g s", self.last_error, delay, exc_info=True
                )
                # a push feed connecting again means the database is back: resync at once
                self._reconnected.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._reconnected.wait()

    async def _resync(self) -> None:
        assert self._reader is not None
        self._resync_wanted = False
        # a cold start (nothing loaded): read and load with the collector paused, see BULK_LOAD
        cold = len(self.registry) == 0
        with _collector_paused() if cold else contextlib.nullcontext():
            rows, positions = await self._call(self._reader.snapshot, self.gateway)
            if self._on_config is not None:
                await self._call(self._on_config, None)
            if self._on_canary is not None:
                self._on_canary()
            published = {(r.gateway, r.name): r for r in rows}
            stale = []
            for row in rows:
                live = self.registry.get(row.gateway, row.name)
                failure = self.registry.failure(row.gateway, row.name)
                if live is not None and live.version == row.version and live.bundle_hash == row.bundle_hash:
                    continue
                if failure is not None and failure.version == row.version:
                    continue  # already tried: a load error is reported, not retried on every resync
                stale.append(row)
            # Never backwards, even on resync: the store continues a name's numbering after a delete or
            # a rename, so an older snapshot row only means a lagging read (a replica), never newer truth.
            await self._load(stale, allow_older=False, freeze=cold and len(stale) >= self.bulk_load)
        for gateway, name in self.registry.names(self.gateway) - published.keys():
            self._thaw()
            self.registry.remove(gateway, name)
            self._report("removed", gateway, name)
            logger.info("runtime: unloaded %s/%s (no longer published)", gateway, name)
        self._positions = positions
        self.resyncs += 1
        self._synced.set()
        self._notify()
        logger.info(
            "runtime: %s: %d function(s) published, at %s",
            "synced" if self.resyncs == 1 else "resynced",
            len(rows),
            positions,
            extra=fields(event="sync" if self.resyncs == 1 else "resync", functions=len(rows)),
        )

    async def _wait_for_change(self) -> None:
        assert self._reader is not None
        while True:
            woken = await self._woken_within(self.poll_interval_s)
            if (
                self._reporter is not None
                and time.monotonic() - self._last_heartbeat >= self.heartbeat_interval_s
            ):
                self._last_heartbeat = time.monotonic()
                self._report("heartbeat", self.feed_state, self.feed_since)
                counted = self._counts() if self._counts is not None else []
                if counted:
                    self._report("counts", counted)
            if self._resync_wanted or await self._token_moved():
                return
            if not woken:
                continue
            # A commit's file write can be seen a moment before the commit itself: look again shortly,
            # and at once on the next wake (a sleep here would make the very next commit wait for it).
            for delay in self.recheck_delays_s:
                await self._woken_within(delay)
                if await self._token_moved():
                    return

    async def _woken_within(self, timeout_s: float) -> bool:
        """Wait for a wake (True) or `timeout_s` (False), and clear it: a wake after this returns counts."""
        try:
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation (stop())
            async with asyncio.timeout(timeout_s):
                await self._wake.wait()
            return True
        except TimeoutError:
            return False
        finally:
            self._wake.clear()

    async def _token_moved(self) -> bool:
        assert self._reader is not None
        token = await self._call(self._reader.change_token)
        if token == 0 or token != self._token:  # 0: the reader cannot tell; always look
            self._token = token
            return True
        return False

    async def _catch_up(self) -> None:
        if await self._load_then(self._apply_changes, self._read_and_load, dict(self._positions)):
            logger.info("runtime: the publish log no longer reaches back to %s; resyncing", self._positions)
            await self._resync()

    def _apply_changes(self, changes: Changes | None) -> bool:
        """Apply what `_read_and_load` read and loaded; True: the log no longer reaches back, resync."""
        if changes is None:
            return True
        events, deleted, rows, results = changes
        if not events:
            return False
        self._thaw()
        for event in deleted:  # before any later upsert of the name (delete, then create again)
            if self.registry.remove(event.gateway, event.name, event.version):
                self._report("removed", event.gateway, event.name)
                logger.info("runtime: unloaded %s/%s v%d", event.gateway, event.name, event.version)
        self._apply(rows, results, allow_older=False, just_published=True)
        for event in events:
            self._positions[event.gateway] = max(self._positions.get(event.gateway, 0), event.seq)
        self._notify()
        return False

    def _read_and_load(self, positions: dict[str, int]) -> Changes | None:
        """On the reader's thread, in ONE hop from the event loop (each hop wakes the loop and a thread,
        on the path of every save): the log entries after `positions`, the deletes among them, and the
        names whose last entry is an upsert, read and loaded; the loop then applies them. None: resync."""
        assert self._reader is not None
        events = self._reader.events_after(positions, self.gateway)
        if not events:
            return None if events is None else ([], [], [], [])
        last: dict[Key, FeedEvent] = {}
        deleted: dict[Key, FeedEvent] = {}
        canaries = False
        for event in events:
            if event.action == "canary":  # not the function's own change: its publish still counts
                canaries = True
                continue
            key = (event.gateway, event.name)
            last[key] = event
            if event.action == "delete":
                deleted[key] = event
        wanted: dict[str, list[str]] = {}
        configured: list[tuple[str, str]] = []
        for (gateway, name), event in last.items():
            if event.action == "upsert":
                wanted.setdefault(gateway, []).append(name)
            elif event.action == "config":  # name "ENV/": that environment has a new configuration
                configured.append((gateway, name.split("/", 1)[0]))
        if configured and self._on_config is not None:
            self._on_config(configured)
        if canaries and self._on_canary is not None:
            self._on_canary()
        rows = [row for gateway, names in wanted.items() for row in self._reader.fetch(gateway, names)]
        return events, list(deleted.values()), rows, self._load_all(rows)

    # loading -------------------------------------------------------------------------------------
    async def _load(self, rows: list[PublishedFunction], *, allow_older: bool, freeze: bool = False) -> None:
        """Load and apply `rows`; `freeze`: a cold start's bulk load (called with the collector paused;
        nothing was loaded before, so no replaced version became garbage meanwhile)."""
        if not rows:
            return
        if not freeze:
            self._thaw()
        await self._load_then(
            lambda results: self._apply(rows, results, allow_older=allow_older), self._load_all, rows
        )
        if freeze:
            gc.freeze()
            self._frozen = True

    def _apply(
        self,
        rows: list[PublishedFunction],
        results: list[LiveVersion | LoadError],
        *,
        allow_older: bool,
        just_published: bool = False,
    ) -> None:
        """Swap in what loaded, record what failed, and report both (the lives in one write).
        `just_published`: rows the feed announced now (a catch-up), whose publish -> live is measured;
        a resync's rows may have been published long before this runtime started."""
        lives: list[tuple[str, str, int, str]] = []
        metrics = self.metrics
        for row, result in zip(rows, results, strict=True):
            if metrics is not None and self.registry.get(row.gateway, row.name) is not result:
                _measure(metrics, row, result, just_published)
            if isinstance(result, LoadError):
                self.registry.record_failure(row.gateway, row.name, row.version, result)
                self._report("failed", row.gateway, row.name, row.version, result.summary)
                logger.warning(
                    "runtime: %s v%d failed to load (gateway %s): %s",
                    row.name,
                    row.version,
                    row.gateway,
                    result.summary,
                    extra=fields(
                        event="load_failed",
                        gateway=row.gateway,
                        name=row.name,
                        version=row.version,
                        error=result.summary,
                    ),
                )
            elif self.registry.apply(result, allow_older=allow_older):
                lives.append((row.gateway, row.name, row.version, row.bundle_hash))
                logger.info(
                    "runtime: loaded %s v%d (%s) in %.2f ms (gateway %s)",
                    row.name,
                    row.version,
                    row.semver,
                    result.load_ms,
                    row.gateway,
                    extra=fields(
                        event="loaded",
                        gateway=row.gateway,
                        name=row.name,
                        version=row.version,
                        semver=row.semver,
                        ms=round(result.load_ms, 3),
                    ),
                )
        if lives:
            self._report("live_many", lives)

    def _load_all(self, rows: list[PublishedFunction]) -> list[LiveVersion | LoadError]:
        results: list[LiveVersion | LoadError | None] = []
        wanted: list[PublishedFunction] = []
        for row in rows:
            live = self.registry.get(row.gateway, row.name)
            if live is not None and live.version == row.version and live.bundle_hash == row.bundle_hash:
                results.append(live)  # already live (an event we had seen through a snapshot)
                continue
            results.append(None)
            wanted.append(row)
        loaded = iter(self._load_rows(wanted) if wanted else [])
        return [result if result is not None else next(loaded) for result in results]

    def _load_here(self, rows: list[PublishedFunction]) -> list[LiveVersion | LoadError]:
        """Load in this process (tests, and the cells' own loads); a supervisor passes `load_rows`."""
        return load_rows(rows, self.load_timeout_s)

    def _thaw(self) -> None:
        """Before a change after a cold start: let the collector see the frozen objects again (a replaced
        version's modules are a reference cycle, freed only by the collector)."""
        if self._frozen:
            self._frozen = False
            gc.unfreeze()

    # helpers -------------------------------------------------------------------------------------
    async def _load_then(self, then: Callable[[T], R], fn: Callable[..., T], *args: Any) -> R:
        """`fn` (a load) on the reader's thread, then `then` with its result on the loop. A cell serves
        a version as soon as it has loaded it: a stop() that cancels meanwhile waits for the load to end
        and applies it (registry, "loaded" line, live report) before the cancellation goes on, or the
        version would serve unannounced."""
        assert self._executor is not None
        future = asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        try:
            result = await asyncio.shield(future)
        except asyncio.CancelledError:
            await asyncio.wait([future])
            if future.exception() is None:
                then(future.result())
            raise
        return then(result)

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        assert self._executor is not None
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _report(self, what: str, *args: Any) -> None:
        """Tell the control plane, in order, on the report thread, without waiting for it; a failure to
        report is logged, never a reason to stop serving."""
        if self._reporter is None or self._report_executor is None:
            return
        self._report_executor.submit(self._write_report, self._reporter, what, args)

    @staticmethod
    def _write_report(reporter: ReporterLike, what: str, args: tuple[Any, ...]) -> None:
        try:
            getattr(reporter, what)(*args)
        except Exception:
            logger.warning("runtime: could not report %s%s", what, args, exc_info=True)

    def _notify(self) -> None:
        self.last_change_at = time.time()
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def _start_notifications(self, reader: FeedReaderLike) -> None:
        listen: Callable[[], AsyncIterator[Signal] | None] | None = getattr(reader, "notifications", None)
        signals = listen() if listen is not None else None
        if signals is not None:
            self._tasks.append(asyncio.create_task(self._follow(signals), name="fnstage-notifications"))

    async def _follow(self, signals: AsyncIterator[Signal]) -> None:
        """Turn the push feed's signals into wakes, resyncs and the feed state the heartbeat reports.
        Should the feed itself fail, say so: the slow poll keeps the runtime following the log."""
        try:
            await self._follow_signals(signals)
        except Exception as exc:
            logger.error(
                "runtime: the change feed failed; polling every %g s", self.poll_interval_s, exc_info=True
            )
            self._set_feed_state("disconnected", datetime.now(UTC))
            self.last_error = f"change feed: {type(exc).__name__}: {exc}"

    async def _follow_signals(self, signals: AsyncIterator[Signal]) -> None:
        from fnstage.store.notifications import Connected, Disconnected

        async for signal in signals:
            if isinstance(signal, FeedEvent):
                self._wake.set()
            elif isinstance(signal, Connected):
                logger.info(
                    "runtime: change feed %s",
                    "reconnected" if self._heard_once else "connected",
                    extra=fields(event="feed_reconnected" if self._heard_once else "feed_connected"),
                )
                # LISTEN is on: whatever commits from now on arrives as an event; what committed
                # before is read now. First time: from the log (the start just synced); after an
                # outage: a snapshot, whatever happened meanwhile (a restore, a pruned log).
                self._resync_wanted = self._heard_once
                self._heard_once = True
                self._set_feed_state("connected", signal.at)
                self._wake.set()
                self._reconnected.set()
            elif isinstance(signal, Disconnected) and self.feed_state != "disconnected":
                self._set_feed_state("disconnected", signal.since)

    def _set_feed_state(self, state: str, since: datetime) -> None:
        self.feed_state, self.feed_since = state, since
        if state == "disconnected":
            logger.warning(
                "runtime: feed disconnected since %s; serving from memory",
                since.isoformat(),
                extra=fields(event="feed_disconnected"),
            )
        self._last_heartbeat = time.monotonic()
        self._report("heartbeat", state, since)

    def _start_file_watch(self, folder: Path | None) -> None:
        if folder is None or not self.watch_files or self._folder_watch is not None:
            return
        # inotify on the event loop where there is one (no thread, no polling); watchfiles elsewhere
        self._folder_watch = FolderWatch.open(folder, self._wake.set)
        if self._folder_watch is not None:
            return
        import anyio

        self._file_stop = anyio.Event()
        self._tasks.append(asyncio.create_task(self._watch_folder(folder), name="fnstage-watch-files"))

    async def _watch_folder(self, folder: Path) -> None:
        from watchfiles import awatch

        try:
            async for _ in awatch(
                folder,
                watch_filter=None,
                debounce=20,
                step=1,
                stop_event=self._file_stop,
                recursive=False,
                rust_timeout=500,
            ):
                self._wake.set()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.warning(
                "runtime: cannot watch %s; polling every %g s", folder, self.poll_interval_s, exc_info=True
            )


class LoadMetrics(Protocol):
    """Where the watcher counts loads (`runtime.metrics.RuntimeMetrics`)."""

    def loaded(self, gateway: str, name: str, seconds: float) -> None: ...

    def load_failed(self, gateway: str, name: str, seconds: float | None) -> None: ...

    def live_after_publish(self, gateway: str, name: str, seconds: float) -> None: ...


def _measure(  # a load done now (not a version that was already live)
    metrics: LoadMetrics, row: PublishedFunction, result: LiveVersion | LoadError, just_published: bool
) -> None:
    if isinstance(result, LoadError):
        seconds = result.load_ms / 1000 if result.load_ms is not None else None
        metrics.load_failed(row.gateway, row.name, seconds)
        return
    metrics.loaded(row.gateway, row.name, result.load_ms / 1000)
    published = published_time(row) if just_published else None
    if published is not None:
        metrics.live_after_publish(row.gateway, row.name, time.time() - published)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off for a bulk load (process-wide; reference counting still frees
    everything that is not in a cycle); back on after, unless it was off before."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
