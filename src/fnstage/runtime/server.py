"""Run the runtime: `build_app` wires registry, router, watcher and app; `serve_runtime` serves it.

The server is granian: measured here against uvicorn (uvloop + httptools) with one worker and
`wrk -t2 -c64` on two cores, granian answered 35-54k req/s for a hello ASGI app against uvicorn's
27-40k, and 12-24k against 10-16k through `RuntimeApp` with an async function (see
bench/runtime_servers.py). Each worker process builds its own app in the worker (after the fork), so
each has its own registry and its own watcher, started by the ASGI lifespan.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import tempfile
from collections.abc import Callable, Mapping
from typing import Any

from fnstage.runtime.app import DEFAULT_MAX_BODY_BYTES, RuntimeApp
from fnstage.runtime.invoker import InvocationLogs
from fnstage.runtime.registry import Registry
from fnstage.runtime.reports import ReporterLike
from fnstage.runtime.router import Router
from fnstage.runtime.watchdog import Watchdog, WatchdogSettings
from fnstage.runtime.watcher import FeedReaderLike, Watcher

logger = logging.getLogger("fnstage.runtime")

ReaderFactory = Callable[[], FeedReaderLike]
ReporterFactory = Callable[[], ReporterLike]


@functools.cache
def granian_server() -> type[Any]:
    """granian's server, with signal handlers that a second signal cannot deadlock.

    granian's handlers call `threading.Event.set`, which holds a plain lock; a signal arriving while a
    handler holds it runs the handler again in the same thread, which then waits for that lock forever
    (the general problem: python/cpython#126434).
    Seen in CI: a runtime whose `fnstage up` was SIGKILLed (its SIGTERM from PR_SET_PDEATHSIG, then
    another) stayed up, its supervisor stuck three handlers deep. A signal that arrives while a handler
    runs is dropped: the one running already stops (or reloads) the server."""
    # granian's `Server` is MPServer wherever there is a GIL, which is every Python fnstage runs on
    from granian.server import MPServer

    class GuardedServer(MPServer):
        _in_handler = False

        def signal_handler_interrupt(self, *args: Any, **kwargs: Any) -> None:
            self._guarded(super().signal_handler_interrupt, *args, **kwargs)

        def signal_handler_reload(self, *args: Any, **kwargs: Any) -> None:
            self._guarded(super().signal_handler_reload, *args, **kwargs)

        def _guarded(self, handler: Callable[..., None], *args: Any, **kwargs: Any) -> None:
            if self._in_handler:
                return
            self._in_handler = True
            try:
                handler(*args, **kwargs)
            finally:
                self._in_handler = False

    return GuardedServer


def store_feed(database_url: str) -> ReaderFactory:
    """A picklable factory of the store's FeedReader, for `serve_runtime` / `build_app`."""
    from fnstage.store.feed import FeedReader

    return functools.partial(FeedReader, database_url)


def store_reporter(
    database_url: str, gateway: str | None, public_url: str, control_key: str | None = None
) -> ReporterFactory:
    """A picklable factory of the store's RuntimeReporter; each worker registers as its own runtime."""
    return functools.partial(_make_reporter, database_url, gateway, public_url, control_key)


def _make_reporter(
    database_url: str, gateway: str | None, public_url: str, control_key: str | None
) -> ReporterLike:
    from fnstage.store.runtime_status import RuntimeIdentity, RuntimeReporter

    identity = RuntimeIdentity.new(gateway, public_url, os.getpid(), control_key)
    return RuntimeReporter(database_url, identity)


INTERFACES = ("asgi", "rsgi")


def cell_interface(env: Mapping[str, str] = os.environ, *, public: bool = False) -> str:
    """`FNSTAGE_CELL_INTERFACE`: what cells' servers speak. "rsgi" (the default) is granian's own
    interface: about 15% less CPU a request than ASGI (BENCHMARKS.md, "A cell speaks RSGI"). granian
    cannot give an RSGI app a header value that is not visible ASCII (raw UTF-8 in a cookie a browser's
    script set, say); the front and a forwarding cell carry such a request's header lines whole to the
    cell (`carried_headers`), so a function sees what its client sent either way. "asgi" stays a
    choice: granian's ASGI, with nothing carried.

    `public`: the interface of a cell its clients reach with nothing of fnstage's in between (an `--env`
    runtime's environment cell, on the runtime's port): unset, that one speaks "asgi", since no front
    carries its headers; "rsgi" said outright makes it refuse such a request with 400 instead."""
    value = env.get("FNSTAGE_CELL_INTERFACE", "").strip().lower() or ("asgi" if public else "rsgi")
    if value not in INTERFACES:
        raise ValueError(
            f"FNSTAGE_CELL_INTERFACE is {env['FNSTAGE_CELL_INTERFACE']!r}: it must be one of "
            + ", ".join(INTERFACES)
        )
    return value


def run_runtime(
    database_url: str,
    host: str = "127.0.0.1",
    port: int = 8080,
    workers: int = 1,
    gateway: str | None = None,
    domain: str = "localhost",
    public_url: str | None = None,
    log_level: str = "info",
    env: str | None = None,
    keyring: Any = None,
    metrics_port: int | None = None,
    metrics_host: str = "127.0.0.1",
    log_format: str = "text",
) -> None:
    """`fnstage runtime`: a supervisor that serves a store's published functions from sandboxed cells,
    one per (gateway, environment), and reports back to the control plane (`runtime.supervisor`).

    `workers` is kept for the command line's sake: a cell is one process, and a gateway's environments
    are cells of their own, so one supervisor already uses every core it is given."""
    # the zygote first, before the supervisor's imports (SQLAlchemy, the front: about 0.4 s of CPU): its
    # own interpreter imports the cells' code meanwhile, on another core, and a cold start's first cell
    # is forked from it (it used to start only once those imports were done)
    from fnstage.runtime.zygote import Zygote

    interface = cell_interface()  # a bad FNSTAGE_CELL_INTERFACE stops the start here, with its reason
    zygote = Zygote()
    zygote.start()
    try:
        from fnstage.runtime.supervisor import SupervisorSettings, run_supervisor
    except BaseException:
        zygote.stop()
        raise

    if workers > 1:
        logger.warning("runtime: --workers is ignored: each (gateway, environment) runs in a cell of its own")
    settings = SupervisorSettings(
        database_url,
        host,
        port,
        gateway,
        env,
        domain,
        public_url,
        log_level,
        sandbox=True,
        metrics_port=metrics_port,
        metrics_host=metrics_host,
        log_format=log_format,
        keyring=keyring,
        cell_interface=interface,
        public_cell_interface=cell_interface(public=True),
    )
    run_supervisor(settings, zygote)


def build_app(
    feed_reader_factory: ReaderFactory,
    gateway: str | None = None,
    domain: str = "localhost",
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_threads: int = 32,
    internal_token: str | None = None,
    poll_interval_s: float = 1.0,
    logs: InvocationLogs | None = None,
    reporter_factory: ReporterFactory | None = None,
    watchdog: WatchdogSettings | None = None,
) -> RuntimeApp:
    """One worker's runtime: an ASGI app whose lifespan starts a watcher on the store's feed.

    `gateway`: serve only this gateway (reads only its published functions); None serves them all.
    `reporter_factory`: called once in the worker; tells the control plane what is live here.
    `watchdog`: guard this worker against runaway functions (`runtime.watchdog`); `serve_runtime` does.
    """
    registry = Registry()
    logs = logs if logs is not None else InvocationLogs()
    watcher = Watcher(
        registry,
        feed_reader_factory,
        gateway=gateway,
        poll_interval_s=poll_interval_s,
        reporter_factory=reporter_factory,
        counts=logs.take_counts,
        on_removed=logs.forget,  # a deleted function's invocation logs go with it
    )
    guard = None
    if watchdog is not None:
        guard = Watchdog(watchdog, reporter=lambda: watcher.reporter)
    return RuntimeApp(
        registry,
        Router(domain=domain, gateway=gateway),
        watcher=watcher,
        watchdog=guard,
        logs=logs,
        max_body_bytes=max_body_bytes,
        max_threads=max_threads,
        internal_token=internal_token,
    )


def _events_file() -> str:
    """A file the workers of this runtime share for the watchdog's events (they outlive a worker)."""
    fd, path = tempfile.mkstemp(prefix="fnstage-runtime-", suffix=".events")
    os.close(fd)
    return path


def serve_runtime(
    feed_reader_factory: ReaderFactory,
    host: str = "127.0.0.1",
    port: int = 8080,
    workers: int = 1,
    gateway: str | None = None,
    domain: str = "localhost",
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    internal_token: str | None = None,
    log_level: str = "info",
    reporter_factory: ReporterFactory | None = None,
) -> None:
    """Serve the runtime until interrupted (blocking). `feed_reader_factory` is called once in every
    worker process; make it picklable (e.g. `functools.partial(FeedReader, url)`)."""
    from granian.constants import HTTPModes, Interfaces, Loops
    from granian.log import LogLevels

    events_path = _events_file()
    loader = functools.partial(
        build_app,
        feed_reader_factory,
        gateway,
        domain,
        max_body_bytes=max_body_bytes,
        internal_token=internal_token,
        reporter_factory=reporter_factory,
        watchdog=WatchdogSettings.from_env(events_path),
    )
    server = granian_server()(
        "fnstage.runtime",  # a label only: the app comes from `loader`
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        workers=workers,
        loop=Loops.auto,
        http=HTTPModes.http1,
        websockets=False,
        log_level=LogLevels(log_level),
        log_access=False,
        # a worker the watchdog recycles (or that crashes) is replaced; the others keep serving
        respawn_failed_workers=True,
        # a worker that does not stop (its event loop blocked) is killed: SIGTERM always ends the runtime
        workers_kill_timeout=15,
    )
    where = f"gateway {gateway}" if gateway else "every gateway"
    logger.info("runtime: serving %s on http://%s:%d with %d worker(s)", where, host, port, workers)
    try:
        server.serve(target_loader=loader, wrap_loader=False)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(events_path)
