"""What a runtime tells the control plane: typed report messages, written in order on a thread of their own.

The watcher never waits on the control plane's bookkeeping (a cold start of 10,000 functions writes
10,000 rows): it queues a message and goes on. Each message is a dataclass, so a report that names a
method the reporter lacks, or passes it the wrong arguments, is a type error, not a log line at run time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from fnstage.store.records import FunctionCounts

logger = logging.getLogger("fnstage.runtime")


class ReporterLike(Protocol):
    """Tells the control plane what is live here (`fnstage.store.runtime_status.RuntimeReporter`)."""

    def register(self) -> None: ...

    def heartbeat(self, feed_state: str = "connected", feed_since: datetime | None = None) -> None: ...

    def live(self, gateway: str, name: str, version: int) -> None: ...

    def live_many(self, items: Sequence[tuple[str, str, int, str]], *, pending: bool = False) -> None: ...

    def warmed(self, items: Sequence[tuple[str, str, int]]) -> None: ...

    def failed(self, gateway: str, name: str, version: int, error: str) -> None: ...

    def removed(self, gateway: str, name: str) -> None: ...

    def counts(self, items: list[FunctionCounts]) -> None: ...

    def deregister(self) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Registered:
    """This runtime is up: its row in the store."""


@dataclass(frozen=True)
class Heartbeat:
    feed_state: str  # "connected", or "disconnected" while a push feed (NOTIFY) is down
    feed_since: datetime


@dataclass(frozen=True)
class Live:
    items: Sequence[tuple[str, str, int, str]]  # (gateway, name, version, bundle hash), one write
    pending: bool = False  # held by their cells, not run yet (a cold start's): `Warmed` once loaded


@dataclass(frozen=True)
class Warmed:
    """Versions reported pending that their cells have loaded now: live (one write per batch)."""

    items: Sequence[tuple[str, str, int]]  # (gateway, name, version)


@dataclass(frozen=True)
class Failed:
    gateway: str
    name: str
    version: int
    error: str  # the load error's one-line summary


@dataclass(frozen=True)
class Removed:
    gateway: str
    name: str


@dataclass(frozen=True)
class Counted:
    items: list[FunctionCounts]  # requests and failures per live version, changed since the last


@dataclass(frozen=True)
class Deregistered:
    """This runtime is stopping: its row goes."""


Report = Registered | Heartbeat | Live | Warmed | Failed | Removed | Counted | Deregistered


def deliver(reporter: ReporterLike, report: Report) -> None:
    """Write one report through `reporter` (on the report thread)."""
    match report:
        case Registered():
            reporter.register()
        case Heartbeat(feed_state, feed_since):
            reporter.heartbeat(feed_state, feed_since)
        case Live(items, pending):
            if pending:
                reporter.live_many(items, pending=True)
            else:
                reporter.live_many(items)
        case Warmed(items):
            reporter.warmed(items)
        case Failed(gateway, name, version, error):
            reporter.failed(gateway, name, version, error)
        case Removed(gateway, name):
            reporter.removed(gateway, name)
        case Counted(items):
            reporter.counts(items)
        case Deregistered():
            reporter.deregister()


class Reports:
    """The reporter, made and written on one thread of its own, in the order the reports were sent.
    A failure to report is logged, never a reason to stop serving."""

    def __init__(self, factory: Callable[[], ReporterLike]) -> None:
        self._factory = factory
        self.reporter: ReporterLike | None = None  # once made (the watchdog deregisters through it)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fnstage-report")

    async def open(self) -> None:
        """Make the reporter (it connects to the store) and register; again after a failed attempt."""
        if self.reporter is None:
            loop = asyncio.get_running_loop()
            self.reporter = await loop.run_in_executor(self._thread, self._factory)
            self.send(Registered())

    def send(self, report: Report) -> None:
        """Queue `report`; does nothing before the reporter is made (or after close)."""
        if self.reporter is not None:
            self._thread.submit(_write, self.reporter, report)

    async def close(self) -> None:
        """Deregister, close the reporter, and return once every queued report is written."""
        reporter, self.reporter = self.reporter, None
        if reporter is not None:
            self._thread.submit(_write, reporter, Deregistered())
            self._thread.submit(_close, reporter)
        await asyncio.get_running_loop().run_in_executor(self._thread, lambda: None)
        self._thread.shutdown(wait=False)


def _write(reporter: ReporterLike, report: Report) -> None:
    try:
        deliver(reporter, report)
    except Exception:
        logger.warning("runtime: could not report %s", report, exc_info=True)


def _close(reporter: ReporterLike) -> None:
    try:
        reporter.close()
    except Exception:
        logger.warning("runtime: could not close the reporter", exc_info=True)
