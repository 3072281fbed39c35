"""The front (`fnstage.front`) on real sockets: cells are granian processes serving an echo app (on a
Unix socket and on a port) or `RawCell`s written by hand to stream, stall or die; clients are raw
sockets, so every byte on the wire is the test's to check."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import http.client
import json
import os
import resource
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fnstage.carried_headers import carried
from fnstage.domain.errors import InvalidInput
from fnstage.front import (
    STARTING,
    Front,
    FrontLimits,
    InternalRequest,
    InternalResponse,
    RouteTable,
    Upstream,
    parse_upstream,
)
from fnstage.front.routes import destination
from fnstage.runtime.router import Router
from fnstage.testing import free_port
from support.front_cells import RawCell, pattern, read_chunked, read_head

TESTS = Path(__file__).resolve().parent


# helpers ------------------------------------------------------------------------------------------------
class _KeepOpen:
    """A socket file that http.client may 'close' after each response without losing what it buffered."""

    def __init__(self, file: Any) -> None:
        self._file = file

    def close(self) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)


class Response:
    def __init__(self, status: int, headers: http.client.HTTPMessage, body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def json(self) -> Any:
        return json.loads(self.body)


class Client:
    """One keep-alive client connection, by hand."""

    def __init__(self, port: int, timeout: float = 20) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self._file = _KeepOpen(self.sock.makefile("rb"))

    def makefile(self, *args: Any, **kwargs: Any) -> Any:
        return self._file

    def send(self, raw: bytes) -> None:
        self.sock.sendall(raw)

    def read(self, method: str = "GET") -> Response:
        # http.client reads from any object with makefile(); typeshed wants a socket
        response = http.client.HTTPResponse(self, method=method)  # type: ignore[arg-type]
        response.begin()
        body = response.read()
        return Response(response.status, response.headers, body)

    def get(self, path: str, host: str = "127.0.0.1", headers: str = "") -> Response:
        self.send(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{headers}\r\n".encode())
        return self.read()

    def closed_by_peer(self) -> bool:
        self.sock.settimeout(10)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()


def wait_connectable(connect: Callable[[], socket.socket], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            connect().close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@contextlib.contextmanager
def granian_cell(*, uds: Path | None = None, port: int | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """The echo app on granian (one worker), as a cell serves: on a Unix socket or a loopback port."""
    where = ["--uds", str(uds)] if uds else ["--host", "127.0.0.1", "--port", str(port)]
    command = [sys.executable, "-m", "granian", "--interface", "asgi", *where, "--workers", "1"]
    command += ["--no-ws", "--log-level", "warning", "support.front_cells:echo_app"]
    env = {**os.environ, "PYTHONPATH": f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    process = subprocess.Popen(command, env=env, start_new_session=True)
    try:
        if uds:

            def connect() -> socket.socket:
                sock = socket.socket(socket.AF_UNIX)
                sock.connect(str(uds))
                return sock

            wait_connectable(connect)
        else:
            assert port is not None
            wait_connectable(lambda: socket.create_connection(("127.0.0.1", port), timeout=1))
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


@pytest.fixture
def routes() -> RouteTable:
    return RouteTable()


@pytest.fixture
def start_front(routes: RouteTable) -> Iterator[Callable[..., Front]]:
    fronts: list[Front] = []

    def start(**kwargs: Any) -> Front:
        front = Front(routes, port=0, **kwargs)
        front.start_in_thread()
        fronts.append(front)
        return front

    yield start
    for front in fronts:
        front.stop_thread()


@pytest.fixture(scope="module")
def cells(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Two granian cells: one on a Unix socket, one on a port."""
    folder = tmp_path_factory.mktemp("cells")
    uds = folder / "cell.sock"
    port = free_port()
    with granian_cell(uds=uds), granian_cell(port=port):
        yield {"unix": str(uds), "tcp": f"127.0.0.1:{port}"}


