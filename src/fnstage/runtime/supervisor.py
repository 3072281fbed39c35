"""The runtime supervisor: the privileged half of `fnstage runtime`, which never runs function code.

It follows the store's change feed with the watcher (resync, catch-up, forward only: `runtime.watcher`),
but where a runtime used to load a row into its own memory, the supervisor hands it to the cell of the
row's (gateway, environment) (`runtime.cells`), and keeps only a mirror of what is live there. It writes
status to the store for each cell (a cell is a runtime row: "live 1/1" counts the cells of an
environment), restarts cells that die, and, when it serves several cells on one port, runs the front
that routes each request to its cell.

Two layouts:
- one cell (`--gateway GW --env ENV`, production behind a proxy): the cell itself serves `--port`;
- many cells (`fnstage up`, or a runtime without `--env`): cells serve Unix sockets in a private folder,
  and a front on `--port` routes host `{gateway}.{env}.<domain>` and path `/{gateway}/{env}/...`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import secrets
import shutil
import signal
import socket
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from fnstage.runtime.cell import CellSpec
from fnstage.runtime.cells import Cell, CellEvents, CellSet, Slot
from fnstage.runtime.loader import LiveVersion
from fnstage.runtime.registry import Registry
from fnstage.runtime.split_follower import SplitFollower
from fnstage.runtime.version_source import VersionSource
from fnstage.runtime.watcher import FeedReaderLike, Watcher
from fnstage.runtime.zygote import Zygote
from fnstage.store.records import FeedEvent, FunctionCounts, PublishedFunction

logger = logging.getLogger("fnstage.runtime")


@dataclass(frozen=True)
class SupervisorSettings:
    database_url: str
    host: str = "127.0.0.1"
    port: int = 8471
    gateway: str | None = None
    env: str | None = None  # one cell, serving `port` itself
    domain: str = "localhost"
    public_url: str | None = None
    log_level: str = "info"
    sandbox: bool = True


class EnvironmentFeed:
    """The store's feed narrowed to one environment (a runtime with `--env`): the watcher sees only that
    environment's rows. Another environment's log entries still move the positions forward (a `skip`
    event at the last one), so a busy dev never makes a prod runtime read the same entries again."""

    def __init__(self, reader: FeedReaderLike, env: str) -> None:
        self.reader = reader
        self.prefix = f"{env}/"
        self.database_dir = reader.database_dir
        listen = getattr(reader, "notifications", None)
        if listen is not None:
            self.notifications = listen

    def snapshot(self, gateway: str | None) -> tuple[list[PublishedFunction], dict[str, int]]:
        rows, positions = self.reader.snapshot(gateway)
        return [r for r in rows if r.name.startswith(self.prefix)], positions

    def events_after(self, positions: dict[str, int], gateway: str | None) -> list[FeedEvent] | None:
        events = self.reader.events_after(positions, gateway)
        if not events:
            return events
        mine = [e for e in events if e.name.startswith(self.prefix)]
        last: dict[str, int] = {}
        for event in events:
            last[event.gateway] = max(last.get(event.gateway, 0), event.seq)
        mine += [FeedEvent(gw, seq, "", 0, "skip") for gw, seq in last.items()]
        return mine

    def fetch(self, gateway: str, names: list[str]) -> list[PublishedFunction]:
        return self.reader.fetch(gateway, [n for n in names if n.startswith(self.prefix)])

    def change_token(self) -> int:
        return self.reader.change_token()

    def close(self) -> None:
        self.reader.close()


class MirrorRegistry(Registry):
    """What is live in the cells, as the watcher sees it; a removal is passed on to the cell, in order,
    on a thread of its own (a cell being restarted never holds the event loop)."""

    def __init__(self, cells: CellSet) -> None:
        super().__init__()
        self.cells = cells
        self._removals = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fnstage-cells")

    def remove(self, gateway: str, name: str, version: int | None = None) -> bool:
        removed = super().remove(gateway, name, version)
        if removed:
            self._removals.submit(_logged, self.cells.remove, gateway, name, version)
        return removed


def _logged(call: Any, *args: Any) -> None:
    """Run `call` on a thread of the supervisor's, logging what it raises (never lost in a future)."""
    try:
        call(*args)
    except Exception:
        logger.exception("runtime: %s%s failed", getattr(call, "__name__", call), args)


