"""What the watcher does with loaded versions: swap them into the registry (forward only), record the
failures, log and report both, count them for /metrics; and a cold start's bulk load with the cyclic
garbage collector paused and its objects frozen (the cells' loads do the same).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol, cast

from fnstage.runtime.loader import LiveVersion, LoadError
from fnstage.runtime.log_format import fields
from fnstage.runtime.registry import Registry
from fnstage.runtime.reports import Failed, Live, Report
from fnstage.store.records import PublishedFunction, published_time

logger = logging.getLogger("fnstage.runtime")

# A first load at least this large (a cold start) runs with the cyclic garbage collector paused, and what
# it loaded is then frozen (`gc.freeze`): measured with 10,000 3-file functions, the collections that
# the load's ~470,000 new objects trigger took longer (0.7 s) than the loads themselves (0.55 s), and
# re-enabling the collector without freezing only moves that cost onto the first requests. The frozen
# objects are thawed (`gc.unfreeze`) at the next change, so a replaced version is collected as usual.
BULK_LOAD = 1000

# The `load_ms` of a supervisor's mirror of a version its cell holds pending (a cold start's, not run
# yet: `cells.CellSet._result`): reported pending, not live, and not counted as a load.
PENDING_LOAD_MS = -1.0

LoadRows = Callable[[list[PublishedFunction]], list[LiveVersion | LoadError]]
# rows loaded as they are read (a cold start's snapshot): every row taken, its result, and what reading
# raised, None if nothing (the rows taken before it are loaded, and applied)
LoadStream = Callable[
    [Iterable[list[PublishedFunction]]],
    tuple[list[PublishedFunction], list[LiveVersion | LoadError], BaseException | None],
]


class LoadMetrics(Protocol):
    """Where the watcher counts loads (`runtime.metrics.RuntimeMetrics`)."""

    def loaded(self, gateway: str, name: str, seconds: float) -> None: ...

    def load_failed(self, gateway: str, name: str, seconds: float | None) -> None: ...

    def live_after_publish(self, gateway: str, name: str, seconds: float) -> None: ...


def load_missing(
    registry: Registry, rows: list[PublishedFunction], load_rows: LoadRows
) -> list[LiveVersion | LoadError]:
    """The result of each row: the live version where it is live already (an event seen through a
    snapshot), else what `load_rows` made of it (one call for all of them)."""
    results: list[LiveVersion | LoadError | None] = []
    wanted: list[PublishedFunction] = []
    for row in rows:
        live = registry.get(row.gateway, row.name)
        if live is not None and live.version == row.version and live.bundle_hash == row.bundle_hash:
            results.append(live)
            continue
        results.append(None)
        wanted.append(row)
    loaded = iter(load_rows(wanted) if wanted else [])
    return [result if result is not None else next(loaded) for result in results]


def apply_loads(
    registry: Registry,
    rows: list[PublishedFunction],
    results: list[LiveVersion | LoadError],
    report: Callable[[Report], None],
    metrics: LoadMetrics | None = None,
    *,
    just_published: bool = False,
) -> None:
    """Swap in what loaded (never backwards), record what failed, and report both (the lives in one
    write). `just_published`: rows the feed announced now (a catch-up), whose publish -> live is
    measured; a resync's rows may have been published long before this runtime started.

    A load of BULK_LOAD rows or more (a cold start) logs each function loaded at debug and one line
    at info: 100,000 lines at info cost a cold start 1.0 s of CPU (0.08 s now). Each failure is a warning."""
    lives: list[tuple[str, str, int, str]] = []
    held: list[tuple[str, str, int, str]] = []  # pending in their cells: reported so (`Live.pending`)
    many = len(rows) >= BULK_LOAD
    level = logging.DEBUG if many else logging.INFO
    failed = 0
    # a bulk load with no failure (a cold start's 100,000) is swapped in under one taking of the
    # registry's lock, after the cells' last answer: each `apply` on its own was most of this loop
    bulk = many and metrics is None and not any(isinstance(r, LoadError) for r in results)
    applied = iter(registry.apply_many(cast(list[LiveVersion], results)) if bulk else ())
    for row, result in zip(rows, results, strict=True):
        if metrics is not None and registry.get(row.gateway, row.name) is not result:
            measure(metrics, row, result, just_published)
        if isinstance(result, LoadError):
            failed += 1
            registry.record_failure(row.gateway, row.name, row.version, result)
            report(Failed(row.gateway, row.name, row.version, result.summary))
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
        elif next(applied) if bulk else registry.apply(result):
            (held if result.load_ms == PENDING_LOAD_MS else lives).append(
                (row.gateway, row.name, row.version, row.bundle_hash)
            )
            if logger.isEnabledFor(level):  # not made to be dropped: 0.07 s per 100,000
                logger.log(
                    level,
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
    if many:
        logger.info(
            "runtime: loaded %d function(s), %d failed",
            len(lives),
            failed,
            extra=fields(event="loaded_many", functions=len(lives), failed=failed),
        )
    if lives:
        report(Live(lives))
    if held:
        report(Live(held, pending=True))


def measure(  # a load done now (not a version that was already live)
    metrics: LoadMetrics, row: PublishedFunction, result: LiveVersion | LoadError, just_published: bool
) -> None:
    if isinstance(result, LoadError):
        seconds = result.load_ms / 1000 if result.load_ms is not None else None
        metrics.load_failed(row.gateway, row.name, seconds)
        return
    if result.load_ms == PENDING_LOAD_MS:  # a cold start's version its cell holds pending: not run
        return
    metrics.loaded(row.gateway, row.name, result.load_ms / 1000)
    published = published_time(row) if just_published else None
    if published is not None:
        metrics.live_after_publish(row.gateway, row.name, time.time() - published)


class Freezer:
    """A cold start's loaded objects frozen (`gc.freeze`) until the next change thaws them: a replaced
    version's modules are a reference cycle, freed only by the collector."""

    def __init__(self) -> None:
        self.frozen = False

    def freeze(self) -> None:
        gc.freeze()
        self.frozen = True

    def thaw(self) -> None:
        if self.frozen:
            self.frozen = False
            gc.unfreeze()


@contextlib.contextmanager
def collector_paused(paused: bool = True) -> Iterator[None]:
    """The cyclic garbage collector off for a bulk load (process-wide; reference counting still frees
    everything that is not in a cycle); back on after, unless it was off before. `paused` False: a
    small load, nothing changes."""
    enabled = gc.isenabled()
    if paused:
        gc.disable()
    try:
        yield
    finally:
        if paused and enabled:
            gc.enable()
