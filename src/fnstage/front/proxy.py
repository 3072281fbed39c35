"""The front's proxy: `Proxy` holds what one front shares (routes, limits, hooks, pools to the cells);
a `ClientConnection` parses one client's requests and answers them in order, one `Exchange` each.

asyncio protocols with httptools on both sides, no coroutine per request: when a pooled connection to
the cell is idle (the common case) a request is forwarded from inside `data_received`, and its response
is written to the client from inside the cell connection's `data_received`. A task is started only to
connect, or to wait for `on_miss` or an internal endpoint.

Bodies stream both ways (Content-Length as is, chunked re-framed), with backpressure: a client whose
socket is full pauses reading from the cell, a cell whose socket is full pauses reading from the client.
Requests pipelined on one connection are answered in order.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

import httptools

from fnstage.front.exchange import Exchange, request_path
from fnstage.front.hooks import Internal, OnMiss
from fnstage.front.limits import FrontLimits
from fnstage.front.responses import error_response, request_id
from fnstage.front.routes import Destination, RouteTable, Upstream, destination
from fnstage.front.upstream import UpstreamPool
from fnstage.runtime.router import Router

logger = logging.getLogger("fnstage.front")

_DEST_CACHE_SIZE = 4096

# what a client connection is waiting for, i.e. which deadline applies
_IDLE, _HEAD, _BODY, _WAIT = range(4)


class _Refusal(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class Proxy:
    """What every connection of one front shares: routes, limits, hooks and the pools to the cells."""

    def __init__(
        self,
        routes: RouteTable,
        *,
        domain: str = "localhost",
        gateway: str | None = None,
        limits: FrontLimits | None = None,
        on_miss: OnMiss | None = None,
        internal: Internal | None = None,
    ) -> None:
        self.routes = routes
        # `gateway`: the front of a runtime bound to one gateway, whose path form is `/ENV/PATH`
        self.router = Router(domain=domain, gateway=gateway)
        self.limits = limits or FrontLimits()
        self.on_miss = on_miss
        self.internal = internal
        self.pools: dict[Upstream, UpstreamPool] = {}
        self.clients: set[ClientConnection] = set()
        self._misses: dict[tuple[str, str], asyncio.Future[None]] = {}
        self._destinations: dict[tuple[bytes | None, bytes], Destination | None] = {}

    def connection(self) -> ClientConnection:
        return ClientConnection(self)

    def pool(self, upstream: Upstream) -> UpstreamPool:
        pool = self.pools.get(upstream)
        if pool is None:
            pool = self.pools[upstream] = UpstreamPool(
                upstream,
                max_idle=self.limits.max_idle_upstream,
                connect_timeout_s=self.limits.connect_timeout_s,
            )
        return pool

    def destination(self, host: bytes | None, target: bytes) -> Destination | None:
        """Where a request goes, remembered per (host, path): the runtime's parsing, done once."""
        path = target.partition(b"?")[0] if target.startswith(b"/") else target
        key = (host, path)
        try:
            return self._destinations[key]
        except KeyError:
            pass
        found = destination(self.router, host.decode("latin-1") if host else None, request_path(target))
        if len(self._destinations) >= _DEST_CACHE_SIZE:
            self._destinations.clear()  # bounded: any client can make up hosts and paths
        self._destinations[key] = found
        return found

    def forget(self, upstream: Upstream) -> None:
        """No route leads to `upstream` any more: close its idle connections (busy ones finish)."""
        pool = self.pools.pop(upstream, None)
        if pool is not None:
            pool.close()

    async def miss(self, gateway: str, env: str) -> None:
        """Await `on_miss(gateway, env)`, bounded; every request for the same pair shares one call."""
        assert self.on_miss is not None
        key = (gateway, env)
        pending = self._misses.get(key)
        if pending is None:
            pending = self._misses[key] = asyncio.ensure_future(self.on_miss(gateway, env))
            pending.add_done_callback(lambda done: self._missed(key, done))
        await asyncio.wait_for(asyncio.shield(pending), self.limits.miss_timeout_s)

    def _missed(self, key: tuple[str, str], done: asyncio.Future[None]) -> None:
        self._misses.pop(key, None)
        if not done.cancelled() and done.exception() is not None:
            logger.error("on_miss%s failed", key, exc_info=done.exception())

    def sweep(self, now: float) -> None:
        """Enforce the deadlines (head, body, idle, a cell's answer); close long-idle cell connections."""
        for client in list(self.clients):
            client.check(now)
        for pool in list(self.pools.values()):
            pool.close_idle(now - self.limits.idle_timeout_s)

    def close(self) -> None:
        for client in list(self.clients):
            client.close()
        for pool in self.pools.values():
            pool.close_all()
        for pending in self._misses.values():
            pending.cancel()


