"""Run a front: `Front` for a loop you own (or a thread, in tests), `serve_front` to run one blocking.

One process, one event loop (uvloop when installed: it comes with uvicorn[standard]). At start the
open-files soft limit is raised to its hard limit: each idle client costs a file descriptor, and the
front must hold at least 10,000 of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import signal
import socket
import threading
from collections.abc import Callable
from typing import Any

from fnstage.front.hooks import Internal, OnMiss
from fnstage.front.limits import FrontLimits
from fnstage.front.proxy import Proxy
from fnstage.front.routes import RouteTable, Upstream

logger = logging.getLogger("fnstage.front")

BACKLOG = 4096  # a burst of new connections waits in the kernel's queue rather than being refused


def raise_open_files_limit() -> int:
    """Raise RLIMIT_NOFILE's soft limit to its hard limit; returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop when it is installed (measured: the front's throughput depends on it), else
    asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


class Front:
    """The public port of `fnstage up`: routes each request to the cell of its (gateway, env)."""

    def __init__(
        self,
        routes: RouteTable,
        *,
        host: str = "127.0.0.1",
        port: int = 8471,
        domain: str = "localhost",
        gateway: str | None = None,
        limits: FrontLimits | None = None,
        on_miss: OnMiss | None = None,
        internal: Internal | None = None,
        sock: socket.socket | None = None,
    ) -> None:
        self.routes = routes
        self.host = host
        self.port = port
        self.proxy = Proxy(
            routes, domain=domain, gateway=gateway, limits=limits, on_miss=on_miss, internal=internal
        )
        self._sock = sock
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Event | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        """Listen (port 0: an ephemeral one, then in `self.port`) and serve until `stop`."""
        raise_open_files_limit()
        loop = self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        self.routes.add_listener(self._forget)
        if self._sock is not None:
            server = await loop.create_server(self.proxy.connection, sock=self._sock, backlog=BACKLOG)
        else:
            server = await loop.create_server(
                self.proxy.connection, self.host, self.port, backlog=BACKLOG, reuse_address=True
            )
        self._server = server
        self.port = server.sockets[0].getsockname()[1]
        self._sweeper = loop.create_task(self._sweep())
        logger.info("front: routing http://%s:%d to cells", self.host, self.port)

    async def stop(self) -> None:
        """Stop listening and close every connection (requests in flight are cut)."""
        self.routes.remove_listener(self._forget)
        if self._server is not None:
            self._server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        self.proxy.close()
        if self._server is not None:
            await self._server.wait_closed()
        if self._stopped is not None:
            self._stopped.set()

    def start_in_thread(self) -> None:
        """Serve from a new thread with its own event loop (tests); returns once it listens."""
        ready = threading.Event()
        failed: list[BaseException] = []

        def run() -> None:
            loop = new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:
                failed.append(exc)
                ready.set()
                return
            ready.set()
            assert self._stopped is not None
            loop.run_until_complete(self._stopped.wait())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=run, name="fnstage-front", daemon=True)
        self._thread.start()
        ready.wait()
        if failed:
            raise failed[0]

    def stop_thread(self, timeout: float = 10.0) -> None:
        if self._loop is None or self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(self.stop(), self._loop).result(timeout)
        self._thread.join(timeout)

    def stats(self) -> dict[str, Any]:
        """What the front holds now: for the supervisor's status page."""
        return {
            "client_connections": len(self.proxy.clients),
            "cell_connections": {str(u): len(pool) for u, pool in list(self.proxy.pools.items())},
            "routes": len(self.routes),
        }

    def _forget(self, upstream: Upstream) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(self.proxy.forget, upstream)

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        tick = self.proxy.limits.tick_s
        while True:
            await asyncio.sleep(tick)
            try:
                self.proxy.sweep(loop.time())
            except Exception:
                logger.exception("front: sweeping deadlines failed")


def serve_front(
    routes: RouteTable,
    *,
    host: str = "127.0.0.1",
    port: int = 8471,
    domain: str = "localhost",
    limits: FrontLimits | None = None,
    on_miss: OnMiss | None = None,
    internal: Internal | None = None,
    sock: socket.socket | None = None,
    ready: Callable[[Front], None] | None = None,
) -> None:
    """Serve a front until SIGINT or SIGTERM (blocking). `ready(front)` runs on the front's loop once it
    listens: the place to start the supervisor's own work on the same loop."""
    front = Front(
        routes,
        host=host,
        port=port,
        domain=domain,
        limits=limits,
        on_miss=on_miss,
        internal=internal,
        sock=sock,
    )

    async def main() -> None:
        loop = asyncio.get_running_loop()
        await front.start()
        stop = asyncio.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, stop.set)
        if ready is not None:
            ready(front)
        await stop.wait()
        await front.stop()

    loop = new_event_loop()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