# routing ------------------------------------------------------------------------------------------------
def test_routes_by_host_and_by_path_to_unix_and_tcp_cells(
    routes: RouteTable, start_front: Callable[..., Front], cells: dict[str, str]
) -> None:
    routes.set("demo", "dev", cells["unix"])
    routes.set("demo", "prod", cells["tcp"])
    front = start_front()
    client = Client(front.port)

    by_host = client.get("/user/me?name=Ada", host=f"demo.dev.localhost:{front.port}")
    assert by_host.status == 200
    echo = by_host.json()
    assert (
        echo["path"] == "/user/me" and echo["query"] == "name=Ada" and echo["client"][0] == ""
    )  # the Unix socket
    assert [f"demo.dev.localhost:{front.port}"] == [v for k, v in echo["headers"] if k == "host"]

    by_path = client.get("/demo/prod/user/me%20too")
    echo = by_path.json()
    assert by_path.status == 200 and echo["client"][0] == "127.0.0.1"  # the TCP cell
    assert echo["raw_path"] == "/demo/prod/user/me%20too"  # the target goes as it came
    headers = dict(echo["headers"])
    assert headers["host"] == "127.0.0.1"
    assert headers["x-forwarded-for"] == "127.0.0.1" and headers["x-forwarded-proto"] == "http"

    by_host_prod = client.get("/user/me", host="DEMO.prod.localhost.")
    assert by_host_prod.json()["client"][0] == "127.0.0.1"


def test_the_front_reads_urls_exactly_as_the_runtime_router_does() -> None:
    router = Router()
    cases = [
        ("demo.dev.localhost:8471", "/user/me"),
        (None, "/demo/staging/user/me/"),
        ("127.0.0.1", "/demo/dev"),
        ("other.example", "/demo/prod/a/b"),
        ("demo.qa.localhost", "/x"),
        ("[::1]:8471", "/demo/dev/x"),
        (None, "/demo/dev/../x"),
        (None, "/Bad_Gateway/dev/x"),
    ]
    for host, path in cases:
        found = destination(router, host, path)
        route = router.route(host, path)
        if found is None:
            assert route is None or route.gateway == "Bad_Gateway", (host, path)
        else:
            assert route is not None and (found.gateway, found.name) == (route.gateway, route.name)
            assert found.env == route.name.split("/")[0]


def test_hop_by_hop_headers_are_not_forwarded_either_way(
    routes: RouteTable, start_front: Callable[..., Front]
) -> None:
    seen: dict[bytes, bytes] = {}

    async def cell(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _, headers = await read_head(reader)
        seen.update(headers)
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: keep-alive, x-cell-secret\r\n"
            b"x-cell-secret: s\r\nkeep-alive: timeout=5\r\nx-kept: yes\r\n\r\nok"
        )
        await writer.drain()
        await reader.read()

    raw = RawCell(cell)
    try:
        routes.set("demo", "dev", raw.address)
        front = start_front()
        client = Client(front.port)
        client.send(
            b"GET /demo/dev/x HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, X-Client-Secret\r\n"
            b"X-Client-Secret: 1\r\nKeep-Alive: timeout=9\r\nTE: trailers\r\nUpgrade: foo\r\n"
            b"X-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Proto: https\r\nX-Kept: 1\r\n\r\n"
        )
        response = client.read()
        assert response.status == 200 and response.body == b"ok"
        assert response.headers["x-kept"] == "yes"
        for name in ("x-cell-secret", "keep-alive", "connection"):
            assert name not in response.headers, name
        for name in (b"x-client-secret", b"keep-alive", b"te", b"upgrade", b"connection"):
            assert name not in seen, name
        assert seen[b"x-kept"] == b"1"
        assert seen[b"x-forwarded-for"] == b"10.0.0.1, 127.0.0.1"
        assert seen[b"x-forwarded-proto"] == b"http"  # what the client said is not the front's truth
    finally:
        raw.close()


def test_a_value_that_is_not_visible_ascii_is_carried_whole_and_a_clients_carrier_dropped(
    routes: RouteTable, start_front: Callable[..., Front], cells: dict[str, str]
) -> None:
    """`carried_headers`: an RSGI cell cannot read such a value, so the front sends every header line
    the cell gets once more, in its carrier; never the client's own (the front routes by Host, and the
    cell must see that Host)."""
    routes.set("demo", "dev", cells["unix"])
    front = start_front()
    client = Client(front.port)
    forged = b"X-Fnstage-Raw-Headers: " + base64.b64encode(b"host: demo.prod.localhost\r\n") + b"\r\n"
    client.send(b"GET /demo/dev/x HTTP/1.1\r\nHost: h\r\n" + forged + b"X-A: 1\r\n\r\n")
    plain = client.read().json()
    assert [k for k, _ in plain["headers"]] == ["host", "x-a", "x-forwarded-for", "x-forwarded-proto"]
    client.send(
        b"POST /demo/dev/x HTTP/1.1\r\nHost: h\r\n" + forged + b"X-Term: lev\xc3\xa9\r\nX-A: caf\xe9\r\n"
        b"Connection: keep-alive, X-Gone\r\nX-Gone: \xe9\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\n\r\n"
    )
    echo = client.read().json()
    assert echo["body_size"] == 3
    sent = [(k, v) for k, v in echo["headers"] if k != "x-fnstage-raw-headers"]
    [carrier] = [v for k, v in echo["headers"] if k == "x-fnstage-raw-headers"]
    assert [(k.decode("latin-1"), v.decode("latin-1")) for k, v in carried(carrier)] == sent
    assert sent == [
        ("host", "h"),
        ("x-term", "lev\xc3\xa9"),
        ("x-a", "caf\xe9"),
        ("x-forwarded-for", "127.0.0.1"),
        ("x-forwarded-proto", "http"),
        ("transfer-encoding", "chunked"),
    ]


