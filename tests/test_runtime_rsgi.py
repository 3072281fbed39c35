"""The runtime app served by granian's RSGI, as a cell serves it: the common request answered directly,
the rest through `runtime.rsgi`'s ASGI view (bodies and their limits, broken bodies, time limits,
HEAD, internal routes), and what granian does that the view and tests/support/rsgi.py rely on."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import unquote

import httpx
import pytest

from fnstage.runtime.app import RuntimeApp
from fnstage.runtime.registry import Registry
from fnstage.runtime.rsgi import BodyReceiver, ResponseSender, asgi_scope, unreadable_headers
from support.functions import live
from support.rsgi import FakeHeaders, FakeProto, FakeScope, body_chunks
from support.rsgi_server import TOKEN
from support.waiting import eventually

SUPPORT = Path(__file__).resolve().parent / "support"
SRC = Path(__file__).resolve().parent.parent / "src"


# granian, for real ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def uds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    path = str(tmp_path_factory.mktemp("rsgi") / "app.sock")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen(
        [sys.executable, "-c", f"import rsgi_server; rsgi_server.serve({path!r})"], cwd=SUPPORT, env=env
    )
    try:
        eventually(lambda: _health(path) == 200, timeout=30)
        yield path
    finally:
        process.kill()
        process.wait()


def _health(path: str) -> int | None:
    try:
        return http(path).get("/_fnstage/health").status_code
    except httpx.TransportError:
        return None


def http(path: str) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(uds=path), base_url="http://demo.dev.localhost")


def raw(path: str, request: bytes, *, close_after_send: bool = False) -> bytes:
    """Send `request` as it is; the answer (up to the server's close), or b"" when closing at once."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(path)
        sock.sendall(request)
        if close_after_send:
            return b""
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        return answer


def invocations(path: str, name: str) -> list[dict[str, Any]]:
    with http(path) as client:
        response = client.get(
            "/_fnstage/logs",
            params={"gateway": "demo", "name": name},
            headers={"authorization": f"Bearer {TOKEN}"},
        )
    assert response.status_code == 200
    entries: list[dict[str, Any]] = response.json()["invocations"]
    return entries


def test_granian_leaves_out_a_header_value_that_is_not_visible_ascii(uds: str) -> None:
    """What `unreadable_headers` detects (and the fake headers do): the name counted, the value gone."""
    answer = raw(
        uds,
        b"GET /probe/h HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nX-A: 2\r\nX-B: caf\xc3\xa9\r\nConnection: close\r\n\r\n",
    )
    seen = json.loads(answer.partition(b"\r\n\r\n")[2])
    assert seen["names"] == 4  # host, x-a, x-b, connection
    assert [tuple(item) for item in seen["items"]] == [
        ("host", "x"),
        ("x-a", "1"),
        ("x-a", "2"),
        ("connection", "close"),
    ]


def test_granian_ends_a_body_with_an_empty_chunk_and_a_broken_one_with_two(uds: str) -> None:
    """What `BodyReceiver` tells apart (and the fake protocol does)."""
    whole = b"POST /probe/body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    answer = raw(uds, whole + b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["last_body"][-3:] == [3, 2, 0]
    for broken in (
        b"POST /probe/body HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc",
        b"POST /probe/body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
    ):
        raw(uds, broken, close_after_send=True)

        def seen_broken() -> bool:
            with http(uds) as client:
                return bool(client.get("/probe/last").json()["last_body"] == [3, 0, 0])

        eventually(seen_broken, timeout=10)


def test_the_common_request_through_granian(uds: str) -> None:
    with http(uds) as client:
        response = client.get("/echo?name=ada&x=%C3%A9", headers=[("x-a", "1"), ("x-a", "2")])
    assert response.status_code == 200
    assert response.json()["query"] == {"name": "ada", "x": "é"}
    assert response.json()["headers"]["x-a"] == "1, 2"
    assert response.headers["x-fnstage-version"] == "1"
    assert len(response.headers["x-request-id"]) == 32
    assert response.headers["content-length"] == str(len(response.content))
    assert response.headers["content-type"] == "application/json"


def test_bodies_and_their_limits_through_granian(uds: str) -> None:
    async def parts(count: int) -> AsyncIterator[bytes]:
        for _ in range(count):
            yield b"x" * 100

    async def post(count: int) -> httpx.Response:
        transport = httpx.AsyncHTTPTransport(uds=uds)
        async with httpx.AsyncClient(transport=transport, base_url="http://demo.dev.localhost") as client:
            return await client.post("/echo", content=parts(count))  # chunked

    assert asyncio.run(post(3)).json()["size"] == 300
    assert asyncio.run(post(30)).status_code == 413
    with http(uds) as client:
        assert client.post("/echo", content=b"x" * 1000).json()["size"] == 1000
        assert client.post("/echo", content=b"x" * 1001).status_code == 413


def test_a_client_leaving_mid_body_runs_nothing(uds: str) -> None:
    head = b"POST /counted HTTP/1.1\r\nHost: demo.dev.localhost\r\n"
    raw(uds, head + b"Content-Length: 100\r\n\r\n" + b"x" * 10, close_after_send=True)
    raw(uds, head + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n", close_after_send=True)
    with http(uds) as client:
        done = client.post("/counted", content=b"abc", headers={"x-request-id": "the-whole-one"})
    assert done.json() == {"size": 3}
    # the broken requests went first, on connections closed before this one opened
    assert [e["request_id"] for e in invocations(uds, "dev/counted")] == ["the-whole-one"]


def test_a_body_that_stops_arriving_is_cut_off_with_408(uds: str) -> None:
    answer = raw(uds, b"POST /echo HTTP/1.1\r\nHost: demo.dev.localhost\r\nContent-Length: 10\r\n\r\nab")
    assert answer.startswith(b"HTTP/1.1 408 ")


def test_a_header_value_granian_cannot_give_is_refused_not_dropped(uds: str) -> None:
    before = len(invocations(uds, "dev/echo"))
    for value in (b"caf\xc3\xa9", b"\xff"):
        answer = raw(
            uds,
            b"GET /echo HTTP/1.1\r\nHost: demo.dev.localhost\r\nX-B: "
            + value
            + b"\r\nConnection: close\r\n\r\n",
        )
        assert answer.startswith(b"HTTP/1.1 400 ")
        assert json.loads(answer.partition(b"\r\n\r\n")[2])["error"]["code"] == "bad_request"
    assert len(invocations(uds, "dev/echo")) == before


def _carrying(block: bytes) -> bytes:
    return b"X-Fnstage-Raw-Headers: " + base64.b64encode(block) + b"\r\n"


def test_a_carried_request_reads_its_headers_from_the_carrier(uds: str) -> None:
    """What the front sends for a value granian cannot give (`carried_headers`): every header line once
    more, in the carrier; the function sees them (as ASGI gives them), on the slow path."""
    block = b"host: demo.dev.localhost\r\nx-b: caf\xc3\xa9\r\nx-request-id: carried-one\r\nx-b: 2\r\n"
    answer = raw(
        uds,
        b"GET /echo HTTP/1.1\r\nHost: demo.dev.localhost\r\nX-B: caf\xc3\xa9\r\nX-Request-Id: carried-one\r\n"
        b"X-B: 2\r\n" + _carrying(block + b"connection: close\r\n") + b"Connection: close\r\n\r\n",
    )
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), answer
    assert b"\r\nx-request-id: carried-one\r\n" in head
    headers = json.loads(body)["headers"]
    assert headers["x-b"] == "caf\xc3\xa9, 2" and headers["host"] == "demo.dev.localhost"
    assert "x-fnstage-raw-headers" not in headers
    assert "carried-one" in [e["request_id"] for e in invocations(uds, "dev/echo")]
    posted = raw(
        uds,
        b"POST /echo HTTP/1.1\r\nHost: demo.dev.localhost\r\nX-B: \xff\r\nContent-Length: 3\r\n"
        + _carrying(b"host: demo.dev.localhost\r\nx-b: \xff\r\ncontent-length: 3\r\nconnection: close\r\n")
        + b"Connection: close\r\n\r\nabc",
    )
    assert json.loads(posted.partition(b"\r\n\r\n")[2])["size"] == 3
    assert json.loads(posted.partition(b"\r\n\r\n")[2])["headers"]["x-b"] == "\xff"


def test_a_carrier_that_does_not_decode_is_refused_saying_so(uds: str) -> None:
    before = len(invocations(uds, "dev/echo"))
    for carrier in (b"X-Fnstage-Raw-Headers: not*base64\r\n", _carrying(b"no colon here\r\n")):
        answer = raw(
            uds,
            b"GET /echo HTTP/1.1\r\nHost: demo.dev.localhost\r\n" + carrier + b"Connection: close\r\n\r\n",
        )
        assert answer.startswith(b"HTTP/1.1 400 "), answer
        message = json.loads(answer.partition(b"\r\n\r\n")[2])["error"]["message"]
        assert message.startswith("the request's x-fnstage-raw-headers header cannot be read: "), message
    assert len(invocations(uds, "dev/echo")) == before


def test_the_header_limit_counts_what_a_carrier_carries_not_the_carrier(uds: str) -> None:
    """16 KiB of names and values, as an ASGI cell counts the same lines: the carrier's own base64
    (a third more than what it carries) is not counted."""
    for size, status in ((12 * 1024, b"200"), (17 * 1024, b"431")):
        lines = b"host: demo.dev.localhost\r\nx-big: " + b"x" * size + b"\r\nx-b: \xe9\r\n"
        answer = raw(
            uds,
            b"GET /echo HTTP/1.1\r\n"
            + lines
            + _carrying(lines + b"connection: close\r\n")
            + b"Connection: close\r\n\r\n",
        )
        assert answer.startswith(b"HTTP/1.1 " + status + b" "), (size, answer[:200])


def test_time_limit_head_and_text_headers_through_granian(uds: str) -> None:
    with http(uds) as client:
        slow = client.get("/slow")
        head = client.head("/echo")
        text = client.get("/text")
        status = client.get("/_fnstage/status", headers={"authorization": f"Bearer {TOKEN}"})
    assert slow.status_code == 504
    assert (head.status_code, head.content, int(head.headers["content-length"]) > 0) == (200, b"", True)
    assert text.content == "café".encode()
    # RSGI takes header values as text and granian sends them as UTF-8 (and so does an ASGI cell)
    assert text.headers.raw[[k for k, _ in text.headers.raw].index(b"x-word")][1] == "café".encode()
    assert {f["name"] for f in status.json()["functions"]} >= {"dev/echo", "dev/slow"}


# the ASGI view, alone ----------------------------------------------------------------------------
async def _parts(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_the_body_as_asgi_messages() -> None:
    receive = BodyReceiver(FakeProto(body_chunks(_parts(b"ab", b"c"))))
    messages = [await receive() for _ in range(4)]
    assert messages == [
        {"type": "http.request", "body": b"ab", "more_body": True},
        {"type": "http.request", "body": b"c", "more_body": True},
        {"type": "http.request", "body": b"", "more_body": False},
        {"type": "http.disconnect"},
    ]
    broken = BodyReceiver(FakeProto(body_chunks(_parts(b"ab"), broken=True)))
    assert [await broken() for _ in range(3)] == [
        {"type": "http.request", "body": b"ab", "more_body": True},
        {"type": "http.disconnect"},
        {"type": "http.disconnect"},
    ]


@pytest.mark.anyio
async def test_the_response_from_asgi_messages() -> None:
    whole = FakeProto(body_chunks(_parts()))
    send = ResponseSender(whole)
    await send(
        {
            "type": "http.response.start",
            "status": 201,
            "headers": [(b"x-a", b"caf\xc3\xa9"), (b"x-b", b"\xe9")],
        }
    )
    await send({"type": "http.response.body", "body": b"done"})
    assert (whole.status, whole.headers, whole.parts, whole.streamed) == (
        201,
        [("x-a", "café"), ("x-b", "é")],  # UTF-8 as it is, other bytes read as latin-1
        [b"done"],
        False,
    )
    streamed = FakeProto(body_chunks(_parts()))
    send = ResponseSender(streamed)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    for body, more in ((b"a", True), (b"", True), (b"b", True), (b"", False)):
        await send({"type": "http.response.body", "body": body, "more_body": more})
    assert (streamed.parts, streamed.streamed) == ([b"a", b"b"], True)
    with pytest.raises(ValueError, match="websocket.send"):
        await send({"type": "websocket.send"})


def test_the_scope_as_asgi() -> None:
    headers = FakeHeaders([(b"host", b"x"), (b"x-a", b"1")])
    rsgi = SimpleNamespace(
        http_version="1.1",
        method="GET",
        scheme="http",
        path="/a b/%/é",
        query_string="q=%20",
        headers=headers,
    )
    scope = asgi_scope(rsgi, headers.items())
    assert unquote(scope["raw_path"].decode()) == "/a b/%/é"  # the same path, decoded again
    assert scope["query_string"] == b"q=%20"
    assert scope["headers"] == [(b"host", b"x"), (b"x-a", b"1")]


def test_a_header_left_out_is_told() -> None:
    def told(raw_headers: list[tuple[bytes, bytes]]) -> bool:
        headers = FakeHeaders(raw_headers)
        return unreadable_headers(headers, headers.items())

    assert not told([(b"host", b"x"), (b"x-a", b"1"), (b"x-a", b"2")])
    assert told([(b"host", b"x"), (b"x-b", b"\xe9")])
    assert told([(b"x-a", b"1"), (b"x-a", b"2"), (b"x-b", b"\xe9")])  # as many items as names


@pytest.mark.anyio
async def test_an_asgi_cell_gives_the_function_its_headers_without_the_carrier() -> None:
    """granian's ASGI gives the raw lines a carrier carries already: the carrier is taken out (the
    function must not see it, nor the header limit count it), on the slow path."""
    registry = Registry()
    registry.apply(live("async def main(ctx):\n    return dict(ctx.headers)\n"))
    app = RuntimeApp(registry, max_header_bytes=200)
    lines = b"host: demo.dev.localhost\r\nx-b: \xe9" + b"x" * 100 + b"\r\n"
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/user/me",
        "query_string": b"",
        "headers": [
            (b"host", b"demo.dev.localhost"),
            (b"x-fnstage-raw-headers", base64.b64encode(lines)),
            (b"x-b", b"\xe9" + b"x" * 100),
        ],
    }
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    await app(scope, receive, send)
    assert sent[0]["status"] == 200
    assert json.loads(sent[1]["body"]) == {"host": "demo.dev.localhost", "x-b": "\xe9" + "x" * 100}


@pytest.mark.anyio
async def test_a_cell_on_a_public_port_never_reads_a_clients_carrier() -> None:
    """An --env runtime's environment cell told "rsgi" has no front before it: a carrier there is a
    client's (it would choose the headers the function sees, a forwarded-for without the proxy's
    address say). It is not read nor given to the function, and a value left out is still a 400."""
    registry = Registry()
    registry.apply(live("async def main(ctx):\n    return dict(ctx.headers)\n"))
    app = RuntimeApp(registry)
    app.trusts_carrier = False
    forged = base64.b64encode(b"host: demo.dev.localhost\r\nx-forwarded-for: 10.0.0.1\r\n")

    async def call(*raw_headers: tuple[bytes, bytes]) -> FakeProto:
        headers = FakeHeaders(
            [(b"host", b"demo.dev.localhost"), (b"x-fnstage-raw-headers", forged), *raw_headers]
        )
        proto = FakeProto(body_chunks(_parts()))
        await app.__rsgi__(FakeScope("GET", "/user/me", "", headers), proto)
        return proto

    plain = await call((b"x-forwarded-for", b"192.0.2.1"))
    assert plain.status == 200
    assert json.loads(plain.parts[0]) == {"host": "demo.dev.localhost", "x-forwarded-for": "192.0.2.1"}
    assert (await call((b"cookie", b"name=\xc3\xa9"))).status == 400
    app.trusts_carrier = True  # behind the front: the front's (it drops a client's)
    carried = await call((b"x-forwarded-for", b"192.0.2.1"))
    assert json.loads(carried.parts[0]) == {"host": "demo.dev.localhost", "x-forwarded-for": "10.0.0.1"}


@pytest.mark.anyio
async def test_a_left_out_header_never_reaches_the_function() -> None:
    registry = Registry()
    registry.apply(live("async def main(ctx):\n    return {}\n"))
    app = RuntimeApp(registry)
    scope = SimpleNamespace(
        proto="http",
        method="GET",
        path="/user/me",
        query_string="",
        headers=FakeHeaders([(b"host", b"demo.dev.localhost"), (b"cookie", b"name=\xc3\xa9")]),
    )
    proto = FakeProto(body_chunks(_parts()))
    await app.__rsgi__(scope, proto)
    assert proto.status == 400
    assert app.logs.recent("demo", "dev/user/me") == []
