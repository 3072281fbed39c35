"""The runtime supervisor: the privileged half of `fnstage runtime`, which never runs function code.

It follows the store's change feed with the watcher (resync, catch-up, forward only: `runtime.watcher`),
but where a runtime used to load a row into its own memory, the supervisor hands it to the cell of the
row's (gateway, environment) (`runtime.cells`), and keeps only a mirror of what is live there. It writes
status to the store for each cell (a cell is a runtime row: "live 1/1" counts the cells of an
environment), restarts cells that die, runs the front on its port that routes each request to its
cell (not with `--env`: below), and collects the host's dependency environments nothing needs
(`runtime.environment_collector`).

Cells serve Unix sockets in a private folder, and a front on `--port` routes each request to its
cell: host `{gateway}.{env}.<domain>`, path `/{gateway}/{env}/...` (`fnstage up`, or a runtime without
`--gateway`), or `/{env}/...` (a runtime bound to its gateway). A runtime narrowed to one environment
(`--gateway GW --env ENV`, production behind a proxy) has no front: its environment's cell, kept up
even when empty, serves `--port` itself (held until the first sync), and a function pinned to a lock
runs in that lock's cell, on a Unix socket its environment's cell forwards the function's requests to
(`runtime.forward`; `CellSet` tells it where, and "live" waits for its answer). So a function pinned to
`pkg==1.0` and another pinned to `pkg==2.0` are served side by side from one port, and the functions
without a lock pay no hop at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import os
import secrets
import shutil
import signal
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fnstage.deps.environments import Environments
from fnstage.runtime.cell import CellSpec
from fnstage.runtime.cell_server import UDS_PATH_MAX
from fnstage.runtime.cells import Cell, CellEvents, CellSet, Slot, slot_key
from fnstage.runtime.configuration import ConfigDelivery
from fnstage.runtime.environment_collector import EnvironmentCollector
from fnstage.runtime.loader import LiveVersion, LoadError, loaded_in
from fnstage.runtime.loads import PENDING_LOAD_MS
from fnstage.runtime.log_format import configure, fields
from fnstage.runtime.log_process import LogPipe, LogProcess
from fnstage.runtime.log_writer import LogSettings
from fnstage.runtime.registry import Registry
from fnstage.runtime.reports import Failed, Live, Report, Warmed
from fnstage.runtime.split_follower import SplitFollower
from fnstage.runtime.version_source import VersionSource
from fnstage.runtime.watcher import FeedReaderLike, Watcher
from fnstage.runtime.zygote import Zygote
from fnstage.store.records import FeedEvent, FunctionCounts, PublishedFunction

if TYPE_CHECKING:
    from fnstage.runtime.metrics import RuntimeMetrics

logger = logging.getLogger("fnstage.runtime")


@dataclass(frozen=True)
class SupervisorSettings:
    database_url: str
    host: str = "127.0.0.1"
    port: int = 8471
    gateway: str | None = None
    env: str | None = None  # only this environment of `gateway` (production, behind a proxy)
    domain: str = "localhost"
    public_url: str | None = None
    log_level: str = "info"
    sandbox: bool = True
    keyring: Any = None  # fnstage.secretbox.KeyRing: opens the secrets this runtime's cells receive
    metrics_port: int | None = None  # serve /metrics there (runtime.metrics); None: nothing is counted
    metrics_host: str = "127.0.0.1"
    log_format: str = "text"  # or "json" (runtime.log_format)
    cell_interface: str = "rsgi"  # what cells' servers speak (`runtime.server.cell_interface`)
    # what an --env runtime's environment cell speaks on the runtime's port (no front carries its
    # headers: `runtime.server.cell_interface(public=True)`)
    public_cell_interface: str = "asgi"

    @property
    def metrics(self) -> bool:
        return self.metrics_port is not None


class EnvironmentFeed:
    """The store's feed narrowed to one environment (a runtime with `--env`): the watcher sees only that
    environment's rows. Another environment's log entries still move the positions forward (a `skip`
    event at the last one), so a busy dev never makes a prod runtime read the same entries again."""

    def __init__(self, reader: FeedReaderLike, env: str) -> None:
        self.reader = reader
        self.prefix = f"{env}/"
        self.database_dir = reader.database_dir
        self.token_on_loop = getattr(reader, "token_on_loop", False)
        listen = getattr(reader, "notifications", None)
        if listen is not None:
            self.notifications = listen
        read_with_rows = getattr(reader, "changes_after", None)
        if read_with_rows is not None:  # the watcher then reads the rows with the log
            self._read_with_rows = read_with_rows
            self.changes_after = self._changes_after
        read_chunks = getattr(reader, "snapshot_chunks", None)
        if read_chunks is not None:  # a cold start loads the snapshot as it is read
            self._read_chunks = read_chunks
            self.snapshot_chunks = self._snapshot_chunks

    def snapshot(self, gateway: str | None) -> tuple[list[PublishedFunction], dict[str, int]]:
        rows, positions = self.reader.snapshot(gateway)
        return [r for r in rows if r.name.startswith(self.prefix)], positions

    def _snapshot_chunks(
        self, gateway: str | None, positions: dict[str, int]
    ) -> Iterator[list[PublishedFunction]]:
        with contextlib.closing(self._read_chunks(gateway, positions)) as chunks:
            for chunk in chunks:
                mine = [r for r in chunk if r.name.startswith(self.prefix)]
                if mine:
                    yield mine

    def events_after(self, positions: dict[str, int], gateway: str | None) -> list[FeedEvent] | None:
        return self._mine(self.reader.events_after(positions, gateway))

    def _changes_after(
        self, positions: dict[str, int], gateway: str | None
    ) -> tuple[list[FeedEvent], list[PublishedFunction]] | None:
        read = self._read_with_rows(positions, gateway)
        if read is None:
            return None
        events, rows = read
        return self._mine(events) or [], [r for r in rows if r.name.startswith(self.prefix)]

    def _mine(self, events: list[FeedEvent] | None) -> list[FeedEvent] | None:
        """This environment's entries, and a `skip` at each gateway's last entry (positions move on)."""
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
        self.log_writer: LogProcess | None = None  # durable invocation logs, when they are on
        self.registry: Registry | None = None  # the supervisor's mirror of what is live in the cells
        self.send_report: Callable[[Report], None] | None = None  # the watcher's queue of reports
        self.missing: dict[Slot, list[str]] = {}
        self.sockets: dict[Slot, Path] = {}  # where each ready cell listens (a lock cell's routes go)
        self._lock = threading.Lock()
        self._writes = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fnstage-counts")

    def ready(self, slot: Slot, cell: Cell) -> None:
        missing = [str(m) for m in cell.sandbox.get("missing") or []]
        with self._lock:
            changed = self.missing.get(slot) != missing
            self.missing[slot] = missing
        if missing and changed:
            logger.warning("runtime: cell %s runs without: %s", slot_key(slot), "; ".join(missing))
        if changed:
            self._report_sandbox()
        if cell.spec.uds is not None:
            self.sockets[slot] = cell.spec.uds
        if self.front is not None and cell.spec.uds is not None:
            self.front.cell_ready(slot, cell.spec.uds)

    def moved(self, gateway: str, name: str, slot: Slot, cell: Cell) -> None:
        if self.front is not None and cell.spec.uds is not None:
            self.front.function_moved(gateway, name, slot, cell.spec.uds)

    def restarting(self, slot: Slot, cause: str) -> None:
        if self.front is not None:
            self.front.cell_restarting(slot, cause)

    def stopped(self, slot: Slot) -> None:
        uds = self.sockets.pop(slot, None)
        if self.front is not None:
            self.front.cell_stopped(slot, uds)

    def cell_counts(self, slot: Slot, items: list[FunctionCounts]) -> None:
        # on a thread of its own: a cell's channel reader that waited on the store (SQLite locked,
        # PostgreSQL gone) would stop reading, and the cell's next message would block the cell
        if self.reporter is not None:
            self._writes.submit(_quietly, self.reporter.counts, items)

    def log_pipe(self, slot: Slot) -> LogPipe | None:
        return self.log_writer.pipe(slot[0], slot[1]) if self.log_writer is not None else None

    def installing(self, row: PublishedFunction) -> None:
        """Status and `--wait` say "installing dependencies" for this version meanwhile."""
        if self.reporter is not None:
            _quietly(self.reporter.installing, row.gateway, row.name)

    def lost(self, slot: Slot, row: PublishedFunction, cause: str) -> None:
        if self.reporter is not None:
            _quietly(self.reporter.failed, row.gateway, row.name, row.version, cause)

    def failed_late(self, slot: Slot, gateway: str, name: str, version: int, error: LoadError) -> None:
        """A cold start's pending version failed when its cell ran it (a request, or the warm-up): it is
        no longer live here, and the failure is logged and reported as a failed load is."""
        if self.registry is not None:
            self.registry.fail_live(gateway, name, version, error)
        logger.warning(
            "runtime: %s v%d failed to load (gateway %s): %s",
            name,
            version,
            gateway,
            error.summary,
            extra=fields(
                event="load_failed", gateway=gateway, name=name, version=version, error=error.summary
            ),
        )
        if self.send_report is not None:  # behind the report that said it pending, never before
            self.send_report(Failed(gateway, name, version, error.summary))
        elif self.reporter is not None:
            _quietly(self.reporter.failed, gateway, name, version, error.summary)

    def warmed(self, slot: Slot, items: list[tuple[str, str, int, float]]) -> None:
        """Versions reported pending that their cell has loaded: their mirrors take the load's time
        (status's `load_ms`), and they are reported live in one write, queued behind the report that
        said them pending (the watcher's report thread)."""
        if self.registry is not None:
            for gateway, name, version, seconds in items:
                live = self.registry.get(gateway, name)
                if live is not None and live.version == version and live.load_ms == PENDING_LOAD_MS:
                    loaded_in(live, seconds * 1000)
        if self.send_report is not None:
            self.send_report(Warmed([(gateway, name, version) for gateway, name, version, _ in items]))

    def held(self, slot: Slot, rows: list[PublishedFunction]) -> None:
        """A restarted cell holds these pending again (not run yet): status says so until `warmed`."""
        if self.send_report is not None:
            items = [(r.gateway, r.name, r.version, r.bundle_hash) for r in rows]
            self.send_report(Live(items, pending=True))

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


CELLS_FOLDER_PREFIX = "fnstage-cells-"
CELL_SOCKET = "cell.sock"
SHORT_FOLDER = 16  # hex digits of a slot's hash: its folder's name where the readable one is too long


def cell_folder_name(cells_folder: Path, slot: Slot) -> str:
    """`{gateway}.{env}[.{lock}]`, readable in `ps` and `ls`, unless the cell's socket would then pass
    Linux's 107 bytes (a long gateway name under a long TMPDIR): a hash of that name instead."""
    gateway, env, lock = slot
    name = f"{gateway}.{env}" + (f".{lock[:16]}" if lock else "")
    if len(os.fsencode(cells_folder / name / CELL_SOCKET)) <= UDS_PATH_MAX:
        return name
    return hashlib.sha256(name.encode()).hexdigest()[:SHORT_FOLDER]


def longest_cell_socket(temp_root: str) -> int:
    """Bytes in the longest path `cell_folder_name` can give a cell's Unix socket under `temp_root`:
    mkdtemp's folder (8 random characters), a hash's folder, the socket."""
    root = len(os.fsencode(temp_root.rstrip("/")))
    return root + len(f"/{CELLS_FOLDER_PREFIX}12345678/") + SHORT_FOLDER + len(f"/{CELL_SOCKET}")


def check_temp_dir(temp_root: str | None = None) -> None:
    """TMPDIR short enough for every cell's socket under it, said before anything starts: under a longer
    one a cell could not bind its socket (Linux allows 107 bytes) and was restarted again and again."""
    root = tempfile.gettempdir() if temp_root is None else temp_root
    longest = longest_cell_socket(root)
    if longest > UDS_PATH_MAX:
        allowed = len(os.fsencode(root.rstrip("/"))) - (longest - UDS_PATH_MAX)
        raise ValueError(
            f"TMPDIR is {root!r}: a cell's Unix socket under it could take {longest} bytes, and Linux "
            f"allows {UDS_PATH_MAX}; set TMPDIR to a folder of at most {allowed} bytes"
        )


class Supervisor:
    """One `fnstage runtime`: the watcher, the cells, and (with several cells) the front."""

    def __init__(self, settings: SupervisorSettings, zygote: Zygote) -> None:
        from fnstage.runtime.watchdog import WatchdogSettings

        self.settings = settings
        check_temp_dir()
        self.folder = Path(tempfile.mkdtemp(prefix=CELLS_FOLDER_PREFIX))
        os.chmod(self.folder, 0o711)  # cells (their own users) reach their own folders only
        self.keys: dict[Slot, str] = _Keys()
        self.control_key = secrets.token_urlsafe(32)  # the control plane's key to this runtime
        self.reports = CellReports()
        self._watchdog = WatchdogSettings.from_env()
        self.log_settings = LogSettings.from_env()
        if self.log_settings.enabled:
            self.reports.log_writer = LogProcess(settings.database_url, self.log_settings)
        # one cell per (gateway, env) and per lock behind the front; a runtime narrowed to one
        # environment (--env) keeps that environment's cell up even with nothing published
        self.environments = Environments()
        self.cells = CellSet(
            self._spec,
            self.reports,
            zygote,
            keep_empty=settings.env is not None,
            prepare=self._install,
            direct=settings.env is not None,
        )
        # the environment's cell on the public port (--env) answers once the first sync gave it what is
        # published; the front waits for that sync itself (`front_link`)
        self.cells.synced = settings.env is None
        self.cells.sync_done.clear()  # set by `serve_after_sync`, once the first sync is applied
        self.registry = MirrorRegistry(self.cells)
        self.reports.registry = self.registry
        self.collector = EnvironmentCollector(
            settings.database_url, self.environments, self.cells.locks_in_use
        )
        self.metrics: RuntimeMetrics | None = None
        if settings.metrics:  # prometheus_client is imported only when metrics are asked for
            from fnstage.runtime.metrics import RuntimeMetrics

            self.metrics = RuntimeMetrics(self._live_version)
        self.cells.metrics = self.metrics
        self._metrics_server: Any = None
        self.versions = VersionSource(settings.database_url)  # what version URLs run (history entries)
        self.cells.version_source = self.versions
        self.splits = SplitFollower(
            settings.database_url, self.cells, self._runtime_id, gateway=settings.gateway, env=settings.env
        )
        if self.metrics is not None:
            self.metrics.watch_canaries(self.splits.states)
        reader = functools.partial(_feed_reader, settings.database_url, settings.env)
        # configuration and secrets: read and decrypted here, sent to their own environment's cell only
        self.configuration = ConfigDelivery(
            settings.database_url, settings.gateway, settings.env, settings.keyring, self.cells.configure
        )
        self.watcher = Watcher(
            self.registry,
            reader,
            gateway=settings.gateway,
            reporter_factory=self._reporter,
            load_rows=self.cells.load,
            load_stream=self.cells.load_stream,
            on_config=self.configuration.refresh,
            on_canary=self.splits.wake,
            metrics=self.metrics,
        )
        self.reports.send_report = self.watcher.report

    async def _serve_after_sync(self) -> None:
        """Tell held cells to answer once the first sync is done (at once, unless the store was down
        when `watcher.start` gave up waiting)."""
        while not self.synced:
            await asyncio.sleep(0.02)
        await asyncio.get_running_loop().run_in_executor(None, self.cells.serve_after_sync)

    def _live_version(self, gateway: str, name: str) -> int | None:
        live = self.registry.get(gateway, name)
        return live.version if live is not None else None

    def _install(self, row: PublishedFunction) -> None:
        """A lock this host lacks (another machine saved it; a rollback to an old one) is installed
        before the function is loaded and routed; installed ones cost a stat."""
        if row.lock_hash and row.lock and not self.environments.has(row.lock_hash):
            self.reports.installing(row)
            logger.info(
                "runtime: installing dependencies of %s/%s (lock %s)",
                row.gateway,
                row.name,
                row.lock_hash[:12],
            )
            self.environments.ensure(row.lock)

    def _spec(self, slot: Slot) -> CellSpec:
        gateway, env, lock = slot
        folder = self.folder / cell_folder_name(self.folder, slot)
        direct = self.settings.env is not None
        settings = self.settings
        interface = settings.public_cell_interface if direct and not lock else settings.cell_interface
        return CellSpec(
            gateway=gateway,
            env=env,
            lock=lock,
            site_packages=self.environments.path(lock) if lock else None,
            temp_dir=folder,
            # behind the front, each cell has a key of its own (the front's); an --env runtime's cells
            # are reached with the runtime's key, which its environment's cell passes on to the lock cell
            # of a function (one gateway and environment: one trust domain, SECURITY.md)
            control_key=self.control_key if direct else self.keys[slot],
            host=self.settings.host,
            domain=self.settings.domain,
            bound=self.settings.gateway is not None,
            sandbox=self.settings.sandbox,
            log_level="warning" if self.settings.log_level == "info" else self.settings.log_level,
            log_format=self.settings.log_format,
            watchdog=self._watchdog,
            ship_logs=self.reports.log_writer is not None,
            log_keep=self.log_settings.keep if self.reports.log_writer is not None else 0,
            metrics=self.metrics is not None,
            # an --env runtime's environment cell serves --port itself (no front), held until the first
            # sync; its lock cells serve Unix sockets it forwards their functions' requests to
            port=self.settings.port if direct and not lock else None,
            uds=None if direct and not lock else folder / CELL_SOCKET,
            held=direct and not lock,
            shared_with_env_cell=direct and bool(lock),
            defer_cold_start=True,
            interface=interface,
        )

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
                if reports.log_writer is not None:
                    reports.log_writer.runtime_id = self.identity.id
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

    def function_socket(self, gateway: str, name: str) -> tuple[Path, str] | None:
        """Where the cell that serves `name` listens, and its key."""
        return self.cell_socket(self.cells.slot_of_function(gateway, name))

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
            "installing": sorted(self.cells.installing),
            "quarantined": self.cells.quarantine_list(),
            "watcher": self.watcher.status(),
            "logs": self.reports.log_writer.stats() if self.reports.log_writer is not None else None,
        }

    async def run(self, stop: asyncio.Event, front: Any = None) -> None:
        loop = asyncio.get_running_loop()
        writer = self.reports.log_writer
        if self.metrics is not None and self.settings.metrics_port is not None:
            from fnstage.runtime.metrics import serve_metrics

            self._metrics_server = serve_metrics(
                self.metrics, self.settings.metrics_host, self.settings.metrics_port
            )
        if self.settings.env is not None:
            slot = (self.settings.gateway or "", self.settings.env, "")
            cell = await loop.run_in_executor(None, self.cells.ensure, slot)
            if cell is None:
                raise SystemExit(f"the cell for {slot[0]}/{slot[1]} cannot start")
        await self.watcher.start()
        if writer is not None:
            # after the first sync: the writer is an interpreter of its own (with the store), and on a
            # busy machine its start slowed a cold start; what cells ship meanwhile waits in its queue
            writer.start()
        serving = asyncio.create_task(self._serve_after_sync())
        self.splits.start()
        self.collector.start()
        where = f"gateway {self.settings.gateway}" if self.settings.gateway else "every gateway"
        logger.info(
            "runtime: started (pid %d), supervising cells of %s on port %d",
            os.getpid(),
            where,
            self.settings.port,
            extra=fields(
                event="started", gateway=self.settings.gateway, env=self.settings.env, port=self.settings.port
            ),
        )
        try:
            await stop.wait()
        finally:
            serving.cancel()
            if front is not None:  # the port first: a runtime started in this one's place can listen
                with contextlib.suppress(Exception):
                    await front.close()
            logger.info("runtime: stopping", extra=fields(event="stopping"))
            await loop.run_in_executor(None, self.splits.stop)
            await loop.run_in_executor(None, self.collector.stop)
            await self.watcher.stop()
            self.configuration.close()
            await loop.run_in_executor(None, self.cells.stop_all)
            if writer is not None:  # after the cells: their last shipments are written too
                await loop.run_in_executor(None, writer.stop)
            self.versions.close()
            shutil.rmtree(self.folder, ignore_errors=True)
            if self._metrics_server is not None:
                self._metrics_server.shutdown()
                self._metrics_server.server_close()


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


def run_supervisor(settings: SupervisorSettings, zygote: Zygote | None = None) -> None:
    """`fnstage runtime`: supervise cells until SIGTERM or SIGINT (blocking). `zygote`: one started
    already (`server.run_runtime` starts it before importing this module); stopped here at the end."""
    configure(settings.log_level, settings.log_format)
    # the zygote first: a fresh interpreter, started before this process opens any connection
    if zygote is None:
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
        logger.info("runtime: stopped (pid %d)", os.getpid(), extra=fields(event="stopped"))


async def _main(settings: SupervisorSettings, zygote: Zygote) -> None:
    supervisor = Supervisor(settings, zygote)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # an --env runtime has no front: its environment's cell serves the port (`CellSet` direct)
    front = await _start_front(supervisor, settings) if settings.env is None else None
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
