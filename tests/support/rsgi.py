"""An httpx transport that calls an app's `__rsgi__` in process, as granian calls it: the app's tests run
through RSGI (what a cell serves) as well as ASGI without a server. The fakes do what granian 2.8 was
seen to do (tests/test_runtime_rsgi.py checks the same against the real server): header names
lowercased, a value that is not visible ASCII left out of `items()` and `get` while `len` still counts
its name, the body as chunks ending with an empty one (a broken body: one more empty chunk first), a
response's headers as text sent as UTF-8."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import httpx

_VISIBLE_ASCII = re.compile(rb"^[\t\x20-\x7e]*$")


class FakeHeaders:
    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self._names = {k.lower() for k, _ in raw}
        self._items = [
            (k.decode("latin-1").lower(), v.decode("ascii")) for k, v in raw if _VISIBLE_ASCII.match(v)
        ]

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def __len__(self) -> int:
        return len(self._names)

    def get(self, key: str, default: Any = None) -> Any:
        return next((v for k, v in self._items if k == key), default)


@dataclass
class FakeScope:
    method: str
    path: str
    query_string: str
    headers: FakeHeaders
    proto: str = "http"
    http_version: str = "1.1"
    scheme: str = "http"
    client: str = "127.0.0.1:50000"
    server: str = "127.0.0.1:8000"


class _Stream:
    def __init__(self, parts: list[bytes]) -> None:
        self._parts = parts

    async def send_bytes(self, data: bytes) -> None:
        self._parts.append(data)


@dataclass
class FakeProto:
    chunks: AsyncIterator[bytes]  # the body's chunks as granian yields them (the empty end ones too)
    status: int | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    parts: list[bytes] = field(default_factory=list)
    streamed: bool = False
    _iterating: bool = False

    def __aiter__(self) -> FakeProto:
        assert not self._iterating, "granian's body can be iterated once"
        self._iterating = True
        return self

    async def __anext__(self) -> bytes:
        return await self.chunks.__anext__()

    def _answer(self, status: int, headers: list[tuple[str, str]]) -> None:
        assert self.status is None, "answered twice"
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in headers), headers
        self.status, self.headers = status, headers

    def response_bytes(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self._answer(status, headers)
        self.parts.append(bytes(body))

    def response_stream(self, status: int, headers: list[tuple[str, str]]) -> _Stream:
        self._answer(status, headers)
        self.streamed = True
        return _Stream(self.parts)

    def close(self, status: int | None) -> None:
        self.status = status


async def body_chunks(parts: Any, broken: bool = False) -> AsyncIterator[bytes]:
    """A body (an async iterable of its parts, read as the app asks) as granian yields it: its
    chunks, then an empty one; a broken body: one more empty one first."""
    async for part in parts:
        if part:
            yield part
    if broken:
        yield b""
    yield b""


class RSGITransport(httpx.AsyncBaseTransport):
    """Calls `app.__rsgi__` for each request, with the fakes above."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        raw_path = request.url.raw_path.partition(b"?")[0]
        scope = FakeScope(
            method=request.method,
            path=unquote(raw_path.decode("ascii")),
            query_string=request.url.query.decode("ascii"),
            headers=FakeHeaders([(k.lower(), v) for k, v in request.headers.raw]),
        )
        proto = FakeProto(body_chunks(request.stream))
        await self.app.__rsgi__(scope, proto)
        assert proto.status is not None, "the app did not answer"
        headers = [(k.encode("latin-1"), v.encode()) for k, v in proto.headers]
        content = b"".join(proto.parts)
        if request.method == "HEAD":
            content = b""
        elif not any(k.lower() == b"content-length" for k, _ in headers):  # granian adds it
            headers.append((b"content-length", b"%d" % len(content)))
        return httpx.Response(proto.status, headers=headers, content=content, request=request)
