"""When the watcher looks at the feed: a wake set by a change in the database folder (inotify read by the
event loop, `runtime.inotify`, or watchfiles where that is missing), by a push feed's event
(PostgreSQL's LISTEN/NOTIFY, `store.notifications`), or by `poke()`; the watcher adds a slow poll.

The push feed also says whether it is connected: on every (re)connect the watcher catches up (the first
time, from the log: it has just synced) or resyncs from a snapshot (after an outage: whatever happened
meanwhile); while disconnected the runtime keeps serving from memory and says so in its heartbeat.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fnstage.runtime.inotify import FolderWatch
from fnstage.runtime.log_format import fields
from fnstage.store.records import FeedEvent

if TYPE_CHECKING:  # psycopg: imported only where a reader pushes changes (PostgreSQL)
    from fnstage.store.notifications import Signal

logger = logging.getLogger("fnstage.runtime")


class FeedWakes:
    """The wake event and what sets it; the push feed's state. Used on the event loop only."""

    def __init__(
        self,
        *,
        poll_interval_s: float,
        watch_files: bool,
        on_state: Callable[[str, datetime], None],
        on_error: Callable[[str], None],
    ) -> None:
        self.poll_interval_s = poll_interval_s  # only said in the log: the watcher polls
        self.watch_files = watch_files
        self._on_state = on_state  # the push feed connected or disconnected (state, since)
        self._on_error = on_error  # the push feed itself failed (what happened)
        self._wake = asyncio.Event()
        self.feed_state = "connected"  # "disconnected" while a push feed (NOTIFY) is down
        self.feed_since = datetime.now(UTC)
        self.resync_wanted = False  # the push feed reconnected after an outage: read a snapshot
        self.reconnected = asyncio.Event()  # the push feed connected again: the database is back
        self._heard_once = False
        self.folder_watch: FolderWatch | None = None
        self._file_stop: Any = None
        self._tasks: list[asyncio.Task[None]] = []

    def set(self) -> None:
        self._wake.set()

    async def within(self, timeout_s: float) -> bool:
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

    def follow(self, reader: Any) -> None:
        """Wake on changes in `reader`'s database folder and on its push feed, where it has them."""
        self._watch_folder(reader.database_dir)
        listen: Callable[[], AsyncIterator[Signal] | None] | None = getattr(reader, "notifications", None)
        signals = listen() if listen is not None else None
        if signals is not None:
            self._tasks.append(asyncio.create_task(self._follow(signals), name="fnstage-notifications"))

    async def close(self) -> None:
        if self.folder_watch is not None:
            self.folder_watch.close()
            self.folder_watch = None
        if self._file_stop is not None:
            self._file_stop.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    # the push feed -------------------------------------------------------------------------------
    async def _follow(self, signals: AsyncIterator[Signal]) -> None:
        """Turn the push feed's signals into wakes, resyncs and the feed state the heartbeat reports.
        Should the feed itself fail, say so: the slow poll keeps the runtime following the log."""
        try:
            await self._follow_signals(signals)
        except Exception as exc:
            logger.error(
                "runtime: the change feed failed; polling every %g s", self.poll_interval_s, exc_info=True
            )
            self._set_state("disconnected", datetime.now(UTC))
            self._on_error(f"change feed: {type(exc).__name__}: {exc}")

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
                self.resync_wanted = self._heard_once
                self._heard_once = True
                self._set_state("connected", signal.at)
                self._wake.set()
                self.reconnected.set()
            elif isinstance(signal, Disconnected) and self.feed_state != "disconnected":
                self._set_state("disconnected", signal.since)

    def _set_state(self, state: str, since: datetime) -> None:
        self.feed_state, self.feed_since = state, since
        if state == "disconnected":
            logger.warning(
                "runtime: feed disconnected since %s; serving from memory",
                since.isoformat(),
                extra=fields(event="feed_disconnected"),
            )
        self._on_state(state, since)

    # the database folder -------------------------------------------------------------------------
    def _watch_folder(self, folder: Path | None) -> None:
        if folder is None or not self.watch_files or self.folder_watch is not None:
            return
        # inotify on the event loop where there is one (no thread, no polling); watchfiles elsewhere
        self.folder_watch = FolderWatch.open(folder, self._wake.set)
        if self.folder_watch is not None:
            return
        import anyio

        self._file_stop = anyio.Event()
        self._tasks.append(asyncio.create_task(self._watch_files(folder), name="fnstage-watch-files"))

    async def _watch_files(self, folder: Path) -> None:
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
