"""One request on a client connection and its answer: the `Exchange` carries the request to its cell
(head, then the body as it arrives) and the cell's response back to the client, or answers itself
(404, 413, 502, 503, 504...).

Hop-by-hop headers (RFC 9110 7.6.1, and any a `Connection` header names) are dropped in both directions;
the request line's method and target and the Host header go to the cell unchanged (HTTP/1.1 on the
cell's side), with X-Forwarded-For and X-Forwarded-Proto added, and with every header line carried
whole in `x-fnstage-raw-headers` when a value is not visible ASCII (`carried_headers`; a client's own is
dropped). The usual response head (HTTP/1.1, a content-length, nothing hop-by-hop) goes back to a
keep-alive client byte for byte.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import httptools

from fnstage import carried_headers
from fnstage.front.hooks import INTERNAL_PREFIX, Internal, InternalRequest
from fnstage.front.responses import error_response, request_id, simple_response
from fnstage.front.routes import STARTING, Destination, Upstream
from fnstage.front.upstream import UpstreamConnection, UpstreamPool

if TYPE_CHECKING:
    from fnstage.front.proxy import ClientConnection

logger = logging.getLogger("fnstage.front")

# RFC 9110 7.6.1 (and Trailer, Proxy-Connection as nginx and others treat them); `expect` is answered by
# the front itself (100 Continue), `x-forwarded-proto` is the front's to say
_HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding", b"upgrade"}
)
# request headers the front looks at (every other one goes to the cell as it is); a client's carrier of
# raw headers is dropped (`carried_headers`: the cell would read it as the request's headers)
_NOTABLE = _HOP_BY_HOP | {
    carried_headers.NAME,
    b"host",
    b"content-length",
    b"expect",
    b"x-request-id",
    b"x-forwarded-for",
    b"x-forwarded-proto",
}
# a response head with none of these can go to the client as it is (names end at the colon: RFC 9112)
_HOP_RE = re.compile(
    rb"\r\n(?:connection|keep-alive|proxy-connection|te|trailer|transfer-encoding|upgrade):", re.IGNORECASE
)
_LENGTH_RE = re.compile(rb"\r\ncontent-length:", re.IGNORECASE)
_IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"TRACE"})
_BUFFER_WHILE_CONNECTING = 64 * 1024  # request body held for a cell not yet connected; then pause
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_LAST_CHUNK = b"0\r\n\r\n"

# what an exchange does with its request
_PENDING, _PROXY, _LOCAL, _INTERNAL = range(4)


class Exchange:
    """One request on a client connection, and its response: from the cell, or from the front."""

    # what most requests never change is a class default, so a request sets only what it has
    host: bytes | None = None
    content_length: int | None = None
    chunked_up = False
    expect_continue = False
    request_id_header: bytes | None = None
    forwarded_for = b""
    kind = _PENDING
    dest: Destination | None = None
    local: tuple[bytes, bool] | None = None
    pending_bytes = 0
    received = 0
    pool: UpstreamPool | None = None
    upstream: UpstreamConnection | None = None
    upstream_deadline = 0.0
    task: asyncio.Task[None] | None = None
    request_done = response_started = response_done = False
    chunk_down = close_after = retried = abandoned = False

    def __init__(
        self,
        client: ClientConnection,
        method: bytes,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        *,
        keep_alive: bool,
        http10: bool,
    ) -> None:
        self.client = client
        self.method = method
        self.target = target
        self.headers = headers
        self.keep_alive = keep_alive
        self.http10 = http10
        # the header lines the cell gets, built in the same single pass over the headers
        fields: list[bytes] = []
        listed: frozenset[bytes] = frozenset()
        for name, value in headers:
            lower = name.lower()
            if lower not in _NOTABLE:
                fields.append(b"%s: %s\r\n" % (name, value))
            elif lower == b"host":
                self.host = value
                fields.append(b"%s: %s\r\n" % (name, value))
            elif lower == b"content-length":
                self.content_length = int(value)  # llhttp has checked it is a number
                fields.append(b"%s: %s\r\n" % (name, value))
            elif lower == b"transfer-encoding":
                self.chunked_up = True  # llhttp accepts only chunked as the last coding of a request
            elif lower == b"x-request-id":
                self.request_id_header = value
                fields.append(b"%s: %s\r\n" % (name, value))
            elif lower == b"expect":
                self.expect_continue = value.lower() == b"100-continue"
            elif lower == b"x-forwarded-for":
                self.forwarded_for += value + b", "
            elif lower == b"connection":
                listed = _tokens(value, listed)
        self.fields = _without(fields, listed) if listed else fields
        self.has_body = self.chunked_up or bool(self.content_length)
        self.pending: list[bytes] = []  # request body held until a cell connection is there
        self.out: list[bytes] = []  # response bytes for the client, written once per read from the cell

    # where the request goes ---------------------------------------------------------------------------
    def start(self) -> None:
        """Its turn to be answered: decide where it goes, and start sending it there."""
        try:
            self._start()
        except Exception:
            logger.exception("front: routing %r failed", self.target)
            self._drop_upstream()
            self.respond_error(500, "front_failed", "the front failed to handle this request", close=True)

    def _start(self) -> None:
        proxy = self.client.proxy
        limits = proxy.limits
        if self.target.startswith(INTERNAL_PREFIX):
            self._start_internal(proxy.internal)
            return
        if self.content_length is not None and self.content_length > limits.max_body_bytes:
            self.too_large()
            return
        dest = self.dest = proxy.destination(self.host, self.target)
        if dest is None:
            host = self.host.decode("latin-1") if self.host else ""
            message = f"no function is served at {host}{request_path(self.target)}"
            self.respond_error(404, "not_found", message)
            return
        entry = proxy.routes.get(dest.gateway, dest.env, dest.name)
        if isinstance(entry, Upstream):
            self.kind = _PROXY
            self.pool = proxy.pools.get(entry) or proxy.pool(entry)
            connection = self.pool.take()
            if connection is not None:
                self.attach(connection)
            else:
                self._spawn(self._connect(entry))
        elif entry is STARTING:
            self._starting()
            return
        elif proxy.on_miss is not None:
            self.kind = _PROXY
            self._spawn(self._connect(None))
        else:
            self._not_live()
            return
        if self.expect_continue and not self.request_done:
            self.client.write(_CONTINUE)

    def _start_internal(self, internal: Internal | None) -> None:
        if internal is None:
            self.respond_error(404, "not_found", f"no internal endpoint {request_path(self.target)}")
            return
        self.kind = _INTERNAL
        if self.expect_continue and not self.request_done:
            self.client.write(_CONTINUE)
        if self.request_done:
            self._spawn(self._internal(internal))

    async def _connect(self, entry: Upstream | None) -> None:
        dest = self.dest
        assert dest is not None
        proxy = self.client.proxy
        if entry is None:
            try:
                await proxy.miss(dest.gateway, dest.env)
            except TimeoutError:
                self._starting(f"did not start within {proxy.limits.miss_timeout_s:g} s")
                return
            except Exception as exc:
                self._starting(f"could not be started ({type(exc).__name__}: {exc})")
                return
            found = proxy.routes.get(dest.gateway, dest.env, dest.name)
            if found is None:
                self._not_live()
                return
            if not isinstance(found, Upstream):
                self._starting()
                return
            entry = found
            self.pool = proxy.pool(entry)
        pool = self.pool
        assert pool is not None
        connection = pool.take()
        if connection is None:
            try:
                connection = await pool.connect()
            except (OSError, TimeoutError) as exc:
                self._starting(f"is not accepting connections ({exc or type(exc).__name__})")
                return
        if self.abandoned or self.response_done:  # the client left, or was answered meanwhile (413)
            pool.release(connection)
            return
        self.attach(connection)

    def attach(self, connection: UpstreamConnection) -> None:
        """Send the request (head, body so far) on `connection`; the rest follows as it arrives."""
        self.upstream = connection
        connection.bind(self)
        parts = [self._upstream_head()]
        if self.chunked_up:
            for chunk in self.pending:
                parts.extend((b"%x\r\n" % len(chunk), chunk, b"\r\n"))
            if self.request_done:
                parts.append(_LAST_CHUNK)
        else:
            parts.extend(self.pending)
        self.pending = []
        self.pending_bytes = 0
        connection.writelines(parts)
        client = self.client
        if client._paused:
            client.resume("waiting")
        self.upstream_deadline = client.loop.time() + client.limits.upstream_timeout_s
        if client.write_paused:
            connection.pause_reading(True)

    def _upstream_head(self) -> bytes:
        """The request line and header lines for the cell, with the carrier of the header lines when
        a value is not visible ASCII (`carried_headers`: an RSGI cell cannot read it otherwise).
        `isascii` over the whole head is the common request's only cost: llhttp has refused control
        characters and DEL in a value already, and only a rare head is looked at again."""
        peer = self.client.peer
        lines = [b"%s %s HTTP/1.1\r\n" % (self.method, self.target), *self.fields]
        if peer or self.forwarded_for:
            lines.append(b"x-forwarded-for: %s%s\r\n" % (self.forwarded_for, peer or b"unknown"))
        lines.append(b"x-forwarded-proto: http\r\n")
        if self.chunked_up:
            lines.append(b"transfer-encoding: chunked\r\n")
        lines.append(b"\r\n")
        head = b"".join(lines)
        if head.isascii():
            return head
        carrier = carried_headers.carrier_line(b"".join(lines[1:-1]))  # b"": only the target was not
        return b"".join([*lines[:-1], carrier, b"\r\n"]) if carrier else head

    # the request's body -------------------------------------------------------------------------------
    def request_body(self, chunk: bytes) -> None:
        self.received += len(chunk)
        limits = self.client.limits
        if self.received > limits.max_body_bytes:
            self.too_large()
            return
        upstream = self.upstream
        if upstream is not None:
            if self.chunked_up:
                upstream.writelines([b"%x\r\n" % len(chunk), chunk, b"\r\n"])
            else:
                upstream.write(chunk)
        elif self.kind != _LOCAL and not self.abandoned:
            self.pending.append(chunk)
            self.pending_bytes += len(chunk)
            if self.kind != _INTERNAL and self.pending_bytes > _BUFFER_WHILE_CONNECTING:
                self.client.pause("waiting")

    def request_complete(self) -> None:
        self.request_done = True
        if self.upstream is not None:
            if self.chunked_up:
                self.upstream.write(_LAST_CHUNK)
        elif self.local is not None:
            response, close = self.local
            self.local = None
            self.finish(response, close)
        elif self.kind == _INTERNAL and self.task is None:
            internal = self.client.proxy.internal
            assert internal is not None
            self._spawn(self._internal(internal))

    def too_large(self) -> None:
        limit = self.client.limits.max_body_bytes
        if self is not self.client.active or self.response_started:
            self.client.close()
            return
        self._drop_upstream()
        self.respond_error(413, "too_large", f"the request body is larger than {limit} bytes", close=True)

    # the response -------------------------------------------------------------------------------------
    def response_head(self, status: int, head: bytes) -> bool:
        """Pass the cell's response head (status line to blank line, as received) on to the client, at
        the next flush; True when the response has its own framing (content-length or chunked), False
        when it ends when the cell closes. The usual head goes as it is: HTTP/1.1, a content-length,
        nothing hop-by-hop, a client keeping its connection alive."""
        self.response_started = True
        keep = self.keep_alive and not self.http10 and not self.client._eof
        if (
            keep
            and head.startswith(b"HTTP/1.1 ")
            and _HOP_RE.search(head) is None
            and (_LENGTH_RE.search(head) is not None or self.method == b"HEAD" or status in (204, 304))
        ):
            self.out.append(head)
            return True
        lines = head.split(b"\r\n")
        fields: list[bytes] = [b"HTTP/1.1%s\r\n" % lines[0][8:]]
        listed: frozenset[bytes] = frozenset()
        content_length = chunked = False
        for line in lines[1:-2]:
            name, _, value = line.partition(b":")
            lower = name.lower()
            if lower not in _HOP_BY_HOP:
                if lower == b"content-length":
                    content_length = True
                fields.append(line + b"\r\n")
            elif lower == b"transfer-encoding":
                chunked = True
            elif lower == b"connection":
                listed = _tokens(value, listed)
        if listed:
            fields = [fields[0], *_without(fields[1:], listed)]
        close = not self.keep_alive or self.client._eof
        if self.method == b"HEAD" or status in (204, 304) or content_length:
            pass
        elif not self.http10:
            fields.append(b"transfer-encoding: chunked\r\n")
            self.chunk_down = True
        else:
            close = True  # an HTTP/1.0 client reads this body until the connection closes
        if close:
            fields.append(b"connection: close\r\n")
        elif self.http10:
            fields.append(b"connection: keep-alive\r\n")
        fields.append(b"\r\n")
        self.close_after = close
        self.out.append(b"".join(fields))
        return content_length or chunked

    def response_body(self, data: bytes) -> None:
        if self.chunk_down:
            self.out.extend((b"%x\r\n" % len(data), data, b"\r\n"))
        else:
            self.out.append(data)

    def flush(self) -> None:
        """Write what the cell's last read brought: one system call for a head and its body."""
        out = self.out
        if out:
            self.out = []
            if len(out) == 1:
                self.client.write(out[0])
            elif len(out) == 2 and len(out[1]) < 4096:
                self.client.write(out[0] + out[1])
            else:
                self.client.writelines(out)

    def response_complete(self) -> None:
        self.upstream = None
        if self.chunk_down:
            self.out.append(_LAST_CHUNK)
        self.flush()
        self.response_done = True
        self.client.exchange_done(self, self.close_after or not self.request_done)

    def upstream_failed(self, connection: UpstreamConnection, reason: str) -> None:
        if self.abandoned or connection is not self.upstream:
            return
        self.upstream = None
        self.flush()
        if (
            not self.response_started
            and connection.reused
            and not connection.got_bytes
            and not self.has_body
            and not self.retried
            and self.method in _IDEMPOTENT
        ):
            # a kept-alive connection the cell had closed just before this request went out: nothing
            # was done; send it once more, on a new connection
            self.retried = True
            assert self.pool is not None
            self._spawn(self._reconnect(self.pool))
            return
        if self.response_started:
            self.client.close()  # the client sees a truncated response, never a made-up end
            return
        dest = self.dest
        where = f"gateway {dest.gateway}, environment {dest.env}" if dest else "this request"
        self.respond_error(502, "bad_gateway", f"the cell for {where} failed mid-request: {reason}")

    async def _reconnect(self, pool: UpstreamPool) -> None:
        try:
            connection = await pool.connect()
        except (OSError, TimeoutError) as exc:
            self._starting(f"is not accepting connections ({exc or type(exc).__name__})")
            return
        if self.abandoned or self.response_done:  # the client left, or was answered meanwhile (413)
            pool.release(connection)
            return
        self.attach(connection)

    def upstream_paused(self, paused: bool) -> None:
        if paused:
            self.client.pause("upstream")
        else:
            self.client.resume("upstream")

    def timed_out(self) -> None:
        """The cell has not answered within upstream_timeout_s."""
        limit = self.client.limits.upstream_timeout_s
        self._drop_upstream()
        if self.response_started:
            self.client.close()
            return
        self.respond_error(504, "gateway_timeout", f"the cell did not answer within {limit:g} s", close=True)

    # answers from the front itself --------------------------------------------------------------------
    def respond_error(self, status: int, code: str, message: str, *, close: bool = False) -> None:
        rid = request_id(self.request_id_header)
        extra: tuple[tuple[bytes, bytes], ...] = ()
        if status == 503:
            extra = ((b"retry-after", str(self.client.limits.retry_after_s).encode()),)
        close = close or not self.keep_alive
        response = error_response(
            status, code, message, rid, close=close, head=self.method == b"HEAD", extra=extra
        )
        self.respond(response, close)

    def respond(self, response: bytes, close: bool) -> None:
        """Answer with `response`: now if the request is complete (or has a body the front will not
        read: then close), else as soon as its (empty) body is."""
        self.kind = _LOCAL
        self.pending = []
        if self.request_done:
            self.finish(response, close)
        elif self.has_body:
            self.finish(response, True)
        else:
            self.local = (response, close)

    def finish(self, response: bytes, close: bool) -> None:
        self.response_started = self.response_done = True
        self.client.write(response)
        self.client.exchange_done(self, close or not self.request_done)

    def _starting(self, why: str = "is starting") -> None:
        dest = self.dest
        assert dest is not None
        message = f"the cell for gateway {dest.gateway}, environment {dest.env} {why}: retry in a moment"
        self.respond_error(503, "starting", message)

    def _not_live(self) -> None:
        dest = self.dest
        assert dest is not None
        self.respond_error(404, "not_found", f"no function {dest.name} is live on gateway {dest.gateway}")

    async def _internal(self, internal: Internal) -> None:
        path, _, query = self.target.partition(b"?")
        request = InternalRequest(
            method=self.method.decode("latin-1"),
            path=path.decode("latin-1"),
            query_string=query,
            headers=list(self.headers),
            body=b"".join(self.pending),
        )
        self.pending = []
        try:
            answer = await internal(request)
        except Exception:
            logger.exception("front: internal endpoint %s failed", request.path)
            self.respond_error(500, "internal_failed", f"the internal endpoint {request.path} failed")
            return
        if self.abandoned:
            return
        close = not self.keep_alive
        response = simple_response(answer.status, answer.headers, answer.body, close=close)
        self.finish(response, close)

    # endings ------------------------------------------------------------------------------------------
    def abandon(self) -> None:
        """The client is gone: stop whatever is in flight for it."""
        self.abandoned = True
        if self.task is not None and not self.task.done():
            self.task.cancel()
        self._drop_upstream()

    def _drop_upstream(self) -> None:
        upstream, self.upstream = self.upstream, None
        if upstream is not None:
            upstream.close()  # mid-exchange: its state is unknown, so it is never reused

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        self.task = self.client.loop.create_task(work)


def request_path(target: bytes) -> str:
    """The path a request target names, percent-decoded as ASGI servers give it to the cell's app."""
    if target.startswith(b"/"):
        path = target.partition(b"?")[0]
    else:  # absolute-form: http://host/path
        try:
            path = httptools.parse_url(target).path or b"/"
        except httptools.HttpParserInvalidURLError:
            return ""  # names no function
    text = path.decode("latin-1")
    return unquote(text) if "%" in text else text


def _tokens(value: bytes, listed: frozenset[bytes]) -> frozenset[bytes]:
    """Header names a `Connection` header lists: hop-by-hop as well (RFC 9110 7.6.1)."""
    tokens = {t.strip().lower() for t in value.split(b",")} - {b"close", b"keep-alive", b""}
    return listed | tokens


def _without(fields: list[bytes], names: frozenset[bytes]) -> list[bytes]:
    return [f for f in fields if f.partition(b":")[0].lower() not in names]