class CellReports(CellEvents):
    """What the cells' events change: the front's routes, and the supervisor's row in the store (one
    runtime row per supervisor, as before cells: "live 1/1" counts runtimes, not cells; the row says
    which sandbox protections its cells run without, and carries the cells' request counts)."""

    def __init__(self) -> None:
        self.reporter: Any = None  # the watcher's, once made
        self.front: Any = None  # set when a front routes to the cells
        self.missing: dict[Slot, list[str]] = {}
        self._lock = threading.Lock()

    def ready(self, slot: Slot, cell: Cell) -> None:
        missing = [str(m) for m in cell.sandbox.get("missing") or []]
        with self._lock:
            changed = self.missing.get(slot) != missing
            self.missing[slot] = missing
        if missing and changed:
            logger.warning("runtime: cell %s/%s runs without: %s", *slot, "; ".join(missing))
        if changed:
            self._report_sandbox()
        if self.front is not None and cell.spec.uds is not None:
            self.front.cell_ready(slot, cell.spec.uds)

    def restarting(self, slot: Slot, cause: str) -> None:
        if self.front is not None:
            self.front.cell_restarting(slot, cause)

    def stopped(self, slot: Slot) -> None:
        if self.front is not None:
            self.front.cell_stopped(slot)

    def cell_counts(self, slot: Slot, items: list[FunctionCounts]) -> None:
        if self.reporter is not None:
            _quietly(self.reporter.counts, items)

    def lost(self, slot: Slot, row: PublishedFunction, cause: str) -> None:
        if self.reporter is not None:
            _quietly(self.reporter.failed, row.gateway, row.name, row.version, cause)

    def sandbox(self) -> dict[str, Any]:
        with self._lock:
            missing = sorted({m for lines in self.missing.values() for m in lines})
            return {"missing": missing, "cells": len(self.missing)}

    def _report_sandbox(self) -> None:
        if self.reporter is not None and hasattr(self.reporter, "sandbox"):
            _quietly(self.reporter.sandbox, self.sandbox())


def _quietly(call: Any, *args: Any) -> None:
    try:
        call(*args)
    except Exception:
        logger.warning("runtime: could not report %s", getattr(call, "__name__", call), exc_info=True)


