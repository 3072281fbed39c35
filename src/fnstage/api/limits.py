"""Limits on every API request, checked before any route runs, so a refused request changed nothing.

An ASGI middleware (outermost): a path with a control character or a space (which names nothing),
headers and query string sizes, the body's size (413 from the
`content-length` alone when it says too much, or as soon as the streamed bytes pass the limit, before
anything is parsed), a deadline for receiving the whole body (a client trickling bytes is cut off with
408), and the nesting depth of a JSON body (422). Each refusal is the API's error shape and names
what was too big and what is allowed.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool

from fnstage.http_body import BodyTooLarge, ClientGone, read_body

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MiB = 1024 * 1024
# A JSON body up to this size has its depth checked on the event loop: 7 us for a 3-file save, 0.8 ms
# for 32 KiB shaped to hover at the limit. A hop to the thread pool costs more than that for every save.
INLINE_DEPTH_CHECK_BYTES = 32 * 1024
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)  # unrolled: C speed on long strings
_PATH_FORBIDDEN = re.compile(r"[\x00-\x20\x7f-\x9f]")  # after percent-decoding
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_OPENERS_AS_SQUARE = bytes.maketrans(b"{}", b"[]")


@dataclass(frozen=True)
class RequestLimits:
    max_body_bytes: int = 8 * MiB  # a function's files are at most 5 MiB; JSON escaping adds a little
    body_timeout_s: float = 30.0  # the whole body must arrive within this, however it is trickled
    max_json_depth: int = 32
    max_header_bytes: int = 16 * 1024  # all header names and values together
    # two 300-character `diff` references, percent-encoded UTF-8, fit: a query the document allows
    max_query_bytes: int = 8192


class _Refused(Exception):
    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field


def json_too_deep(body: bytes, limit: int) -> bool:
    """Do arrays and objects nest more than `limit` deep (brackets inside strings do not count)?

    Block by block at C speed (`bytes.count`); only a block that could cross the limit is walked
    bracket by bracket. About 0.05 s for 8 MiB of a function's files; a body shaped to hover at the
    limit costs up to about a second, and runs off the event loop (see `LimitRequests`)."""
    brackets = _STRING.sub(b"", body).translate(_OPENERS_AS_SQUARE, _NOT_BRACKETS)
    depth = 0
    for block in _blocks(brackets, 256):
        opens = block.count(b"[")
        if depth + opens <= limit:  # cannot cross the limit inside this block
            depth += 2 * opens - len(block)
            continue
        for small in _blocks(block, 16):
            opens = small.count(b"[")
            if depth + opens <= limit:
                depth += 2 * opens - len(small)
                continue
            for char in small:
                depth += 1 if char == 0x5B else -1  # "["
                if depth > limit:
                    return True
    return False


def _blocks(data: bytes, size: int) -> Iterator[bytes]:
    return (data[i : i + size] for i in range(0, len(data), size))


class LimitRequests:
    def __init__(self, app: ASGIApp, limits: RequestLimits | None = None) -> None:
        self.app = app
        self.limits = limits or RequestLimits()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            self._check_head(scope)
            body = await self._read_body(scope, receive)
        except _Refused as refusal:
            await _refuse(send, refusal)
            return
        except ClientGone:
            return
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if delivered:
                return await receive()  # after the body: only http.disconnect comes
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    def _check_head(self, scope: Scope) -> None:
        lim = self.limits
        path: str = scope.get("path", "")
        bad = _PATH_FORBIDDEN.search(path)
        if bad:
            # Starlette's route patterns end in `$`, which matches before a trailing newline, and
            # pydantic reads "2\n" as 2: `/functions/dev/y%0a` saved dev/y, `/tokens/2%0a` revoked 2.
            raise _Refused(
                400,
                "bad_request",
                f"the path {path!r} contains a control character or a space "
                f"(U+{ord(bad.group()):04X}): no gateway, function, user or id has one",
            )
        query = scope.get("query_string", b"")
        if len(query) > lim.max_query_bytes:
            raise _Refused(
                414, "too_large", f"the query string is {len(query)} bytes: at most {lim.max_query_bytes}"
            )
        size = sum(len(k) + len(v) for k, v in scope["headers"])
        if size > lim.max_header_bytes:
            raise _Refused(
                431, "too_large", f"the request headers are {size} bytes: at most {lim.max_header_bytes}"
            )
        for key, value in scope["headers"]:
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    raise _Refused(400, "bad_request", "content-length is not a number") from None
                if declared > lim.max_body_bytes:
                    raise self._too_large(declared)

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        lim = self.limits
        try:
            async with asyncio.timeout(lim.body_timeout_s):  # one deadline for the whole body
                body = await read_body(receive, lim.max_body_bytes)
        except BodyTooLarge as exc:
            raise self._too_large(exc.size) from None
        except TimeoutError:
            raise _Refused(
                408, "timeout", f"the request body did not arrive within {lim.body_timeout_s:g} s"
            ) from None
        looks_like_json = body.lstrip()[:1] in (b"[", b"{")  # whatever its content-type says
        if looks_like_json and await _too_deep(body, lim.max_json_depth):
            raise _Refused(
                422,
                "invalid",
                f"the JSON body nests arrays and objects more than {lim.max_json_depth} levels deep",
                "body",
            )
        return body

    def _too_large(self, size: int) -> _Refused:
        limit = self.limits.max_body_bytes
        return _Refused(
            413,
            "too_large",
            f"the request body is {size:,} bytes or more: at most {limit:,} bytes are allowed",
        )


async def _too_deep(body: bytes, limit: int) -> bool:
    if len(body) <= INLINE_DEPTH_CHECK_BYTES:
        return json_too_deep(body, limit)
    return await run_in_threadpool(json_too_deep, body, limit)


async def _refuse(send: Send, refusal: _Refused) -> None:
    body = json.dumps(
        {"error": {"code": refusal.code, "message": refusal.message, "field": refusal.field}}
    ).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
