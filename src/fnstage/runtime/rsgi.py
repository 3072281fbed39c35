"""granian's RSGI interface, seen as ASGI: the scope, the request body and the response of a request the
runtime app does not answer directly (`RuntimeApp.__rsgi__`), so that each of its behaviours (internal
routes, bodies and their limits, held cells, forwarding, splits, version URLs) has one implementation,
written against ASGI.

A cell serves RSGI by default because granian does less work a request for it than for ASGI (no message
dicts, headers as text it has already parsed; BENCHMARKS.md, "A cell speaks RSGI"). What RSGI gives
differs from ASGI in these ways, each handled here or said where it shows; through the front a user
sees the same from either interface (`tests/test_e2e_request_headers.py`):
- header values: granian gives a request header's value only when it is visible ASCII (RFC 9110's
  field-value without obs-text); any other value is left out of `headers.items()` and `get` alike. The
  front and a forwarding cell then carry every header line whole (`carried_headers`), and the app
  reads them from there. Without a carrier (a client at the cell's own socket, or an `--env` runtime's
  environment cell told "rsgi" outright), `unreadable_headers` tells the app a value is missing, which
  refuses the request (400) rather than hand a function a request with a header missing; a repeated
  name with only some of its values left out is not seen there.
- response header values are text, which granian sends as UTF-8: so does the ASGI path
  (`invoker.response_headers`); a forwarded answer's bytes that are not UTF-8 are read as latin-1
  (`text_value`), which only a lock cell told "asgi" behind one told "rsgi" could send.
- the body: an empty chunk marks the body's end, and a broken body (the client left mid-body) gives
  one more empty chunk before the end; `BodyReceiver` tells the two apart (`http.disconnect`). A
  chunked body's trailers give an empty chunk too: such a body is taken as broken. The front and a
  forwarding cell never send trailers (they re-chunk the body), so only a client at the cell's own
  socket sees it.
- no raw path: `raw_path` is the decoded path quoted again, which decodes to the same path. A function
  sees only the decoded path, and a forwarding cell's target decodes to it too.
- the query string is granian's text: the same characters as ASGI's bytes, since granian (hyper)
  refuses a request target that is not ASCII with 400 on either interface.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from typing import Any, Protocol
from urllib.parse import quote

# characters a path keeps unquoted in `raw_path`: RFC 3986's pchar without `%`, so that decoding
# `raw_path` gives the path back exactly (a literal `%` is quoted as `%25`)
_PATH_SAFE = "/:@!$&'()*+,;=-._~"


class Stream(Protocol):  # granian's RSGIHTTPStreamTransport, as the app uses it
    async def send_bytes(self, data: bytes) -> None: ...


class HTTPProtocol(Protocol):  # granian's RSGIHTTPProtocol, as the app uses it
    def __call__(self) -> Any: ...

    def __aiter__(self) -> Any: ...

    def response_bytes(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None: ...

    def response_stream(self, status: int, headers: list[tuple[str, str]]) -> Stream: ...


def unreadable_headers(headers: Any, items: list[tuple[str, str]]) -> bool:
    """Whether granian left a header of the request out (its value is not visible ASCII) of a request
    that came with no carrier (`carried_headers`): `headers` counts every name, `items` holds only the
    values it could give (`dict` counts their names: a name may repeat). A repeated name with some of
    its values left out and some given is not seen."""
    return len(dict(items)) < len(headers)


def asgi_scope(scope: Any, items: Iterable[tuple[str, str]]) -> MutableMapping[str, Any]:
    """The ASGI scope of an RSGI request (`items`: its headers, from `scope.headers.items()`).
    Without `client` and `server` (optional in ASGI; the app reads neither, and on a Unix socket
    granian's are not `host:port`)."""
    path: str = scope.path
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": scope.http_version,
        "method": scope.method,
        "scheme": scope.scheme,
        "path": path,
        "raw_path": quote(path, safe=_PATH_SAFE).encode("ascii"),
        "query_string": scope.query_string.encode(),  # as granian read it (UTF-8)
        "root_path": "",
        # visible ASCII only (`unreadable_headers`), so any 8-bit encoding gives the bytes sent
        "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in items],
    }


class BodyReceiver:
    """An ASGI `receive` over an RSGI request's body: its chunks as `http.request` messages as they
    arrive, then `http.disconnect`; a body the client broke off is `http.disconnect` too."""

    __slots__ = ("_chunks", "_done")

    def __init__(self, proto: HTTPProtocol) -> None:
        self._chunks = proto.__aiter__()
        self._done = False

    async def __call__(self) -> MutableMapping[str, Any]:
        if self._done:
            return {"type": "http.disconnect"}
        chunks = self._chunks
        chunk: bytes = await chunks.__anext__()
        if chunk:
            return {"type": "http.request", "body": chunk, "more_body": True}
        # an empty chunk: the body's end, or a broken body, whose empty chunk comes before the end's
        self._done = True
        try:
            await chunks.__anext__()
        except StopAsyncIteration:
            return {"type": "http.request", "body": b"", "more_body": False}
        return {"type": "http.disconnect"}


def text_value(value: bytes) -> str:
    """A response header's value as RSGI takes it (granian sends text as UTF-8): UTF-8 bytes as
    they are (a forwarded answer's headers pass unchanged), any other bytes read as latin-1."""
    try:
        return value.decode()
    except UnicodeDecodeError:
        return value.decode("latin-1")


class ResponseSender:
    """An ASGI `send` over an RSGI response: one body answers with `response_bytes`; a body in parts
    (`more_body`) is streamed."""

    __slots__ = ("_headers", "_proto", "_status", "_stream")

    def __init__(self, proto: HTTPProtocol) -> None:
        self._proto = proto
        self._status = 500
        self._headers: list[tuple[str, str]] = []
        self._stream: Stream | None = None

    async def __call__(self, message: MutableMapping[str, Any]) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self._status = message["status"]
            self._headers = [(k.decode("latin-1"), text_value(v)) for k, v in message.get("headers", ())]
            return
        if kind != "http.response.body":
            raise ValueError(f"an RSGI response cannot send an ASGI {kind!r} message")
        body: bytes = message.get("body", b"")
        more: bool = message.get("more_body", False)
        if self._stream is None:
            if not more:
                self._proto.response_bytes(self._status, self._headers, body)
                return
            self._stream = self._proto.response_stream(self._status, self._headers)
        if body:
            await self._stream.send_bytes(body)