# keep-alive ---------------------------------------------------------------------------------------------
def test_keep_alive_is_reused_on_both_sides(
    routes: RouteTable, start_front: Callable[..., Front], cells: dict[str, str]
) -> None:
    routes.set("demo", "dev", cells["tcp"])
    front = start_front()
    client = Client(front.port)
    cell_sides = {tuple(client.get(f"/demo/dev/n{i}").json()["client"]) for i in range(30)}
    assert len(cell_sides) == 1  # one pooled connection to the cell served all 30
    assert front.stats()["cell_connections"] == {cells["tcp"]: 1}
    # one client connection served all 30 (http.client would raise on a closed one)
    assert client.get("/demo/dev/last").status == 200
    other = Client(front.port)
    assert other.get("/demo/dev/x").status == 200


def test_pipelined_requests_are_answered_in_order(
    routes: RouteTable, start_front: Callable[..., Front], cells: dict[str, str]
) -> None:
    routes.set("demo", "dev", cells["unix"])
    front = start_front()
    client = Client(front.port)
    client.send(b"".join(f"GET /demo/dev/p{i} HTTP/1.1\r\nHost: h\r\n\r\n".encode() for i in range(20)))
    client.send(b"GET /nothing HTTP/1.1\r\nHost: h\r\n\r\n")
    paths = [client.read().json()["path"] for _ in range(20)]
    assert paths == [f"/demo/dev/p{i}" for i in range(20)]
    assert client.read().status == 404


def test_an_http10_client_gets_its_answer_and_the_connection_closes(
    routes: RouteTable, start_front: Callable[..., Front], cells: dict[str, str]
) -> None:
    routes.set("demo", "dev", cells["tcp"])
    front = start_front()
    client = Client(front.port)
    client.send(b"GET /demo/dev/stream?size=100000 HTTP/1.0\r\n\r\n")
    head_and_body = b""
    while chunk := client.sock.recv(65536):
        head_and_body += chunk
    head, _, body = head_and_body.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"chunked" not in head.lower()
    assert body == pattern(100000)  # delimited by the close, as HTTP/1.0 reads it


def test_head_requests_get_no_body_and_the_connection_stays_in_step(
    routes: RouteTable, start_front: Callable[..., Front], cells: dict[str, str]
) -> None:
    routes.set("demo", "dev", cells["tcp"])
    front = start_front()
    client = Client(front.port)
    cell_side = client.get("/demo/dev/x").json()["client"]
    client.send(b"HEAD /demo/dev/big?size=1000 HTTP/1.1\r\nHost: h\r\n\r\n")
    head = client.read(method="HEAD")
    assert head.status == 200 and head.headers["content-length"] == "1000" and head.body == b""
    after = client.get("/demo/dev/y").json()
    assert after["path"] == "/demo/dev/y" and after["client"] == cell_side  # the cell connection was reused


