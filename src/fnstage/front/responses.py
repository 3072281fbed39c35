"""The answers the front gives itself (404, 408, 413, 431, 502, 503, 504): whole HTTP/1.1 responses as
bytes, in the runtime's error shape `{"error": {"code", "message", "request_id"}}` with `x-request-id`,
so a client cannot tell whether the front or the cell refused it."""

from __future__ import annotations

import os
import re
from http import HTTPStatus

from fnstage.runtime.invoker import error_body

_REQUEST_ID_RE = re.compile(rb"^[A-Za-z0-9._-]{1,64}$")


def request_id(given: bytes | None) -> str:
    """The client's `x-request-id` when it is a sane one (as the runtime takes it), else a new one."""
    if given is not None and _REQUEST_ID_RE.match(given):
        return given.decode("ascii")
    return os.urandom(16).hex()


def status_line(status: int, reason: bytes | None = None) -> bytes:
    if not reason:
        try:
            reason = HTTPStatus(status).phrase.encode()
        except ValueError:
            reason = b""
    return b"HTTP/1.1 %d %s\r\n" % (status, reason)


def error_response(
    status: int,
    code: str,
    message: str,
    rid: str,
    *,
    close: bool = False,
    head: bool = False,
    extra: tuple[tuple[bytes, bytes], ...] = (),
) -> bytes:
    body = error_body(code, message, rid)
    lines = [
        status_line(status),
        b"content-type: application/json\r\n",
        b"content-length: %d\r\n" % len(body),
        b"x-request-id: %s\r\n" % rid.encode(),
    ]
    lines.extend(b"%s: %s\r\n" % pair for pair in extra)
    if close:
        lines.append(b"connection: close\r\n")
    lines.append(b"\r\n")
    if not head:
        lines.append(body)
    return b"".join(lines)


def simple_response(status: int, headers: list[tuple[bytes, bytes]], body: bytes, *, close: bool) -> bytes:
    """An internal endpoint's answer: its own headers, with the framing the front is responsible for."""
    lines = [status_line(status)]
    for name, value in headers:
        if name.lower() not in (b"content-length", b"transfer-encoding", b"connection"):
            lines.append(b"%s: %s\r\n" % (name, value))
    lines.append(b"content-length: %d\r\n" % len(body))
    if close:
        lines.append(b"connection: close\r\n")
    lines.append(b"\r\n")
    lines.append(body)
    return b"".join(lines)
