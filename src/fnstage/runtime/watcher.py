"""The watcher keeps one worker's registry equal to the store's published state.

On start, and after any error, it resyncs from a snapshot of the published table (invariant 3: changes
made while it was away are never lost). Between resyncs it follows the publish log from the positions
the snapshot gave it (`runtime.changes`). It wakes on a change in the database folder or a push feed's
event (`runtime.feed_wakes`; confirmed by the reader's cheap `change_token`), on `poke()`, or on a slow
poll as a safety net. What loads is swapped in forward only (`runtime.loads`); what went live, failed
or went away is reported to the control plane on a thread of its own (`runtime.reports`).

Every call into the reader and every load runs on one dedicated thread: the event loop keeps serving
while a function loads, and a SQLite connection is only ever used from the thread that made it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

from fnstage.runtime.changes import Changes, read_events
from fnstage.runtime.feed_wakes import FeedWakes
from fnstage.runtime.loader import DEFAULT_LOAD_TIMEOUT_S, LiveVersion, LoadError, load_rows
from fnstage.runtime.loads import (
    BULK_LOAD,
    Freezer,
    LoadMetrics,
    LoadRows,
    LoadStream,
    apply_loads,
    collector_paused,
    load_missing,
)
from fnstage.runtime.log_format import fields
from fnstage.runtime.registry import Registry
from fnstage.runtime.reports import Counted, Heartbeat, Removed, Report, ReporterLike, Reports
from fnstage.store.records import FeedEvent, FunctionCounts, PublishedFunction

__all__ = ["RECHECK_DELAYS_S", "FeedReaderLike", "Watcher"]

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


# `FeedReader.snapshot_chunks`: the snapshot as it is read, each gateway's position put in the dict
ReadChunks = Callable[[str | None, dict[str, int]], Generator[list[PublishedFunction], None, None]]


class FeedReaderLike(Protocol):
    """What the watcher needs from the store (`fnstage.store.feed.FeedReader`); synchronous."""

    database_dir: Path | None

    def snapshot(self, gateway: str | None) -> tuple[list[PublishedFunction], dict[str, int]]: ...

    def events_after(self, positions: dict[str, int], gateway: str | None) -> list[FeedEvent] | None: ...

    def fetch(self, gateway: str, names: list[str]) -> list[PublishedFunction]: ...

    def change_token(self) -> int: ...

    def close(self) -> None: ...

    # optional: `notifications() -> AsyncIterator[Signal] | None`, a push feed (PostgreSQL's NOTIFY);
    # `token_on_loop = True`: `change_token` is cheap and safe to call from the event loop


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
        load_rows: LoadRows | None = None,
        load_stream: LoadStream | None = None,
        on_config: Callable[[list[tuple[str, str]] | None], None] | None = None,
        on_canary: Callable[[], None] | None = None,
        on_removed: Callable[[str, str], None] | None = None,
        metrics: LoadMetrics | None = None,
    ) -> None:
        self.registry = registry
        # a supervisor's configuration delivery: called (on the reader's thread) with the (gateway, env)
        # pairs whose configuration the feed announced, or None after a resync (every pair)
        self._on_config = on_config
        # a supervisor's canary follower (`runtime.split_follower`): called (on the reader's thread) when
        # the feed announced a canary started, stepped or decided, and after a resync
        self._on_canary = on_canary
        # a function was unloaded (on the event loop): what is kept about it goes too (its invocation logs)
        self._on_removed = on_removed
        self.metrics = metrics  # loads, their failures and publish -> live, for /metrics
        # where rows are loaded: here by default; a supervisor hands them to its cells
        self._load_rows = load_rows if load_rows is not None else self._load_here
        # a cold start's snapshot, loaded as it is read (a supervisor's `CellSet.load_stream`); by
        # default each chunk is loaded with `load_rows` when read
        self._load_stream = load_stream if load_stream is not None else self._load_chunks
        self._counts = counts  # requests and failures per live version, reported with the heartbeat
        self.gateway = gateway
        self.poll_interval_s = poll_interval_s
        self.recheck_delays_s = tuple(recheck_delays_s)
        self.bulk_load = bulk_load
        self._freezer = Freezer()  # a cold start's objects, frozen until the next change
        self.retry_delays_s = tuple(retry_delays_s)
        self.load_timeout_s = load_timeout_s
        self.startup_timeout_s = startup_timeout_s
        self._reader_factory = reader_factory
        self._reader: FeedReaderLike | None = None
        self._reporter_factory = reporter_factory
        self._reports: Reports | None = None
        self.heartbeat_interval_s = heartbeat_interval_s
        self._last_heartbeat = 0.0
        self._positions: dict[str, int] = {}
        self._token: int | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._task: asyncio.Task[None] | None = None
        self.wakes = FeedWakes(
            poll_interval_s=poll_interval_s,
            watch_files=watch_files,
            on_state=self._feed_state_changed,
            on_error=self._feed_failed,
        )
        self._changed = asyncio.Event()
        self._synced = asyncio.Event()
        self.resyncs = 0
        self.errors = 0
        self.last_error: str | None = None
        self.last_change_at: float | None = None

    # lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        """Start following the feed; returns once the first sync is done (or `startup_timeout_s`)."""
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fnstage-watcher")
        if self._reporter_factory is not None:
            self._reports = Reports(self._reporter_factory)
        self._task = asyncio.create_task(self._run(), name="fnstage-watcher")
        try:
            async with asyncio.timeout(self.startup_timeout_s):
                await self._synced.wait()
        except TimeoutError:
            logger.warning("runtime: first sync with the store not done after %g s", self.startup_timeout_s)

    async def stop(self) -> None:
        await self.wakes.close()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._reports is not None:  # every queued report is written before stop returns
            await self._reports.close()
            self._reports = None
        if self._executor is not None:
            if self._reader is not None:
                await self._call(self._reader.close)
            self._executor.shutdown(wait=False)
            self._executor = None
        self._reader = None

    @property
    def reporter(self) -> ReporterLike | None:
        """The control plane's reporter, once made (the watchdog deregisters a recycled worker by it)."""
        return self._reports.reporter if self._reports is not None else None

    def poke(self) -> None:
        """Check the feed now (e.g. after a NOTIFY, or in tests)."""
        self.wakes.set()

    def status(self) -> dict[str, Any]:
        return {
            "gateway": self.gateway,
            "synced": self._synced.is_set(),
            "positions": dict(self._positions),
            "resyncs": self.resyncs,
            "errors": self.errors,
            "last_error": self.last_error,
            "last_change_at": self.last_change_at,
            "feed_state": self.wakes.feed_state,
            "feed_since": self.wakes.feed_since.isoformat(),
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
                    self._token = None  # asked again: 0 is this reader's answer for "cannot tell"
                    self.wakes.follow(self._reader)
                if self._reports is not None:
                    await self._reports.open()
                await self._resync()
                attempt = 0
                while True:
                    await self._wait_for_change()
                    if self.wakes.resync_wanted:
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
                self.wakes.reconnected.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self.wakes.reconnected.wait()

    async def _resync(self) -> None:
        assert self._reader is not None
        self.wakes.resync_wanted = False
        # a cold start (nothing loaded): read and load with the collector paused, see loads.BULK_LOAD
        cold = len(self.registry) == 0
        # a reader that reads in chunks (the store's `FeedReader`; a stand-in may not): streamed
        read_chunks: ReadChunks | None = getattr(self._reader, "snapshot_chunks", None)
        if cold and read_chunks is not None:
            with collector_paused():
                rows, positions = await self._cold_sync(read_chunks)
        else:
            with collector_paused(cold):
                rows, positions = await self._sync()
        # what is live but no longer published goes; on a cold start all that is live came from `rows`
        # (two sets of 100,000 names cost it 0.1-0.2 s)
        if not cold:
            published = {(r.gateway, r.name) for r in rows}
            for gateway, name in self.registry.names(self.gateway) - published:
                self._freezer.thaw()
                self._unload(gateway, name, None)
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

    async def _cold_sync(self, read_chunks: ReadChunks) -> tuple[list[PublishedFunction], dict[str, int]]:
        """A cold start: the snapshot loaded as it is read (`snapshot_chunks`, `load_stream`), so the
        cells load its first rows while the supervisor reads the next. The configuration is delivered
        before (a cell starts with it) and again after the read (what changed meanwhile)."""
        assert self._reader is not None
        if self._on_config is not None:
            await self._call(self._on_config, None)
        positions: dict[str, int] = {}
        rows: list[PublishedFunction] = []  # every row read (those loaded, and earlier failures)
        error: BaseException | None = None

        def read_and_load() -> tuple[list[PublishedFunction], list[LiveVersion | LoadError]]:
            nonlocal error
            chunks = read_chunks(self.gateway, positions)
            with contextlib.closing(chunks):
                loaded, results, error = self._load_stream(self._not_failed(chunks, rows))
            return loaded, results

        def apply(loaded: tuple[list[PublishedFunction], list[LiveVersion | LoadError]]) -> int:
            apply_loads(self.registry, loaded[0], loaded[1], self._report, self.metrics)
            return len(loaded[0])

        count = await self._load_then(apply, read_and_load)
        if error is not None:  # the read broke off: what it loaded is applied, the resync is retried
            raise error
        if count >= self.bulk_load:  # as a resync's: what was loaded, not what had failed before
            self._freezer.freeze()
        if self._on_config is not None:
            await self._call(self._on_config, None)
        if self._on_canary is not None:
            self._on_canary()
        return rows, positions

    def _not_failed(
        self, chunks: Iterable[list[PublishedFunction]], read: list[PublishedFunction]
    ) -> Iterator[list[PublishedFunction]]:
        """The rows to load: all but a version whose load failed already (reported, not retried);
        every row is added to `read`."""
        started = time.perf_counter()
        for chunk in chunks:
            read += chunk
            wanted = []
            for row in chunk:
                failure = self.registry.failure(row.gateway, row.name)
                if failure is None or failure.version != row.version:
                    wanted.append(row)
            if wanted:
                yield wanted
        logger.info(  # the cells go on loading what was read (the sync's own line says when they are done)
            "runtime: read %d published function(s) in %.2f s, loading them meanwhile",
            len(read),
            time.perf_counter() - started,
            extra=fields(event="snapshot_read", functions=len(read)),
        )

    def _load_chunks(
        self, chunks: Iterable[list[PublishedFunction]]
    ) -> tuple[list[PublishedFunction], list[LiveVersion | LoadError], BaseException | None]:
        """The default `load_stream`: each chunk loaded by `load_rows` as it is read."""
        rows: list[PublishedFunction] = []
        results: list[LiveVersion | LoadError] = []
        try:
            for chunk in chunks:
                rows += chunk
                results += self._load_rows(chunk)
        except Exception as exc:  # not swallowed: returned, the caller applies what loaded, then resyncs
            return rows, results, exc
        return rows, results, None

    async def _sync(self) -> tuple[list[PublishedFunction], dict[str, int]]:
        """A resync: the whole snapshot, then what of it is not live yet."""
        assert self._reader is not None
        cold = len(self.registry) == 0
        rows, positions = await self._call(self._reader.snapshot, self.gateway)
        if self._on_config is not None:
            await self._call(self._on_config, None)
        if self._on_canary is not None:
            self._on_canary()
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
        await self._load(stale, freeze=cold and len(stale) >= self.bulk_load)
        return rows, positions

    async def _wait_for_change(self) -> None:
        assert self._reader is not None
        while True:
            woken = await self.wakes.within(self.poll_interval_s)
            self._heartbeat()
            if self.wakes.resync_wanted or await self._token_moved():
                return
            if not woken:
                continue
            # A commit's file write can be seen a moment before the commit itself: look again shortly,
            # and at once on the next wake (a sleep here would make the very next commit wait for it).
            for delay in self.recheck_delays_s:
                await self.wakes.within(delay)
                if await self._token_moved():
                    return

    def _heartbeat(self) -> None:
        """Every `heartbeat_interval_s`: this runtime is alive, and the counts that changed."""
        if self.reporter is None or time.monotonic() - self._last_heartbeat < self.heartbeat_interval_s:
            return
        self._last_heartbeat = time.monotonic()
        self._report(Heartbeat(self.wakes.feed_state, self.wakes.feed_since))
        counted = self._counts() if self._counts is not None else []
        if counted:
            self._report(Counted(counted))

    async def _token_moved(self) -> bool:
        assert self._reader is not None
        if self._token == 0:  # a reader that cannot tell (PostgreSQL's: NOTIFY wakes): no hop to ask it
            return True
        if getattr(self._reader, "token_on_loop", False):
            # a few microseconds, no lock waited for: asked here, not by a hop to the reader's thread.
            # On SQLite every commit of the invocation log writer wakes the watcher (hundreds of
            # wakes a second under load), and the hop was most of what each wake cost
            token = self._reader.change_token()
        else:
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
        if not changes.events:
            return False
        self._freezer.thaw()
        for event in changes.deleted:  # before any later upsert of the name (delete, then create again)
            self._unload(event.gateway, event.name, event.version)
        apply_loads(
            self.registry, changes.rows, changes.results, self._report, self.metrics, just_published=True
        )
        for event in changes.events:
            self._positions[event.gateway] = max(self._positions.get(event.gateway, 0), event.seq)
        self._notify()
        return False

    def _read_and_load(self, positions: dict[str, int]) -> Changes | None:
        """On the reader's thread, in ONE hop from the event loop (each hop wakes the loop and a thread,
        on the path of every save): the log entries after `positions`, the deletes among them, and the
        names whose last entry is an upsert, read and loaded; the loop then applies them. None: resync."""
        assert self._reader is not None
        # a reader that reads the rows with the log (`FeedReader.changes_after`: one round trip on
        # PostgreSQL where the log and `fetch` took two); any other reads the log, then fetches
        read_with_rows = getattr(self._reader, "changes_after", None)
        published: list[PublishedFunction] | None = None
        if read_with_rows is not None:
            read = read_with_rows(positions, self.gateway)
            events, published = (None, None) if read is None else read
        else:
            events = self._reader.events_after(positions, self.gateway)
        if not events:
            return None if events is None else Changes([])
        changes = read_events(events)
        if changes.configured and self._on_config is not None:
            self._on_config(changes.configured)
        if changes.canaries and self._on_canary is not None:
            self._on_canary()
        changes.rows = self._upserted_rows(changes, published or [])
        changes.results = load_missing(self.registry, changes.rows, self._load_rows)
        return changes

    def _upserted_rows(self, changes: Changes, published: list[PublishedFunction]) -> list[PublishedFunction]:
        """The published rows of the names whose last entry is an upsert: those read with the log,
        and `fetch`ed for any it did not bring (every one, from a reader that reads only the log)."""
        assert self._reader is not None
        rows = []
        for gateway, names in changes.upserted.items():
            wanted = set(names)
            found = [row for row in published if row.gateway == gateway and row.name in wanted]
            missing = sorted(wanted - {row.name for row in found})
            rows += found + (self._reader.fetch(gateway, missing) if missing else [])
        return rows

    def _unload(self, gateway: str, name: str, version: int | None) -> None:
        """Take a function out of the registry (a delete older than the live version is ignored), and
        report and forget it."""
        if not self.registry.remove(gateway, name, version):
            return
        self._report(Removed(gateway, name))
        if self._on_removed is not None:
            self._on_removed(gateway, name)
        if version is None:
            logger.info("runtime: unloaded %s/%s (no longer published)", gateway, name)
        else:
            logger.info("runtime: unloaded %s/%s v%d", gateway, name, version)

    # loading -------------------------------------------------------------------------------------
    async def _load(self, rows: list[PublishedFunction], *, freeze: bool = False) -> None:
        """Load and apply `rows`; `freeze`: a cold start's bulk load (called with the collector paused;
        nothing was loaded before, so no replaced version became garbage meanwhile)."""
        if not rows:
            return
        if not freeze:
            self._freezer.thaw()
        await self._load_then(
            lambda results: apply_loads(self.registry, rows, results, self._report, self.metrics),
            load_missing,
            self.registry,
            rows,
            self._load_rows,
        )
        if freeze:
            self._freezer.freeze()

    def _load_here(self, rows: list[PublishedFunction]) -> list[LiveVersion | LoadError]:
        """Load in this process (tests, and the cells' own loads); a supervisor passes `load_rows`."""
        return load_rows(rows, self.load_timeout_s)

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

    def _report(self, report: Report) -> None:
        """Tell the control plane, in order, without waiting for it (`runtime.reports`)."""
        if self._reports is not None:
            self._reports.send(report)

    def report(self, report: Report) -> None:
        """`_report` for the supervisor's cells (a cold start's pending versions loaded since: `Warmed`),
        queued behind the watcher's own reports."""
        self._report(report)

    def _notify(self) -> None:
        self.last_change_at = time.time()
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def _feed_state_changed(self, state: str, since: datetime) -> None:
        self._last_heartbeat = time.monotonic()
        self._report(Heartbeat(state, since))

    def _feed_failed(self, error: str) -> None:
        self.last_error = error
