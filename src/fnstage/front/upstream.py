"""The front's connections to cells: one `UpstreamConnection` per socket, pooled per cell.

A connection serves exactly one request at a time and is bound to it (`sink`) from the moment the
request's head is written until its response is complete. It goes back to its pool only when that
response was complete, well framed, with nothing after it, and the cell kept it alive; anything else
closes it. So no byte of one client's response can reach another client.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

import httptools

from fnstage.front.routes import Upstream

logger = logging.getLogger("fnstage.front")

MAX_RESPONSE_HEAD_BYTES = 64 * 1024


class ResponseSink(Protocol):
    """The exchange a connection answers: where the cell's response goes."""

    method: bytes
    request_done: bool  # the whole request has been written: only then may the connection be reused

    def response_head(self, status: int, head: bytes) -> bool: ...

    def response_body(self, data: bytes) -> None: ...

    def response_complete(self) -> None: ...

    def flush(self) -> None: ...

    def upstream_failed(self, connection: UpstreamConnection, reason: str) -> None: ...

    def upstream_paused(self, paused: bool) -> None: ...


class UpstreamConnection(asyncio.Protocol):
    def __init__(self, pool: UpstreamPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.sink: ResponseSink | None = None
        self.reused = False  # it has answered a request before: a stale keep-alive is possible
        self.got_bytes = False  # anything arrived for the current request
        self.closed = False
        self.idle_since = 0.0
        self._parser = httptools.HttpResponseParser(self)
        self._head = b""  # the raw bytes of a response head still arriving (and what follows it)
        self._until_close = False  # a response framed by closing the connection
        self._started = False  # a final (non-1xx) response head has arrived
        self._complete = False
        self._trailing = False  # bytes after the complete response: never reuse this connection
        self._reading_paused = False
        self._keep_alive = False

    # asyncio ------------------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio passes a BaseTransport; a stream connection's is always a Transport
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        if self.sink is None:  # a cell talking out of turn: nobody may receive this
            self.close()
            return
        if not self._started:  # the head goes to the client as it came, where it can: keep its bytes
            self._head = self._head + data if self._head else data
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if not self._complete:
                self._fail(f"the cell sent a malformed response ({exc})")
                return
            self._trailing = True
        if not self._started and len(self._head) > MAX_RESPONSE_HEAD_BYTES:
            self._fail(f"the cell's response head is larger than {MAX_RESPONSE_HEAD_BYTES} bytes")
            return
        if self._complete:
            self._done()
        elif self.sink is not None:
            self.sink.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.discard(self)
        sink, self.sink = self.sink, None
        if sink is None:
            return
        if self._started and self._until_close and not self._complete:
            sink.response_complete()  # the close is this response's end
            return
        reason = f"the connection closed ({exc})" if exc else "the connection closed"
        sink.upstream_failed(self, reason)

    def pause_writing(self) -> None:
        if self.sink is not None:
            self.sink.upstream_paused(True)

    def resume_writing(self) -> None:
        if self.sink is not None:
            self.sink.upstream_paused(False)

    # httptools ----------------------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        if self._complete:
            self._trailing = True

    def on_headers_complete(self) -> None:
        if self._complete:
            return
        raw = self._head
        end = raw.find(b"\r\n\r\n") + 4  # llhttp accepts only CRLF line ends: the head ends here
        status = self._parser.get_status_code()
        if status < 200:
            self._head = raw[end:]  # an interim response (100 Continue): the final one follows
            return
        sink = self.sink
        if sink is None or end < 4:
            return
        self._head = b""
        self._started = True
        self._keep_alive = self._parser.should_keep_alive()  # llhttp forgets it once the message ends
        no_body = sink.method == b"HEAD" or status in (204, 304)
        framed = sink.response_head(status, raw[:end])
        self._until_close = not framed and not no_body
        if sink.method == b"HEAD":
            # httptools cannot be told a response has no body: this one ends here, and the parser that
            # would wait for content-length bytes is replaced before the next response
            self._complete = True
            self._parser = httptools.HttpResponseParser(self)

    def on_body(self, body: bytes) -> None:
        if self.sink is not None and not self._complete:
            self.sink.response_body(body)

    def on_message_complete(self) -> None:
        if self._started:
            self._complete = True

    # the pool's side ----------------------------------------------------------------------------------
    def bind(self, sink: ResponseSink) -> None:
        """Serve `sink`'s request on this connection: what arrives from now on is its response."""
        self.sink = sink
        self.got_bytes = False
        self._started = self._complete = self._trailing = self._until_close = self._keep_alive = False
        self._head = b""

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def writelines(self, parts: list[bytes]) -> None:
        assert self.transport is not None
        self.transport.writelines(parts)

    def pause_reading(self, paused: bool) -> None:
        if self.transport is None or self.closed or paused == self._reading_paused:
            return
        self._reading_paused = paused
        if paused:
            self.transport.pause_reading()
        else:
            self.transport.resume_reading()

    def close(self) -> None:
        """Close at once: whatever is in flight on it is abandoned."""
        self.sink = None
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.abort()
            self.pool.discard(self)

    def _done(self) -> None:
        sink, self.sink = self.sink, None
        reusable = sink is not None and sink.request_done and self._keep_alive
        reusable = reusable and not self._trailing and not self.closed
        self.reused = True
        if reusable:
            self.pause_reading(False)
            self.pool.release(self)
        else:
            self.close()
        if sink is not None:
            sink.response_complete()

    def _fail(self, reason: str) -> None:
        sink = self.sink
        self.close()
        if sink is not None:
            sink.upstream_failed(self, reason)


class UpstreamPool:
    """Keep-alive connections to one cell: idle ones are reused last-in first-out (the warmest)."""

    def __init__(self, upstream: Upstream, *, max_idle: int, connect_timeout_s: float) -> None:
        self.upstream = upstream
        self.max_idle = max_idle
        self.connect_timeout_s = connect_timeout_s
        self._loop = asyncio.get_running_loop()  # pools are made on the front's loop, when first used
        self._idle: list[UpstreamConnection] = []
        self._open: set[UpstreamConnection] = set()
        self.closed = False

    def take(self) -> UpstreamConnection | None:
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed:
                return connection
        return None

    async def connect(self) -> UpstreamConnection:
        """A new connection; OSError (refused, no such socket) or TimeoutError when the cell is not
        accepting."""
        loop = asyncio.get_running_loop()
        upstream = self.upstream
        async with asyncio.timeout(self.connect_timeout_s):
            if upstream.unix_path is not None:
                _, protocol = await loop.create_unix_connection(
                    lambda: UpstreamConnection(self), upstream.unix_path
                )
            else:
                assert upstream.host is not None and upstream.port is not None
                _, protocol = await loop.create_connection(
                    lambda: UpstreamConnection(self), upstream.host, upstream.port
                )
        if self.closed:
            protocol.close()
            raise ConnectionRefusedError(f"{upstream} is no longer routed to")
        self._open.add(protocol)
        return protocol

    def release(self, connection: UpstreamConnection) -> None:
        if self.closed or len(self._idle) >= self.max_idle:
            connection.close()
            return
        connection.idle_since = self._loop.time()
        self._idle.append(connection)

    def discard(self, connection: UpstreamConnection) -> None:
        self._open.discard(connection)
        if connection in self._idle:
            self._idle.remove(connection)

    def close_idle(self, older_than: float) -> None:
        """Close idle connections unused since `older_than` (loop time): a cell need not keep them."""
        for connection in [c for c in self._idle if c.idle_since < older_than]:
            connection.close()

    def close(self) -> None:
        """Stop using this cell: idle connections close now, busy ones when their request ends."""
        self.closed = True
        for connection in list(self._idle):
            connection.close()

    def close_all(self) -> None:
        self.close()
        for connection in list(self._open):
            connection.close()

    def __len__(self) -> int:
        return len(self._open)
