"""Call one function version for one request: build `ctx`, run `main` with a time limit, and turn what it
returns (or raises) into a status, headers and body. A function's failure never escapes: it becomes a
500 with the request id, its traceback goes to the `fnstage.runtime` logger and to the invocation log.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Iterable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import parse_qsl

from fnstage.runtime.loader import LiveVersion, describe_exception, format_traceback
from fnstage.sdk import Context, FunctionInfo, HTTPError, Log, Response

logger = logging.getLogger("fnstage.runtime")

JSON = "application/json"
TEXT = "text/plain; charset=utf-8"
BINARY = "application/octet-stream"

Headers = list[tuple[str, str]]


class Outcome(NamedTuple):
    status: int
    headers: Headers
    body: bytes
    lines: list[str]


@dataclass(frozen=True)
class InvocationLog:
    request_id: str
    time: float  # time.time() when the request started
    version: int
    status: int
    duration_ms: float
    lines: list[str]
    error: str | None = None  # one-line summary, then the traceback


class InvocationLogs:
    """The last `per_function` invocations of each function, newest last."""

    def __init__(self, per_function: int = 100) -> None:
        self.per_function = per_function
        self._logs: dict[tuple[str, str], deque[InvocationLog]] = {}

    def record(self, gateway: str, name: str, entry: InvocationLog) -> None:
        ring = self._logs.get((gateway, name))
        if ring is None:
            ring = self._logs.setdefault((gateway, name), deque(maxlen=self.per_function))
        ring.append(entry)

    def recent(self, gateway: str, name: str) -> list[InvocationLog]:
        return list(self._logs.get((gateway, name), ()))

    def forget(self, gateway: str, name: str) -> None:
        self._logs.pop((gateway, name), None)


def error_body(code: str, message: str, request_id: str | None = None) -> bytes:
    error: dict[str, str] = {"code": code, "message": message}
    if request_id is not None:
        error["request_id"] = request_id
    return json.dumps({"error": error}).encode()


def make_context(
    live: LiveVersion,
    method: str,
    path: str,
    query_string: bytes,
    headers: Iterable[tuple[bytes, bytes]],
    body: bytes,
    request_id: str,
) -> Context:
    header_map: dict[str, str] = {}
    for raw_name, raw_value in headers:
        key, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        header_map[key] = f"{header_map[key]}, {value}" if key in header_map else value
    query = dict(parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)) if query_string else {}
    return Context(
        method=method,
        path=path,
        query=query,
        headers=header_map,
        body=body,
        env=live.env,
        function=FunctionInfo(live.name, live.version, live.semver),
        config=live.config,
        log=Log(),
        request_id=request_id,
    )


async def invoke(
    live: LiveVersion,
    *,
    method: str,
    path: str,
    query_string: bytes = b"",
    headers: Iterable[tuple[bytes, bytes]] = (),
    body: bytes = b"",
    request_id: str,
    executor: Executor | None = None,
    logs: InvocationLogs | None = None,
) -> Outcome:
    """Run `live.main` for one request. A sync `main` runs in `executor` (a bounded thread pool)."""
    started_at = time.time()
    started = time.perf_counter()
    ctx = make_context(live, method, path, query_string, headers, body, request_id)
    error: str | None = None
    deadline = asyncio.timeout(live.timeout_s)
    try:
        async with deadline:
            if live.is_async:
                result = await live.main(ctx)
            else:
                result = await asyncio.get_running_loop().run_in_executor(executor, live.main, ctx)
        status, out_headers, out_body = to_response(result)
    except HTTPError as exc:
        status, out_headers, out_body = _http_error(exc)
    except asyncio.CancelledError:
        raise  # the client went away or the server is stopping: nothing to answer
    except BaseException as exc:  # SystemExit too: a function must not stop the runtime
        if isinstance(exc, TimeoutError) and deadline.expired():
            message = f"function {live.name} did not answer within {live.timeout_s:g} s"
            status, out_body, error = 504, error_body("timeout", message, request_id), message
            logger.warning(
                "%s (gateway %s, version %d, request %s)", message, live.gateway, live.version, request_id
            )
        else:
            message = f"function {live.name} failed; see its logs for request {request_id}"
            status, out_body = 500, error_body("function_failed", message, request_id)
            error = f"{describe_exception(exc, live.files)}\n{format_traceback(exc, live.files)}"
            logger.error(
                "function %s (gateway %s, version %d) failed, request %s\n%s",
                live.name,
                live.gateway,
                live.version,
                request_id,
                error,
            )
        out_headers = [("content-type", JSON)]
    lines = ctx.log.lines
    if logs is not None:
        duration_ms = (time.perf_counter() - started) * 1000
        entry = InvocationLog(request_id, started_at, live.version, status, duration_ms, lines, error)
        logs.record(live.gateway, live.name, entry)
    return Outcome(status, out_headers, out_body, lines)


def _http_error(exc: HTTPError) -> tuple[int, Headers, bytes]:
    status = exc.status if isinstance(exc.status, int) and 400 <= exc.status <= 599 else 500
    headers = _safe_headers(exc.headers)
    headers.append(("content-type", JSON))
    return status, headers, error_body("function_error", exc.message)


def to_response(result: Any) -> tuple[int, Headers, bytes]:
    """What `main` returned -> (status, headers, body). Raises TypeError for something unanswerable."""
    if isinstance(result, Response):
        if not isinstance(result.status, int) or not 100 <= result.status <= 599:
            raise TypeError(f"Response.status must be an HTTP status code, not {result.status!r}")
        headers = _safe_headers(result.headers)
        if result.body is None or result.body == b"":
            return result.status, headers, b""
        content_type, body = _encode(result.body)
        if not any(k.lower() == "content-type" for k, _ in headers):
            headers.append(("content-type", content_type))
        return result.status, headers, body
    if result is None:
        return 204, [], b""
    content_type, body = _encode(result)
    return 200, [("content-type", content_type)], body


def _encode(value: Any) -> tuple[str, bytes]:
    if isinstance(value, str):
        return TEXT, value.encode("utf-8")
    if isinstance(value, bytes | bytearray | memoryview):
        return BINARY, bytes(value)
    try:
        return JSON, json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"main returned {type(value).__name__}, which is not JSON: return a dict, list, str, bytes, "
            f"None or fnstage.Response ({exc})"
        ) from None


_FRAMING = frozenset({"content-length", "transfer-encoding", "connection"})


def _safe_headers(headers: Mapping[str, str] | None) -> Headers:
    """The function's headers, minus framing ones (the runtime sets those) and any that could split
    the response (CR or LF) or cannot be sent (not latin-1)."""
    safe = []
    for key, value in (headers or {}).items():
        key, value = str(key).lower(), str(value)
        if key in _FRAMING or "\r" in key or "\n" in key or "\r" in value or "\n" in value:
            continue
        if not (key.isascii() and _is_latin1(value)):
            continue
        safe.append((key, value))
    return safe


def _is_latin1(text: str) -> bool:
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True