class ClientConnection(asyncio.Protocol):
    """One client's connection: parses its requests and answers them in order."""

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self.limits = proxy.limits
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.peer = b""
        self.current: Exchange | None = None  # the request being received
        self.active: Exchange | None = None  # the request being answered: the oldest one
        self.queue: deque[Exchange] = deque()  # pipelined requests waiting for their turn
        self.closing = False
        self.write_paused = False
        self.state = _IDLE
        self.deadline = 0.0
        self._parser = httptools.HttpRequestParser(self)
        self._paused: set[str] = set()
        self._advancing = False
        self._eof = False
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._header_bytes = 0
        self._head_bytes = 0

    # asyncio ------------------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio passes a BaseTransport; a TCP/Unix server's is always a Transport
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and peer:
            self.peer = str(peer[0]).encode("latin-1")
        self.proxy.clients.add(self)
        self._idle()

    def data_received(self, data: bytes) -> None:
        if self.closing or self._eof:
            return
        if self.state <= _HEAD:  # a head is arriving (or about to): count it against its limit
            self._head_bytes += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            refusal = exc.__context__
            if isinstance(refusal, _Refusal):
                self._refuse(refusal.status, refusal.code, refusal.message)
            else:
                logger.error("front: a request broke the proxy", exc_info=refusal or exc)
                self._refuse(500, "front_failed", "the front failed to handle this request")
            return
        except httptools.HttpParserUpgrade:
            # the request asked to switch protocols; cells speak only HTTP/1.1, and what follows the
            # head is not HTTP: answer this request, then close
            self._eof = True
            return
        except httptools.HttpParserError as exc:
            self._refuse(400, "bad_request", f"the request is not valid HTTP/1.1: {exc}")
            return
        if self.state == _HEAD and self._head_bytes > self.limits.max_head_bytes:
            limit = self.limits.max_head_bytes
            message = f"the request head is more than {limit:,} bytes: at most {limit:,}"
            self._refuse(431, "too_large", message)

    def eof_received(self) -> bool | None:
        self._eof = True
        # a client that half-closes after its request still gets the answer
        return True if self.active is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.proxy.clients.discard(self)
        for exchange in {self.active, self.current, *self.queue}:
            if exchange is not None:
                exchange.abandon()
        self.queue.clear()
        self.active = self.current = None

    def pause_writing(self) -> None:
        self.write_paused = True
        active = self.active
        if active is not None and active.upstream is not None:
            active.upstream.pause_reading(True)

    def resume_writing(self) -> None:
        self.write_paused = False
        active = self.active
        if active is not None and active.upstream is not None:
            active.upstream.pause_reading(False)

    # httptools ----------------------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.state = _HEAD
        self.deadline = self.loop.time() + self.limits.head_timeout_s
        self._url = b""
        self._headers = []
        self._header_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.state != _HEAD:
            return  # a chunked body's trailer fields: not forwarded
        self._header_bytes += len(name) + len(value)
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._head_bytes = 0
        limit = self.limits.max_header_bytes
        if self._header_bytes > limit:
            message = f"the request headers are {self._header_bytes} bytes: at most {limit}"
            raise _Refusal(431, "too_large", message)
        parser = self._parser
        exchange = Exchange(
            self,
            parser.get_method(),
            self._url,
            self._headers,
            keep_alive=parser.should_keep_alive(),
            http10=parser.get_http_version() == "1.0",
        )
        self.current = exchange
        if exchange.has_body:
            self.state = _BODY
            self.deadline = self.loop.time() + self.limits.body_timeout_s
        else:
            self.state = _WAIT
        if self.active is None:
            self.active = exchange
            exchange.start()
        else:
            self.queue.append(exchange)
            self.pause("pipeline")  # answered in order: hold further requests until this one's turn

    def on_body(self, body: bytes) -> None:
        if self.current is not None:
            self.current.request_body(body)

    def on_message_complete(self) -> None:
        exchange, self.current = self.current, None
        self.state = _WAIT
        if exchange is not None:
            exchange.request_complete()
        if self.active is None and self.current is None and not self.closing:
            self._idle()

    # answering ----------------------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        if not self.closing and self.transport is not None:
            self.transport.write(data)

    def writelines(self, parts: list[bytes]) -> None:
        if not self.closing and self.transport is not None:
            self.transport.writelines(parts)

    def exchange_done(self, exchange: Exchange, close: bool) -> None:
        """`exchange`'s response is complete: close, or answer the next request."""
        if exchange is not self.active or self.closing:
            return
        if self._paused:
            self.resume("upstream")
        if close or (self._eof and not self.queue and self.current is None):
            self.close()
            return
        self.active = None
        if self.queue:
            self._advance()
        elif self.current is None:
            self._idle()

    def _advance(self) -> None:
        if self._advancing:  # an exchange started below finished at once: the loop below goes on
            return
        self._advancing = True
        try:
            while self.active is None and self.queue and not self.closing:
                self.active = self.queue.popleft()
                if not self.queue:
                    self.resume("pipeline")
                self.active.start()
        finally:
            self._advancing = False
        if self.active is None and self.current is None and not self.closing:
            self._idle()

    def pause(self, reason: str) -> None:
        if not self._paused and self.transport is not None and not self.closing:
            self.transport.pause_reading()
        self._paused.add(reason)

    def resume(self, reason: str) -> None:
        if reason in self._paused:
            self._paused.discard(reason)
            if not self._paused and self.transport is not None and not self.closing:
                self.transport.resume_reading()

    def close(self) -> None:
        """Close after what has been written is sent."""
        if not self.closing:
            self.closing = True
            if self.transport is not None:
                self.transport.close()

    def _idle(self) -> None:
        self.state = _IDLE
        self.deadline = self.loop.time() + self.limits.idle_timeout_s

    def _refuse(self, status: int, code: str, message: str) -> None:
        """Answer a request the front will not forward, then close: the stream cannot be trusted."""
        active = self.active
        if active is not None and (active is not self.current or active.response_started):
            self.close()  # an earlier request is still being answered: nothing can go before it
            return
        if active is not None:
            active.abandon()
        self.write(error_response(status, code, message, request_id(None), close=True))
        self.close()

    def check(self, now: float) -> None:
        """Enforce this connection's deadline (called by the front's sweep)."""
        active = self.active
        if active is not None and active.upstream is not None and now > active.upstream_deadline:
            active.timed_out()
            return
        if now <= self.deadline or self.closing:
            return
        state = self.state
        if self._paused and state != _IDLE:
            return  # the front itself is not reading (answers in order, a full cell): not the client's delay
        if state == _IDLE:
            self.close()
        elif state == _HEAD:
            self._refuse(
                408,
                "request_timeout",
                f"the request head did not arrive within {self.limits.head_timeout_s:g} s",
            )
        elif state == _BODY:
            self._refuse(
                408,
                "request_timeout",
                f"the request body did not arrive within {self.limits.body_timeout_s:g} s",
            )