class Supervisor:
    """One `fnstage runtime`: the watcher, the cells, and (with several cells) the front."""

    def __init__(self, settings: SupervisorSettings, zygote: Zygote) -> None:
        from fnstage.runtime.watchdog import WatchdogSettings

        self.settings = settings
        self.folder = Path(tempfile.mkdtemp(prefix="fnstage-cells-"))
        os.chmod(self.folder, 0o711)  # cells (their own users) reach their own folders only
        self.keys: dict[Slot, str] = _Keys()
        self.control_key = secrets.token_urlsafe(32)  # the control plane's key to this runtime
        self.reports = CellReports()
        self._watchdog = WatchdogSettings.from_env()
        self.cells = CellSet(self._spec, self.reports, zygote, keep_empty=settings.env is not None)
        self.registry = MirrorRegistry(self.cells)
        self.versions = VersionSource(settings.database_url)  # what version URLs run (history entries)
        self.cells.version_source = self.versions
        self.splits = SplitFollower(
            settings.database_url, self.cells, self._runtime_id, gateway=settings.gateway, env=settings.env
        )
        reader = functools.partial(_feed_reader, settings.database_url, settings.env)
        self.watcher = Watcher(
            self.registry,
            reader,
            gateway=settings.gateway,
            reporter_factory=self._reporter,
            load_rows=self.cells.load,
        )

    def _spec(self, slot: Slot) -> CellSpec:
        gateway, env = slot
        folder = self.folder / f"{gateway}.{env}"
        spec = CellSpec(
            gateway=gateway,
            env=env,
            temp_dir=folder,
            # alone on its port, the cell is what the control plane reaches with the runtime's key
            control_key=self.control_key if self.settings.env is not None else self.keys[slot],
            host=self.settings.host,
            domain=self.settings.domain,
            bound=self.settings.gateway is not None,
            sandbox=self.settings.sandbox,
            log_level="warning" if self.settings.log_level == "info" else self.settings.log_level,
            watchdog=self._watchdog,
        )
        if self.settings.env is not None:
            return replace(spec, port=self.settings.port)
        return replace(spec, uds=folder / "cell.sock")

    def _runtime_id(self) -> str | None:
        reporter = self.reports.reporter
        return reporter.identity.id if reporter is not None else None

    def _reporter(self) -> Any:
        """The supervisor's row in the store (on the watcher's report thread)."""
        from fnstage.store.runtime_status import RuntimeIdentity, RuntimeReporter

        s = self.settings
        host = "127.0.0.1" if s.host in ("0.0.0.0", "::") else s.host
        url = s.public_url or f"http://{host}:{s.port}"
        identity = RuntimeIdentity.new(s.gateway, url, os.getpid(), self.control_key, environment=s.env)
        reports = self.reports

        class SupervisorReporter(RuntimeReporter):
            def register(self) -> None:
                super().register()
                reports.reporter = self
                if reports.missing:  # cells that started before the row existed (a runtime's one cell)
                    self.sandbox(reports.sandbox())

        return SupervisorReporter(s.database_url, identity)

    @property
    def synced(self) -> bool:
        return bool(self.watcher.status()["synced"])

    def public_status(self) -> dict[str, Any]:
        """What anyone who reaches the port may know: which protections the cells run without."""
        s = self.settings
        return {"pid": os.getpid(), "gateway": s.gateway, "env": s.env, "sandbox": self.reports.sandbox()}

    def cell_socket(self, slot: Slot) -> tuple[Path, str] | None:
        """Where the slot's cell listens and its key, for the control plane's requests (logs)."""
        spec = self.cells.spec_of(slot)
        if spec is None or spec.uds is None:
            return None
        return spec.uds, spec.control_key

    def status(self) -> dict[str, Any]:
        cells = self.cells.status()
        return {
            "pid": os.getpid(),
            "gateway": self.settings.gateway,
            "env": self.settings.env,
            "sandbox": self.reports.sandbox(),
            "cells": cells,
            "quarantined": self.cells.quarantine_list(),
            "watcher": self.watcher.status(),
        }

    async def run(self, stop: asyncio.Event, front: Any = None) -> None:
        loop = asyncio.get_running_loop()
        if self.settings.env is not None:
            slot = (self.settings.gateway or "", self.settings.env)
            cell = await loop.run_in_executor(None, self.cells.ensure, slot)
            if cell is None:
                raise SystemExit(f"the cell for {slot[0]}/{slot[1]} cannot start")
        await self.watcher.start()
        self.splits.start()
        where = f"gateway {self.settings.gateway}" if self.settings.gateway else "every gateway"
        logger.info("runtime: supervising cells of %s on port %d", where, self.settings.port)
        try:
            await stop.wait()
        finally:
            if front is not None:  # the port first: a runtime started in this one's place can listen
                with contextlib.suppress(Exception):
                    await front.close()
            await loop.run_in_executor(None, self.splits.stop)
            await self.watcher.stop()
            await loop.run_in_executor(None, self.cells.stop_all)
            self.versions.close()
            shutil.rmtree(self.folder, ignore_errors=True)


class _Keys(dict[Slot, str]):
    """One control key per cell slot, kept across the cell's restarts (its runtime row keeps it)."""

    def __missing__(self, slot: Slot) -> str:
        import secrets

        key = self[slot] = secrets.token_urlsafe(32)
        return key


def _feed_reader(database_url: str, env: str | None) -> FeedReaderLike:
    from fnstage.store.feed import FeedReader

    reader: FeedReaderLike = FeedReader(database_url)
    return EnvironmentFeed(reader, env) if env is not None else reader


def run_supervisor(settings: SupervisorSettings) -> None:
    """`fnstage runtime`: supervise cells until SIGTERM or SIGINT (blocking)."""
    logging.basicConfig(level=settings.log_level.upper(), format="%(message)s")
    # the zygote first: a fresh interpreter, started before this process opens any connection
    zygote = Zygote()
    zygote.start()
    try:
        try:
            import uvloop

            uvloop.run(_main(settings, zygote))
        except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
            asyncio.run(_main(settings, zygote))
    finally:
        zygote.stop()


async def _main(settings: SupervisorSettings, zygote: Zygote) -> None:
    supervisor = Supervisor(settings, zygote)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    front = None
    if settings.env is None:
        front = await _start_front(supervisor, settings)
    await supervisor.run(stop, front)


async def _start_front(supervisor: Supervisor, settings: SupervisorSettings) -> Any:
    from fnstage.runtime.front_link import start_front

    front = await start_front(supervisor, settings)
    supervisor.reports.front = front
    return front


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


_ = LiveVersion  # the mirror holds LiveVersions made by runtime.cells
