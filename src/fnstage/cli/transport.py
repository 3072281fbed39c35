"""HTTP for the CLI on the standard library: one keep-alive connection per server, with timeouts.

A command sends a handful of small JSON requests to one server, so it needs none of httpx's pools,
HTTP/2 or async, and importing httpx cost about 160 ms of CPU against 47 ms for `http.client` (issue
17: a command should answer in 100 ms). Plain http:// without a proxy (a loopback `fnstage up`, the
common case) goes through `PlainConnection`, HTTP/1.1 on a socket, since `http.client` itself
imports `email` and `ssl` (about 16 ms of CPU at every start); https and proxies use `http.client`,
imported then. A `Transport` is any callable from `Request` to `Response`:
`HttpTransport` talks to the network; tests pass their own fake API instead (`client.using_transport`).

Proxies come from the usual environment variables (`https_proxy`, `http_proxy`, `all_proxy`,
`no_proxy`), as httpx read them; `urllib.request`, which parses them, is imported only when one is set.
"""

from __future__ import annotations

import os
import select
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol
from urllib.parse import SplitResult, unquote, urlsplit

if TYPE_CHECKING:  # imported for https and proxies only, when such a connection is opened
    import http.client


@dataclass(frozen=True)
class Request:
    method: str
    url: str  # absolute: scheme://host[:port]/path[?query]
    headers: Mapping[str, str]
    body: bytes | None = None


@dataclass(frozen=True)
class Response:
    status: int
    reason: str
    body: bytes


Transport = Callable[[Request], Response]


class TransportError(Exception):
    """The request got no HTTP answer; the message says why, in words for the user."""


class ConnectFailed(TransportError):
    """No connection to the server (or the proxy): refused, unknown host, unreachable, TLS refused."""

    def __init__(self, message: str, *, refused: bool) -> None:
        super().__init__(message)
        self.refused = refused  # the host is there, but nothing listens on the port


class TimedOut(TransportError):
    """The server (or the proxy) accepted nothing or answered nothing within the timeout."""


class ProtocolError(Exception):
    """The answer is not HTTP/1.1 as a client reads it."""


# Only these are sent again after a kept-alive connection turned out closed by the server: a second
# POST or PUT could act twice.
_RETRIED_METHODS = frozenset({"GET", "HEAD"})


@dataclass(frozen=True)
class _Route:
    """Where a request's bytes go: the connection to open, and the request target to send on it."""

    key: tuple[str, str, int, str | None]
    scheme: str
    host: str
    port: int
    target: str
    proxy: SplitResult | None


class Connection(Protocol):
    """One connection to a server (or a proxy); `sock` is None until `connect` and after `close`."""

    @property
    def sock(self) -> socket.socket | None: ...

    def connect(self) -> None: ...

    def exchange(self, method: str, target: str, body: bytes | None, headers: Mapping[str, str]) -> Response:
        """Send one request and read its whole answer. Raises TimeoutError, ConnectionResetError or
        BrokenPipeError (the server closed the connection), ProtocolError, or another OSError."""
        ...

    def close(self) -> None: ...


_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})  # sent with a Content-Length even when empty
_MAX_LINE = 65536