def test_expect_100_continue_is_answered_by_the_front(
    routes: RouteTable, start_front: Callable[..., Front], cells: dict[str, str]
) -> None:
    routes.set("demo", "dev", cells["unix"])
    front = start_front()
    client = Client(front.port)
    client.send(b"POST /demo/dev/x HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
    assert client._file.readline() == b"HTTP/1.1 100 Continue\r\n" and client._file.readline() == b"\r\n"
    client.send(b"hello")
    echo = client.read().json()
    assert echo["body_size"] == 5 and "expect" not in dict(echo["headers"])


def test_a_client_leaving_mid_response_does_not_disturb_the_next_ones(
    routes: RouteTable, start_front: Callable[..., Front], cells: dict[str, str]
) -> None:
    routes.set("demo", "dev", cells["tcp"])
    front = start_front()
    for _ in range(3):
        leaving = Client(front.port)
        leaving.send(b"GET /demo/dev/stream?size=50000000 HTTP/1.1\r\nHost: h\r\n\r\n")
        assert leaving.sock.recv(1000).startswith(b"HTTP/1.1 200")
        leaving.close()
    client = Client(front.port)
    for i in range(5):
        assert client.get(f"/demo/dev/after{i}").json()["path"] == f"/demo/dev/after{i}"


def test_a_changed_route_takes_effect_at_once(
    routes: RouteTable, start_front: Callable[..., Front], cells: dict[str, str]
) -> None:
    routes.set("demo", "dev", cells["unix"])
    front = start_front()
    client = Client(front.port)
    assert client.get("/demo/dev/x").json()["client"][0] == ""
    routes.set("demo", "dev", cells["tcp"])
    assert client.get("/demo/dev/x").json()["client"][0] == "127.0.0.1"
    routes.remove("demo", "dev")
    assert client.get("/demo/dev/x").status == 404


def test_a_function_routed_on_its_own_goes_to_its_cell_and_back_to_its_environments(
    routes: RouteTable, start_front: Callable[..., Front], cells: dict[str, str]
) -> None:
    """A function whose version runs with a dependency lock is routed to that lock's cell by name."""
    routes.set("demo", "dev", cells["unix"])
    front = start_front()
    client = Client(front.port)
    routes.set_function("demo", "dev/moved", cells["tcp"])
    assert client.get("/demo/dev/moved").json()["client"][0] == "127.0.0.1"
    assert client.get("/demo/dev/other").json()["client"][0] == ""  # the environment's cell
    routes.set_function("demo", "dev/moved", None)
    assert client.get("/demo/dev/moved").json()["client"][0] == ""
    routes.set_function("demo", "dev/moved", cells["tcp"])
    routes.forget_functions_at(cells["tcp"])  # its cell stopped
    assert routes.function_routes() == {}
    with pytest.raises(InvalidInput):
        routes.set_function("demo", "nowhere/x", cells["tcp"])


# streaming ----------------------------------------------------------------------------------------------
def test_big_bodies_stream_both_ways_chunked_and_with_length(
    routes: RouteTable, start_front: Callable[..., Front], cells: dict[str, str]
) -> None:
    routes.set("demo", "dev", cells["unix"])
    front = start_front()
    client = Client(front.port)
    upload = os.urandom(5 * 1024 * 1024)
    chunks = b"".join(
        b"%x\r\n%s\r\n" % (len(upload[i : i + 100_000]), upload[i : i + 100_000])
        for i in range(0, len(upload), 100_000)
    )
    client.send(
        b"POST /demo/dev/up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"
    )
    echo = client.read().json()
    assert echo["body_size"] == len(upload) and echo["body_sha256"] == hashlib.sha256(upload).hexdigest()
    assert ["transfer-encoding", "chunked"] in echo["headers"]

    client.send(
        b"POST /demo/dev/up HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n%s" % (len(upload), upload)
    )
    echo = client.read().json()
    assert echo["body_size"] == len(upload) and echo["body_sha256"] == hashlib.sha256(upload).hexdigest()

    down = client.get("/demo/dev/stream?size=40000000")  # 40 MB chunked from the cell
    assert down.status == 200 and down.headers["transfer-encoding"] == "chunked"
    assert hashlib.sha256(down.body).digest() == hashlib.sha256(pattern(40_000_000)).digest()
    down = client.get("/demo/dev/big?size=30000000")
    assert down.headers["content-length"] == "30000000" and down.body == pattern(30_000_000)
    assert client.get("/demo/dev/after").status == 200  # the connection is still in step


def test_bodies_are_streamed_not_buffered(routes: RouteTable, start_front: Callable[..., Front]) -> None:
    """The cell sees the first part of a body before the client sends the rest, and the client gets the
    first part of the answer before the cell sends the rest: neither waits on a buffered whole."""
    first_up = threading.Event()
    first_down_read = threading.Event()
    received: list[bytes] = []

    async def cell(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)

        def on_chunk(chunk: bytes) -> None:
            received.append(chunk)
            first_up.set()

        await read_chunked(reader, on_chunk)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await writer.drain()
        await asyncio.get_running_loop().run_in_executor(None, first_down_read.wait, 20)
        writer.write(b"6\r\nsecond\r\n0\r\n\r\n")
        await writer.drain()
        await reader.read()

    raw = RawCell(cell)
    try:
        routes.set("demo", "dev", raw.address)
        front = start_front()
        client = Client(front.port)
        client.send(b"POST /demo/dev/x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\none\r\n")
        assert first_up.wait(20), "the front held the first chunk back"
        client.send(b"3\r\ntwo\r\n0\r\n\r\n")
        # http.client reads from any object with makefile(); typeshed wants a socket
        response = http.client.HTTPResponse(client, method="POST")  # type: ignore[arg-type]
        response.begin()
        assert response.read1(5) == b"first"  # arrives while the cell still holds "second"
        first_down_read.set()
        assert response.read() == b"second"
        assert received == [b"one", b"two"]
    finally:
        first_down_read.set()
        raw.close()


# limits -------------------------------------------------------------------------------------------------
def test_a_head_or_body_too_slow_gets_408(
    routes: RouteTable, start_front: Callable[..., Front], cells: dict[str, str]
) -> None:
    routes.set("demo", "dev", cells["unix"])
    front = start_front(limits=FrontLimits(head_timeout_s=0.5, body_timeout_s=0.5))
    slow_head = Client(front.port)
    slow_head.send(b"GET /demo/dev/x HTTP/1.1\r\nHost: h\r\n")  # never finished
    response = slow_head.read()
    assert response.status == 408 and response.headers["connection"] == "close"
    assert response.json()["error"]["message"] == "the request head did not arrive within 0.5 s"
    assert slow_head.closed_by_peer()

    slow_body = Client(front.port)
    slow_body.send(b"POST /demo/dev/x HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc")
    response = slow_body.read()
    assert response.status == 408
    assert response.json()["error"] == {
        "code": "request_timeout",
        "message": "the request body did not arrive within 0.5 s",
        "request_id": response.headers["x-request-id"],
    }
    assert slow_body.closed_by_peer()
    assert Client(front.port).get("/demo/dev/fine").status == 200


def test_a_body_over_the_limit_gets_413_and_headers_over_it_431(
    routes: RouteTable, start_front: Callable[..., Front], cells: dict[str, str]
) -> None:
    routes.set("demo", "dev", cells["unix"])
    front = start_front(limits=FrontLimits(max_body_bytes=1000))
    declared = Client(front.port)
    declared.send(b"POST /demo/dev/x HTTP/1.1\r\nHost: h\r\nContent-Length: 1001\r\n\r\n")
    response = declared.read()
    assert response.status == 413 and response.json()["error"]["code"] == "too_large"
    assert response.json()["error"]["message"] == "the request body is larger than 1000 bytes"

    streamed = Client(front.port)
    streamed.send(b"POST /demo/dev/x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
    streamed.send(b"1f4\r\n" + b"a" * 500 + b"\r\n")
    streamed.send(b"1f4\r\n" + b"a" * 500 + b"\r\n")
    streamed.send(b"1\r\na\r\n")
    assert streamed.read().status == 413
    assert streamed.closed_by_peer()

    big_headers = Client(front.port)
    big_headers.send(b"GET /demo/dev/x HTTP/1.1\r\nHost: h\r\nX-Big: " + b"z" * 17000 + b"\r\n\r\n")
    response = big_headers.read()
    assert response.status == 431
    assert response.json()["error"]["message"] == "the request headers are 17010 bytes: at most 16384"

    endless = Client(front.port)
    endless.send(b"GET /demo/dev/x HTTP/1.1\r\nHost: h\r\n")
    with contextlib.suppress(OSError):
        for _ in range(200):
            endless.send(b"X-More: " + b"y" * 1000 + b"\r\n")
    assert endless.read().status == 431

    fine = Client(front.port)
    fine.send(b"POST /demo/dev/x HTTP/1.1\r\nHost: h\r\nContent-Length: 1000\r\n\r\n" + b"b" * 1000)
    assert fine.read().json()["body_size"] == 1000


def test_idle_connections_are_closed_after_the_idle_timeout(
    routes: RouteTable, start_front: Callable[..., Front], cells: dict[str, str]
) -> None:
    routes.set("demo", "dev", cells["unix"])
    front = start_front(limits=FrontLimits(idle_timeout_s=0.3))
    never_asked = Client(front.port)
    asked_once = Client(front.port)
    assert asked_once.get("/demo/dev/x").status == 200
    assert never_asked.sock.recv(100) == b""  # closed without a word: it had no request in progress
    assert asked_once.sock.recv(100) == b""


def test_a_cell_that_never_answers_gets_504(routes: RouteTable, start_front: Callable[..., Front]) -> None:
    async def cell(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        await reader.read()  # holds the request forever

    raw = RawCell(cell)
    try:
        routes.set("demo", "dev", raw.address)
        front = start_front(limits=FrontLimits(upstream_timeout_s=0.5))
        response = Client(front.port).get("/demo/dev/x")
        assert response.status == 504 and response.json()["error"]["code"] == "gateway_timeout"
        assert response.json()["error"]["message"] == "the cell did not answer within 0.5 s"
    finally:
        raw.close()


# failures -----------------------------------------------------------------------------------------------
def test_a_cell_that_dies_mid_response_gives_502_and_the_next_request_works(
    routes: RouteTable, start_front: Callable[..., Front]
) -> None:
    async def cell(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            line, _ = await read_head(reader)
            if b"/die-before" in line:
                return  # closes without a byte of answer
            if b"/die-during" in line:
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial")
                await writer.drain()
                return
            if b"/garbage" in line:
                writer.write(b"NOT HTTP AT ALL\r\n\r\n")
                await writer.drain()
                return
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            await writer.drain()

    raw = RawCell(cell)
    try:
        routes.set("demo", "dev", raw.address)
        front = start_front()
        client = Client(front.port)
        assert client.get("/demo/dev/ok").body == b"ok"
        response = client.get("/demo/dev/die-before")
        assert response.status == 502
        error = response.json()["error"]
        assert error["code"] == "bad_gateway" and "gateway demo, environment dev" in error["message"]
        assert client.get("/demo/dev/ok").body == b"ok"  # same client connection, a new cell connection
        assert client.get("/demo/dev/garbage").status == 502
        assert client.get("/demo/dev/ok").body == b"ok"

        client.send(b"GET /demo/dev/die-during HTTP/1.1\r\nHost: h\r\n\r\n")
        with pytest.raises(http.client.IncompleteRead):
            client.read()  # a truncated answer is never passed off as a whole one
        assert Client(front.port).get("/demo/dev/ok").body == b"ok"
    finally:
        raw.close()


def test_a_restarted_cell_is_reached_again(
    routes: RouteTable, start_front: Callable[..., Front], tmp_path: Path
) -> None:
    uds = tmp_path / "cell.sock"
    routes.set("demo", "dev", str(uds))
    front = start_front()
    client = Client(front.port)
    with granian_cell(uds=uds):
        first = client.get("/demo/dev/x").json()["pid"]
    refused_at = time.monotonic() + 20
    while time.monotonic() < refused_at:  # until the kernel has closed the dead cell's socket
        with socket.socket(socket.AF_UNIX) as probe:
            if probe.connect_ex(str(uds)) != 0:
                break
        time.sleep(0.02)
    response = client.get("/demo/dev/x")  # the cell is gone; its pooled connection too
    assert response.status == 503 and response.headers["retry-after"] == "1"
    uds.unlink(missing_ok=True)
    with granian_cell(uds=uds):
        assert client.get("/demo/dev/x").json()["pid"] != first


def test_no_client_ever_gets_another_clients_answer(
    routes: RouteTable, start_front: Callable[..., Front], cells: dict[str, str]
) -> None:
    routes.set("demo", "dev", cells["tcp"])
    front = start_front()
    mismatches: list[str] = []

    def worker(n: int) -> None:
        client = Client(front.port)
        for i in range(40):
            tag = f"/demo/dev/c{n}-{i}"
            echo = client.get(tag).json()
            if echo["path"] != tag:
                mismatches.append(f"{tag} got {echo['path']}")
        client.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert mismatches == []


# unknown, starting, on_miss, internal ------------------------------------------------------------------
def test_unknown_gateway_or_environment_or_path_gets_404_json(
    routes: RouteTable, start_front: Callable[..., Front], cells: dict[str, str]
) -> None:
    routes.set("demo", "dev", cells["unix"])
    front = start_front()
    client = Client(front.port)
    response = client.get("/other/dev/user/me")
    assert response.status == 404 and response.headers["content-type"] == "application/json"
    assert response.json()["error"]["message"] == "no function dev/user/me is live on gateway other"
    assert response.json()["error"]["request_id"] == response.headers["x-request-id"]
    assert client.get("/demo/prod/user/me").json()["error"]["code"] == "not_found"
    response = client.get("/favicon.ico", headers="X-Request-Id: trace-1\r\n")
    assert response.status == 404 and response.headers["x-request-id"] == "trace-1"
    assert response.json()["error"]["message"] == "no function is served at 127.0.0.1/favicon.ico"
    assert client.get("/demo/dev/x").status == 200  # the connection stays usable


def test_a_starting_cell_gets_503_with_retry_after(
    routes: RouteTable, start_front: Callable[..., Front]
) -> None:
    routes.set_starting("demo", "dev")
    front = start_front()
    response = Client(front.port).get("/demo/dev/x")
    assert response.status == 503 and response.headers["retry-after"] == "1"
    assert response.json()["error"]["code"] == "starting"
    assert routes.get("demo", "dev") is STARTING


def test_on_miss_brings_a_cell_up_once_for_every_waiting_request(
    routes: RouteTable, start_front: Callable[..., Front], cells: dict[str, str]
) -> None:
    calls: list[tuple[str, str]] = []

    async def on_miss(gateway: str, env: str) -> None:
        calls.append((gateway, env))
        await asyncio.sleep(0.3)  # starting a cell takes a while
        if gateway == "demo":
            routes.set(gateway, env, cells["unix"])

    front = start_front(on_miss=on_miss)
    answers: list[int] = []

    def request() -> None:
        answers.append(Client(front.port).get("/demo/staging/x").status)

    threads = [threading.Thread(target=request) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert answers == [200] * 8
    assert calls == [("demo", "staging")]
    missing = Client(front.port).get("/nobody/dev/x")
    assert missing.status == 404 and missing.json()["error"]["code"] == "not_found"
    assert calls == [("demo", "staging"), ("nobody", "dev")]


def test_on_miss_that_takes_too_long_or_fails_gives_503(
    routes: RouteTable, start_front: Callable[..., Front]
) -> None:
    async def on_miss(gateway: str, env: str) -> None:
        if gateway == "broken":
            raise RuntimeError("no room for another cell")
        await asyncio.sleep(30)

    front = start_front(on_miss=on_miss, limits=FrontLimits(miss_timeout_s=0.3))
    slow = Client(front.port).get("/slow/dev/x")
    assert slow.status == 503 and "did not start within 0.3 s" in slow.json()["error"]["message"]
    broken = Client(front.port).get("/broken/dev/x")
    assert broken.status == 503 and "no room for another cell" in broken.json()["error"]["message"]


def test_internal_paths_go_to_their_hook_not_to_a_cell(
    routes: RouteTable, start_front: Callable[..., Front], cells: dict[str, str]
) -> None:
    routes.set("demo", "dev", cells["unix"])
    seen: list[InternalRequest] = []

    async def internal(request: InternalRequest) -> InternalResponse:
        seen.append(request)
        return InternalResponse(200, [(b"content-type", b"application/json")], b'{"cells": 1}')

    front = start_front(internal=internal)
    client = Client(front.port)
    client.send(
        b"POST /_fnstage/status?x=1 HTTP/1.1\r\nHost: demo.dev.localhost\r\nContent-Length: 4\r\n\r\nping"
    )
    response = client.read()
    assert response.status == 200 and response.json() == {"cells": 1}
    assert (seen[0].method, seen[0].path, seen[0].query_string, seen[0].body) == (
        "POST",
        "/_fnstage/status",
        b"x=1",
        b"ping",
    )
    assert client.get("/demo/dev/x").status == 200

    bare = start_front()
    assert Client(bare.port).get("/_fnstage/status").status == 404


def test_a_failing_internal_hook_or_a_malformed_request_gets_a_json_error(
    routes: RouteTable, start_front: Callable[..., Front]
) -> None:
    async def internal(request: InternalRequest) -> InternalResponse:
        raise RuntimeError("status broke")

    front = start_front(internal=internal)
    client = Client(front.port)
    response = client.get("/_fnstage/status")
    assert response.status == 500 and response.json()["error"]["code"] == "internal_failed"
    assert client.get("/nothing").status == 404  # the connection goes on

    malformed = Client(front.port)
    malformed.send(b"GET /demo/dev/x HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
    response = malformed.read()
    assert response.status == 400 and response.json()["error"]["code"] == "bad_request"
    assert malformed.closed_by_peer()


# many idle connections ----------------------------------------------------------------------------------
FRONT_PROCESS = """
import sys
from fnstage.front import FrontLimits, RouteTable, serve_front
routes = RouteTable()
routes.set("demo", "dev", sys.argv[2])
serve_front(routes, port=int(sys.argv[1]), limits=FrontLimits(idle_timeout_s=120), ready=lambda f: print("ready", flush=True))
"""


def test_ten_thousand_idle_connections_and_requests_still_answered(cells: dict[str, str]) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 10_500:
        pytest.fail(f"this test needs 10,500 open files; the hard limit here is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    port = free_port()
    front = subprocess.Popen(
        [sys.executable, "-c", FRONT_PROCESS, str(port), cells["unix"]],
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    idle: list[socket.socket] = []
    try:
        assert front.stdout is not None and front.stdout.readline().strip() == b"ready"
        selector = selectors.DefaultSelector()
        for _ in range(10_000):
            sock = socket.socket()
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", port))
            idle.append(sock)
            selector.register(sock, selectors.EVENT_WRITE)
        connected = 0
        deadline = time.monotonic() + 60
        while connected < len(idle) and time.monotonic() < deadline:
            for key, _ in selector.select(1):
                selector.unregister(key.fileobj)
                # the selector holds sockets only; typeshed types fileobj as any file-like
                assert key.fileobj.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0  # type: ignore[union-attr]
                connected += 1
        assert connected == 10_000
        for sock in idle[::500]:  # some of the idle ones are still served
            sock.setblocking(True)
            sock.settimeout(20)
            client = Client.__new__(Client)
            client.sock, client._file = sock, _KeepOpen(sock.makefile("rb"))
            assert client.get("/demo/dev/idle").status == 200
        for _ in range(20):  # and new ones too
            assert Client(port).get("/demo/dev/new").status == 200
        assert front.poll() is None
    finally:
        for sock in idle:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        front.send_signal(signal.SIGTERM)
        front.wait(20)


# pure parts ---------------------------------------------------------------------------------------------
def test_upstreams_parse_or_say_what_is_wrong() -> None:
    assert parse_upstream("/run/cell.sock") == Upstream(unix_path="/run/cell.sock")
    assert parse_upstream("unix:/run/cell.sock") == Upstream(unix_path="/run/cell.sock")
    assert parse_upstream("127.0.0.1:9000") == Upstream(host="127.0.0.1", port=9000)
    assert parse_upstream("[::1]:9000") == Upstream(host="::1", port=9000)
    assert str(parse_upstream("[::1]:9000")) == "[::1]:9000"
    for bad in ("", "relative.sock", "unix:relative", "host:", "host:0", "host:70000", ":80", "host:http"):
        with pytest.raises(InvalidInput) as caught:
            parse_upstream(bad)
        assert caught.value.field == "upstream" and repr(bad) in str(caught.value)


def test_the_route_table_refuses_bad_keys_and_changes_nothing() -> None:
    routes = RouteTable()
    routes.set("demo", "dev", "127.0.0.1:9000")
    for gateway, env in (("Demo", "dev"), ("demo.x", "dev"), ("demo", "qa"), ("", "dev")):
        with pytest.raises(InvalidInput):
            routes.set(gateway, env, "127.0.0.1:9001")
    with pytest.raises(InvalidInput):
        routes.set("demo", "dev", "nowhere")
    assert dict(routes.items()) == {("demo", "dev"): Upstream(host="127.0.0.1", port=9000)}


def test_the_route_table_tells_which_upstream_a_change_left_unused() -> None:
    routes = RouteTable()
    unused: list[Upstream] = []
    routes.add_listener(unused.append)
    routes.set("demo", "dev", "/a.sock")
    routes.set("demo", "prod", "/a.sock")
    routes.set("demo", "dev", "/b.sock")
    assert unused == []  # /a.sock still serves prod
    routes.remove("demo", "prod")
    assert unused == [Upstream(unix_path="/a.sock")]
    routes.set_starting("demo", "dev")
    assert unused == [Upstream(unix_path="/a.sock"), Upstream(unix_path="/b.sock")]


def test_limits_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="idle_timeout_s: expected a positive number"):
        FrontLimits(idle_timeout_s=0)
    assert FrontLimits().max_body_bytes == 6 * 1024 * 1024 and FrontLimits().max_header_bytes == 16 * 1024
