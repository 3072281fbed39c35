"""An `--env` runtime's environment cell passes the requests of a function that runs in a lock's cell
on to that cell's Unix socket: the environment's cell serves the public port itself (no front, no extra
hop for the functions it runs), and only a function pinned to its own dependency lock pays one hop.

The connections are the front's (`fnstage.front.upstream`: HTTP/1.1, a keep-alive pool per cell, a
connection bound to one request until its response is complete and well framed, closed otherwise, so
no byte of one response reaches another client); this module is the ASGI side of one request: its head
and body go up as granian hands them over, the response comes down as the cell sends it. The request's
limits are the lock cell's own (a `RuntimeApp` with the same ones: 408 and 413 come from it, 431 from
the environment's cell before it forwards); what only a hop can fail is answered as the front answers
it: 503 with Retry-After while the cell does not accept (it restarts), 502 when it fails mid-request,
504 when it does not answer within the front's upstream limit.

Headers go up as the client sent them (hop-by-hop ones dropped), with no X-Forwarded-* added, so a
function sees the same request in a lock's cell as in its environment's cell; when a value is not
visible ASCII, with a carrier of them all made from them (`carried_headers`), never one passed on.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import quote

from fnstage import carried_headers
from fnstage.front.limits import FrontLimits
from fnstage.front.routes import Upstream
from fnstage.front.upstream import UpstreamConnection, UpstreamPool
from fnstage.runtime.invoker import error_body

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# RFC 9110 7.6.1, as the front drops them; `expect` is granian's to answer, on each side
_HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"expect",
    }
)
_IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"TRACE"})
_PAUSE_AT = 256 * 1024  # response bytes read from the cell and not yet sent to the client: stop reading
_RESUME_AT = 64 * 1024
_SWEEP_EVERY_S = 5.0
_JSON = (b"content-type", b"application/json")


class Forwarder:
    """The keep-alive pools of one environment cell, one per lock cell it forwards to (event loop only)."""

    def __init__(self, limits: FrontLimits | None = None) -> None:
        self.limits = limits or FrontLimits()
        self.pools: dict[str, UpstreamPool] = {}
        self._swept = 0.0

    def keep_only(self, targets: set[str]) -> None:
        """Close the pools of sockets nothing is forwarded to any more (busy connections finish)."""
        for target in [t for t in self.pools if t not in targets]:
            self.pools.pop(target).close()

    def _pool(self, target: str) -> UpstreamPool:
        pool = self.pools.get(target)
        if pool is None:
            pool = self.pools[target] = UpstreamPool(
                Upstream(unix_path=target),
                max_idle=self.limits.max_idle_upstream,
                connect_timeout_s=self.limits.connect_timeout_s,
            )
        now = asyncio.get_running_loop().time()
        if now - self._swept > _SWEEP_EVERY_S:  # the front's rule: idle upstream connections expire
            self._swept = now
            for each in self.pools.values():
                each.close_idle(now - self.limits.idle_timeout_s)
        return pool

    async def forward(
        self, target: str, scope: MutableMapping[str, Any], receive: Receive, send: Send, request_id: str
    ) -> None:
        pool = self._pool(target)
        method = scope["method"].encode("latin-1")
        head, chunked, has_body = request_head(scope)
        sink = _Sink(method)
        connection = await self._connect(pool, fresh=False)
        if connection is None:
            await _starting(send, request_id)
            return
        try:
            await self._exchange(pool, connection, sink, head, chunked, has_body, receive, send, request_id)
        finally:
            if not sink.done and sink.connection is not None:
                sink.connection.close()  # mid-exchange (client gone, error): its state is unknown

    async def _connect(self, pool: UpstreamPool, *, fresh: bool) -> UpstreamConnection | None:
        connection = None if fresh else pool.take()
        if connection is None:
            try:
                connection = await pool.connect()
            except (OSError, TimeoutError):
                return None
        return connection

    async def _exchange(
        self,
        pool: UpstreamPool,
        connection: UpstreamConnection,
        sink: _Sink,
        head: bytes,
        chunked: bool,
        has_body: bool,
        receive: Receive,
        send: Send,
        request_id: str,
    ) -> None:
        sink.attach(connection)
        sink.request_done = not has_body
        connection.write(head)
        if has_body and not await _pump_body(receive, sink, chunked):
            return  # the client left
        try:
            async with asyncio.timeout(self.limits.upstream_timeout_s):
                while not sink.started:
                    if sink.failed is not None:
                        if sink.retryable(has_body):
                            # a kept-alive connection the cell had closed just before this request went
                            # out: nothing was done; send it once more, on a new connection
                            sink.retried = True
                            fresh = await self._connect(pool, fresh=True)
                            if fresh is None:
                                await _starting(send, request_id)
                                return
                            sink.reset()
                            sink.attach(fresh)
                            sink.request_done = True
                            fresh.write(head)
                            continue
                        message = f"the cell of this function failed mid-request: {sink.failed}"
                        await _error(send, 502, "bad_gateway", message, request_id)
                        return
                    await sink.wait()
        except TimeoutError:
            limit = self.limits.upstream_timeout_s
            await _error(
                send, 504, "gateway_timeout", f"the cell did not answer within {limit:g} s", request_id
            )
            return
        await send({"type": "http.response.start", "status": sink.status, "headers": sink.headers})
        while True:
            while sink.chunks:
                data = sink.take()
                await send({"type": "http.response.body", "body": data, "more_body": True})
            if sink.done:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            if sink.failed is not None:
                # the client sees a truncated response, never a made-up end
                raise ConnectionError(f"the cell of this function failed mid-response: {sink.failed}")
            await sink.wait()


async def _pump_body(receive: Receive, sink: _Sink, chunked: bool) -> bool:
    """Send the request's body up as it arrives; False if the client left. Stops early when the cell
    has answered or failed (it refused the body: 413, 408)."""
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return False
        data = message.get("body", b"")
        more = message.get("more_body", False)
        connection = sink.connection
        if connection is None or connection.closed or sink.failed is not None or sink.done:
            return True
        if data:
            if chunked:
                connection.writelines([b"%x\r\n" % len(data), data, b"\r\n"])
            else:
                connection.write(data)
        if not more:
            if chunked:
                connection.write(b"0\r\n\r\n")
            sink.request_done = True
            return True
        if not sink.writable.is_set():
            await sink.writable.wait()


def request_head(scope: MutableMapping[str, Any]) -> tuple[bytes, bool, bool]:
    """The request line and headers for the cell (HTTP/1.1), whether the body goes chunked, and whether
    there is a body at all."""
    raw = scope.get("raw_path") or quote(scope["path"], safe="/:@!$&'()*+,;=-._~%").encode("latin-1")
    raw = raw.partition(b"?")[0]  # the query is `query_string` (some servers leave it in raw_path too)
    query = scope.get("query_string") or b""
    target = raw + b"?" + query if query else raw
    lines: list[bytes] = []
    chunked = False
    has_body = False
    listed: set[bytes] = set()
    headers = scope["headers"]
    for name, value in headers:
        if name == b"connection":
            listed |= {t.strip().lower() for t in value.split(b",")}
    for name, value in headers:
        if name in _HOP_BY_HOP or name in listed or name == carried_headers.NAME:
            if name == b"transfer-encoding":
                chunked = has_body = True
            continue  # a carrier is made afresh below, from these headers: never passed on
        if name == b"content-length" and not chunked:
            has_body = value.strip() not in (b"0", b"")
        lines.append(b"%s: %s\r\n" % (name, value))
    if chunked:
        lines = [line for line in lines if not line.lower().startswith(b"content-length:")]
        lines.append(b"transfer-encoding: chunked\r\n")
    block = b"".join(lines)
    request_line = b"%s %s HTTP/1.1\r\n" % (scope["method"].encode("latin-1"), target)
    return request_line + block + carried_headers.carrier_line(block) + b"\r\n", chunked, has_body


def response_headers(head: bytes) -> tuple[list[tuple[bytes, bytes]], bool]:
    """The cell's response head as ASGI headers (hop-by-hop ones dropped: granian frames the response
    for its client), and whether the cell framed it itself (content-length or chunked)."""
    lines = head.split(b"\r\n")[1:]
    fields: list[tuple[bytes, bytes]] = []
    listed: set[bytes] = set()
    framed = False
    for line in lines:
        if not line:
            continue
        name, _, value = line.partition(b":")
        lower, value = name.strip().lower(), value.strip()
        if lower == b"connection":
            listed |= {t.strip().lower() for t in value.split(b",")}
        if lower == b"transfer-encoding" or lower == b"content-length":
            framed = True
        if lower not in _HOP_BY_HOP:
            fields.append((lower, value))
    if listed:
        fields = [(n, v) for n, v in fields if n not in listed]
    return fields, framed


class _Sink:
    """One forwarded request's response, as the upstream connection delivers it (the front's
    `ResponseSink`), for the ASGI coroutine to send on."""

    def __init__(self, method: bytes) -> None:
        self.method = method
        self.request_done = False
        self.retried = False
        self.connection: UpstreamConnection | None = None
        self.writable = asyncio.Event()
        self.writable.set()
        self._waiter: asyncio.Future[None] | None = None
        self.reset()

    def reset(self) -> None:
        self.started = self.done = False
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.failed: str | None = None
        self._failed_on: UpstreamConnection | None = None

    def attach(self, connection: UpstreamConnection) -> None:
        self.connection = connection
        connection.bind(self)

    def retryable(self, has_body: bool) -> bool:
        on = self._failed_on
        return (
            on is not None
            and on.reused
            and not on.got_bytes
            and not has_body
            and not self.retried
            and self.method in _IDEMPOTENT
        )

    def take(self) -> bytes:
        data = self.chunks.popleft()
        self.buffered -= len(data)
        if self.buffered <= _RESUME_AT and self.connection is not None:
            self.connection.pause_reading(False)
        return data

    async def wait(self) -> None:
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # ResponseSink ----------------------------------------------------------------------------------
    def response_head(self, status: int, head: bytes) -> bool:
        self.status = status
        self.headers, framed = response_headers(head)
        self.started = True
        self._wake()
        return framed

    def response_body(self, data: bytes) -> None:
        self.chunks.append(data)
        self.buffered += len(data)
        if self.buffered > _PAUSE_AT and self.connection is not None:
            self.connection.pause_reading(True)

    def response_complete(self) -> None:
        self.done = True
        self.connection = None  # back in its pool, or closed: no longer this request's
        self.writable.set()
        self._wake()

    def flush(self) -> None:
        self._wake()

    def upstream_failed(self, connection: UpstreamConnection, reason: str) -> None:
        if connection is not self.connection:
            return
        self.failed = reason
        self._failed_on = connection
        self.connection = None
        self.writable.set()
        self._wake()

    def upstream_paused(self, paused: bool) -> None:
        if paused:
            self.writable.clear()
        else:
            self.writable.set()


async def _starting(send: Send, request_id: str) -> None:
    message = "the cell of this function is not accepting connections (it is starting): retry in a moment"
    await _error(send, 503, "starting", message, request_id, retry_after=True)


async def _error(
    send: Send, status: int, code: str, message: str, request_id: str, *, retry_after: bool = False
) -> None:
    body = error_body(code, message, request_id)
    headers = [_JSON, (b"content-length", str(len(body)).encode()), (b"x-request-id", request_id.encode())]
    if retry_after:
        headers.append((b"retry-after", b"1"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