class PlainConnection:
    """HTTP/1.1 on a plain socket, as `http.client` speaks it for one request at a time: a Host and
    `Accept-Encoding: identity` header, a Content-Length body; an answer read by Content-Length,
    chunks, or to the connection's close, which it then closes."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.sock: socket.socket | None = None
        self._buffer = b""

    def connect(self) -> None:
        self.sock = socket.create_connection((self.host, self.port), self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock, self._buffer = None, b""

    def exchange(self, method: str, target: str, body: bytes | None, headers: Mapping[str, str]) -> Response:
        assert self.sock is not None, "connect first"
        host = f"[{self.host}]" if ":" in self.host else self.host  # an IPv6 address
        port = "" if self.port == 80 else f":{self.port}"
        lines = [f"{method} {target} HTTP/1.1", f"Host: {host}{port}", "Accept-Encoding: identity"]
        if body is not None or method in _BODY_METHODS:
            lines.append(f"Content-Length: {len(body or b'')}")
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b""))
        status_line = self._line()
        if not status_line:
            raise ConnectionResetError("the server closed the connection without an answer")
        version, _, rest = status_line.decode("latin-1").rstrip("\r\n").partition(" ")
        code, _, reason = rest.partition(" ")
        if not version.startswith("HTTP/1.") or not code.isdigit() or len(code) != 3:
            raise ProtocolError(f"not an HTTP answer: {status_line[:80]!r}")
        status = int(code)
        fields: dict[str, str] = {}
        while (line := self._line()) not in (b"\r\n", b"\n"):
            if not line:
                raise ProtocolError("the answer's headers end too early")
            name, colon, value = line.decode("latin-1").partition(":")
            if colon:
                fields[name.strip().lower()] = value.strip()
        keep = version == "HTTP/1.1" and fields.get("connection", "").lower() != "close"
        if status < 200 or status in (204, 304) or method == "HEAD":
            content = b""
        elif "chunked" in fields.get("transfer-encoding", "").lower():
            content = self._chunks()
        elif "content-length" in fields and fields["content-length"].isdigit():
            content = self._exactly(int(fields["content-length"]))
        else:
            content, keep = self._to_the_end(), False
        if not keep:
            self.close()
        return Response(status, reason.strip(), content)

    def _fill(self) -> bool:
        assert self.sock is not None
        data = self.sock.recv(65536)
        self._buffer += data
        return bool(data)

    def _line(self) -> bytes:
        """One line with its end, or what is left (b"" at the connection's end)."""
        while (end := self._buffer.find(b"\n")) < 0:
            if len(self._buffer) > _MAX_LINE:
                raise ProtocolError("a line of the answer is too long")
            if not self._fill():
                line, self._buffer = self._buffer, b""
                return line
        line, self._buffer = self._buffer[: end + 1], self._buffer[end + 1 :]
        return line

    def _exactly(self, size: int) -> bytes:
        while len(self._buffer) < size:
            if not self._fill():
                raise ProtocolError(f"the answer ended after {len(self._buffer)} of {size} bytes")
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def _chunks(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size_line = self._line().split(b";", 1)[0].strip()
            try:
                size = int(size_line, 16)
            except ValueError:
                raise ProtocolError(f"a bad chunk size: {size_line[:20]!r}") from None
            if size == 0:
                while self._line() not in (b"\r\n", b"\n", b""):  # trailers
                    pass
                return b"".join(parts)
            parts.append(self._exactly(size))
            self._exactly(2)  # the chunk's CRLF

    def _to_the_end(self) -> bytes:
        while self._fill():
            pass
        data, self._buffer = self._buffer, b""
        return data


class _StdlibConnection:
    """`http.client`'s connection, for https and proxies (TLS, tunnels)."""

    def __init__(self, connection: http.client.HTTPConnection) -> None:
        self._connection = connection

    @property
    def sock(self) -> socket.socket | None:
        sock: socket.socket | None = self._connection.sock
        return sock

    def connect(self) -> None:
        self._connection.connect()

    def close(self) -> None:
        self._connection.close()

    def exchange(self, method: str, target: str, body: bytes | None, headers: Mapping[str, str]) -> Response:
        import http.client

        try:
            self._connection.request(method, target, body=body, headers=dict(headers))
            answer = self._connection.getresponse()
            return Response(answer.status, answer.reason, answer.read())
        except http.client.RemoteDisconnected:
            raise  # a ConnectionResetError: the server closed the connection
        except http.client.HTTPException as error:
            raise ProtocolError(str(error) or type(error).__name__) from None


class HttpTransport:
    """Sends each request over a reused HTTP/1.1 connection to its server; `close` closes them."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._connections: dict[tuple[str, str, int, str | None], Connection] = {}

    def __call__(self, request: Request) -> Response:
        route = _route(request.url)
        connection = self._connections.get(route.key)
        if connection is not None and _closed_by_peer(connection):
            connection.close()
        if connection is None:
            connection = self._connections[route.key] = self._open(route)
        reused = connection.sock is not None
        try:
            return self._send(connection, route, request)
        except (BrokenPipeError, ConnectionResetError):
            # The server closed a kept-alive connection just as this request went out: once more on a
            # fresh one, for requests that are safe to repeat.
            connection.close()
            if not (reused and request.method in _RETRIED_METHODS):
                raise TransportError("the server closed the connection before answering") from None
            return self._send(connection, route, request)

    def close(self) -> None:
        for connection in self._connections.values():
            connection.close()
        self._connections.clear()

    def _open(self, route: _Route) -> Connection:
        proxy = route.proxy
        if route.scheme == "http" and proxy is None:
            return PlainConnection(route.host, route.port, self.timeout)
        import http.client  # only for https and proxies: a loopback `fnstage up` never pays for it

        if route.scheme == "https":
            import ssl

            context = ssl.create_default_context()
            if proxy is None:
                return _StdlibConnection(
                    http.client.HTTPSConnection(route.host, route.port, timeout=self.timeout, context=context)
                )
            connection: http.client.HTTPConnection = http.client.HTTPSConnection(
                proxy.hostname or "", proxy.port or 80, timeout=self.timeout, context=context
            )
            connection.set_tunnel(route.host, route.port, headers=_proxy_headers(proxy))
            return _StdlibConnection(connection)
        assert proxy is not None, "plain http without a proxy returned above"
        return _StdlibConnection(
            http.client.HTTPConnection(proxy.hostname or "", proxy.port or 80, timeout=self.timeout)
        )

    def _send(self, connection: Connection, route: _Route, request: Request) -> Response:
        if connection.sock is None:
            try:
                connection.connect()
            except TimeoutError:
                connection.close()
                raise TimedOut(f"no connection within {self.timeout:g} s") from None
            except OSError as error:
                connection.close()
                refused = isinstance(error, ConnectionRefusedError)
                raise ConnectFailed(_reason(error), refused=refused) from None
        headers = dict(request.headers)
        if route.proxy is not None and route.scheme == "http":
            headers.update(_proxy_headers(route.proxy))
        try:
            return connection.exchange(request.method, route.target, request.body, headers)
        except TimeoutError:
            connection.close()
            raise TimedOut(f"no answer within {self.timeout:g} s") from None
        except (BrokenPipeError, ConnectionResetError):
            raise
        except (ProtocolError, OSError) as error:
            connection.close()
            raise TransportError(_reason(error)) from None


def _route(url: str) -> _Route:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise TransportError(f"the URL {url} must start with http:// or https://")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise TransportError(f"the URL {url} has an invalid port") from None
    host = parts.hostname
    if not host:
        raise TransportError(f"the URL {url} names no host")
    path = parts.path or "/"
    target = path + (f"?{parts.query}" if parts.query else "")
    proxy = _proxy_for(parts.scheme, host)
    if proxy is not None and parts.scheme == "http":
        target = f"http://{parts.netloc}{target}"  # a proxy takes the absolute URL
    key = (parts.scheme, host, port, proxy.geturl() if proxy else None)
    return _Route(key, parts.scheme, host, port, target, proxy)


def _proxy_for(scheme: str, host: str) -> SplitResult | None:
    """The proxy the environment names for this scheme and host, or None."""
    if not any(name.lower().endswith("_proxy") for name in os.environ):
        return None
    import urllib.request

    proxies = urllib.request.getproxies_environment()
    if urllib.request.proxy_bypass(host):  # no_proxy (on Linux, from the environment alone)
        return None
    url = proxies.get(scheme) or proxies.get("all")
    if not url:
        return None
    proxy = urlsplit(url if "://" in url else "http://" + url)
    if proxy.scheme != "http" or not proxy.hostname:
        raise TransportError(f"the proxy {url} (from the environment) must be an http:// URL with a host")
    return proxy


def _proxy_headers(proxy: SplitResult) -> dict[str, str]:
    if proxy.username is None:
        return {}
    import base64

    credentials = f"{unquote(proxy.username)}:{unquote(proxy.password or '')}".encode()
    return {"Proxy-Authorization": "Basic " + base64.b64encode(credentials).decode("ascii")}


def _closed_by_peer(connection: Connection) -> bool:
    """Whether an idle kept-alive connection was closed by the server (it reads as ready: EOF)."""
    sock = connection.sock
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def _reason(error: BaseException) -> str:
    """An OSError's words without its errno prefix: "Connection refused", not "[Errno 111] ..."."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__
