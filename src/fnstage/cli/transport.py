"""HTTP for the CLI on the standard library: one keep-alive connection per server, with timeouts.

A command sends a handful of small JSON requests to one server, so it needs none of httpx's pools,
HTTP/2 or async, and importing httpx cost about 160 ms of CPU against 47 ms for `http.client` (issue
17: a command should answer in 100 ms). A `Transport` is any callable from `Request` to `Response`:
`HttpTransport` talks to the network; tests pass their own fake API instead (`client.using_transport`).

Proxies come from the usual environment variables (`https_proxy`, `http_proxy`, `all_proxy`,
`no_proxy`), as httpx read them; `urllib.request`, which parses them, is imported only when one is set.
"""

from __future__ import annotations

import http.client
import os
import select
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import SplitResult, unquote, urlsplit


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


class HttpTransport:
    """Sends each request over a reused HTTP/1.1 connection to its server; `close` closes them."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._connections: dict[tuple[str, str, int, str | None], http.client.HTTPConnection] = {}

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
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
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

    def _open(self, route: _Route) -> http.client.HTTPConnection:
        proxy = route.proxy
        if route.scheme == "https":
            import ssl  # only for https: a loopback `fnstage up` never pays for it

            context = ssl.create_default_context()
            if proxy is None:
                return http.client.HTTPSConnection(
                    route.host, route.port, timeout=self.timeout, context=context
                )
            connection: http.client.HTTPConnection = http.client.HTTPSConnection(
                proxy.hostname or "", proxy.port or 80, timeout=self.timeout, context=context
            )
            connection.set_tunnel(route.host, route.port, headers=_proxy_headers(proxy))
            return connection
        if proxy is None:
            return http.client.HTTPConnection(route.host, route.port, timeout=self.timeout)
        return http.client.HTTPConnection(proxy.hostname or "", proxy.port or 80, timeout=self.timeout)

    def _send(self, connection: http.client.HTTPConnection, route: _Route, request: Request) -> Response:
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
            connection.request(request.method, route.target, body=request.body, headers=headers)
            answer = connection.getresponse()
            body = answer.read()
        except TimeoutError:
            connection.close()
            raise TimedOut(f"no answer within {self.timeout:g} s") from None
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            raise
        except (http.client.HTTPException, OSError) as error:
            connection.close()
            raise TransportError(_reason(error)) from None
        return Response(answer.status, answer.reason, body)


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


def _closed_by_peer(connection: http.client.HTTPConnection) -> bool:
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
