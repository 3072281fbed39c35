"""The API's HTTP server (uvicorn) with limits against slow and oversized clients.

uvicorn bounds idle keep-alive connections (`timeout_keep_alive`) but not a client that trickles a
request's head byte by byte (slowloris): `BoundedHttpTools` closes a connection whose request line and
headers have not all arrived within `HEAD_TIMEOUT_S`, or that sends more than `MAX_HEAD_BYTES` of
them. The body has its own deadline in `limits.LimitRequests`. A slow client costs a connection and a
coroutine, never a worker thread: handlers run only once the whole request is in.
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HEAD_TIMEOUT_S = 10.0
MAX_HEAD_BYTES = 64 * 1024
KEEP_ALIVE_S = 5
MAX_CONNECTIONS = 1000  # beyond this uvicorn answers 503 at once rather than queueing without end


class BoundedHttpTools(HttpToolsProtocol):
    head_timeout_s = HEAD_TIMEOUT_S
    max_head_bytes = MAX_HEAD_BYTES

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_bytes = 0

    # uvicorn's own signature takes asyncio.Transport where asyncio.Protocol says BaseTransport; we
    # keep uvicorn's, which is what it calls us with.
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        reading_head = self._head_timer is not None
        super().data_received(data)
        if reading_head and self._head_timer is not None:  # the head is still not complete
            self._head_bytes += len(data)
            if self._head_bytes > self.max_head_bytes:
                self._refuse(b"431 Request Header Fields Too Large", b"request head larger than 64 KiB")

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()  # the next request's head has the same deadline

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._head_bytes = 0
        self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_timed_out)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.cycle is None or self.cycle.response_complete:
            self._refuse(b"408 Request Timeout", b"the request head did not arrive in time")

    def _refuse(self, status: bytes, message: bytes) -> None:
        self._disarm()
        if self.transport.is_closing():
            return
        self.transport.write(
            b"HTTP/1.1 " + status + b"\r\nconnection: close\r\ncontent-type: text/plain\r\n"
            b"content-length: " + str(len(message)).encode() + b"\r\n\r\n" + message
        )
        self.transport.close()


def api_server(app: Any, host: str, port: int, log_level: str = "warning") -> uvicorn.Server:
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        lifespan="on",
        http=BoundedHttpTools,
        timeout_keep_alive=KEEP_ALIVE_S,
        limit_concurrency=MAX_CONNECTIONS,
    )
    return uvicorn.Server(config)
