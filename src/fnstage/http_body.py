"""Reading an ASGI request body under a size limit: the API's request limits and the runtime's app both
do it, on every request with a body. No imports beyond the standard library: the runtime loads it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]


class BodyTooLarge(Exception):
    """More than the limit arrived (or was announced); `size` is how much, so far."""

    def __init__(self, size: int) -> None:
        super().__init__(f"the request body is {size} bytes or more")
        self.size = size


class ClientGone(Exception):
    """The client disconnected before its body was complete: there is no one to answer."""


async def read_body(receive: Receive, max_bytes: int) -> bytes:
    """The whole body, refused as soon as the bytes received pass `max_bytes`. The caller bounds the
    time (a client trickling bytes)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_bytes:
            raise BodyTooLarge(size)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
