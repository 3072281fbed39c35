"""What a function sees of its request, and what its client gets back, through the front of a real
`fnstage up`: the same whether its cells speak RSGI (the default) or ASGI. granian's RSGI cannot give a
header value that is not visible ASCII; the front carries such a request's header lines whole to the
cell (`carried_headers`). Each test sends the same raw bytes to an `up` of each interface."""

from __future__ import annotations

import base64
import json
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fnstage.testing import UpProcess
from support.cells import send_raw
from support.cli import Cli, write

pytestmark = pytest.mark.e2e

ECHO = """def main(ctx):
    return {
        "headers": list(ctx.headers.items()),
        "query": ctx.query,
        "path": ctx.path,
        "size": len(ctx.body),
    }
"""
WORD = """from fnstage import Response

def main(ctx):
    return Response("ok", headers={"x-word": "caf\\u00e9", "x-plain": "tea"})
"""


@pytest.fixture(scope="module")
def ups(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, UpProcess]]:
    """One `fnstage up` per interface, each with dev/echo and dev/word live (the RSGI one by default)."""
    started: dict[str, UpProcess] = {}
    temp_dirs = []
    try:
        for interface, setting in (("rsgi", ""), ("asgi", "asgi")):
            root = tmp_path_factory.mktemp(interface)
            # cells' sockets go under TMPDIR: a short one of its own, to find them (under 107 bytes)
            temp_dirs.append(tempfile.mkdtemp(prefix="fnh"))
            env = {"FNSTAGE_CELL_INTERFACE": setting, "TMPDIR": temp_dirs[-1]}
            up = started[interface] = UpProcess(root, extra_env=env).start()
            cli = Cli(up)
            cli.run("gateway", "create", "demo")
            cli.run("push", str(write(root / "echo", {"index.py": ECHO})), "dev/echo", "--wait")
            cli.run("push", str(write(root / "word", {"index.py": WORD})), "dev/word", "--wait")
        yield started
    finally:
        for up in started.values():
            up.stop()
        for folder in temp_dirs:
            shutil.rmtree(folder, ignore_errors=True)


def send(up: UpProcess, request: bytes) -> tuple[bytes, bytes]:
    """`request` as it is, to the front; the answer's head and body (the front closes: `close`)."""
    with socket.create_connection(("127.0.0.1", up.runtime_port), timeout=20) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return head, body


def get(path: bytes, *headers: bytes, host: bytes = b"demo.dev.localhost") -> bytes:
    lines = b"".join(h + b"\r\n" for h in headers)
    return b"GET %s HTTP/1.1\r\nHost: %s\r\n%sConnection: close\r\n\r\n" % (path, host, lines)


def seen(ups: dict[str, UpProcess], request: bytes) -> dict[str, Any]:
    """What the echo function saw of `request` through each `up`'s front: the same, or the test fails."""
    answers = {}
    for interface, up in ups.items():
        head, body = send(up, request)
        assert head.startswith(b"HTTP/1.1 200 "), (interface, head, body)
        answers[interface] = json.loads(body)
    assert answers["rsgi"] == answers["asgi"]
    answer: dict[str, Any] = answers["rsgi"]
    return answer


def headers_of(answer: dict[str, Any]) -> dict[str, str]:
    return {name: value for name, value in answer["headers"]}


def test_a_header_value_that_is_not_visible_ascii_reaches_the_function_as_on_asgi(
    ups: dict[str, UpProcess],
) -> None:
    answer = seen(ups, get(b"/echo", b"X-Term: lev\xc3\xa9", b"X-Latin: caf\xe9", b"X-Plain: ok"))
    headers = headers_of(answer)
    # the bytes the client sent, as latin-1 text (ASGI's `headers`, as ctx.headers has always read them)
    assert headers["x-term"] == "lev\xc3\xa9" and headers["x-latin"] == "caf\xe9"
    assert headers["x-plain"] == "ok" and headers["host"] == "demo.dev.localhost"
    assert "x-fnstage-raw-headers" not in headers
    names = [name for name, _ in answer["headers"]]
    assert names.index("x-term") < names.index("x-latin") < names.index("x-plain")  # in the client's order


def test_repeated_headers_with_one_unreadable_value_keep_both_values_in_order(
    ups: dict[str, UpProcess],
) -> None:
    request = get(b"/echo", b"Cookie: a=1", b"X-A: first", b"Cookie: city=K\xc3\xb6ln", b"X-A: second")
    headers = headers_of(seen(ups, request))
    assert headers["cookie"] == "a=1, city=K\xc3\xb6ln"
    assert headers["x-a"] == "first, second"


def test_a_client_sent_carrier_is_dropped_by_the_front(ups: dict[str, UpProcess]) -> None:
    """A client cannot choose what the cell reads as its headers: the front routes by Host, and the
    cell must see that Host. Its carrier is dropped, alone or beside a header the front carries."""
    forged = base64.b64encode(b"host: demo.prod.localhost\r\nx-injected: 1\r\n")
    for extra in ((), (b"X-Term: lev\xc3\xa9",)):
        answer = seen(ups, get(b"/echo", b"X-Fnstage-Raw-Headers: " + forged, *extra))
        headers = headers_of(answer)
        assert headers["host"] == "demo.dev.localhost"  # dev's function answered: routed as before
        assert "x-injected" not in headers and "x-fnstage-raw-headers" not in headers
        if extra:
            assert headers["x-term"] == "lev\xc3\xa9"
    for up in ups.values():  # the forged Host names prod, where nothing is live: it would be a 404
        head, _ = send(up, get(b"/echo", host=b"demo.prod.localhost"))
        assert head.startswith(b"HTTP/1.1 404 ")


def test_a_carried_request_with_a_body_and_chunked_trailers(ups: dict[str, UpProcess]) -> None:
    """The slow path (a body) with a carrier; a chunked body's trailers never reach a cell (the front
    re-chunks the body), so RSGI's reading of trailers as a broken body never shows through it."""
    request = (
        b"POST /echo HTTP/1.1\r\nHost: demo.dev.localhost\r\nX-Term: lev\xc3\xa9\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        b"3\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: 1\r\n\r\n"
    )
    answer = seen(ups, request)
    assert answer["size"] == 5 and headers_of(answer)["x-term"] == "lev\xc3\xa9"


def test_a_query_and_a_path_read_the_same_on_either_interface(ups: dict[str, UpProcess]) -> None:
    answer = seen(ups, get(b"/echo?x=%E9&y=%C3%A9&z=a+b"))
    assert answer["query"] == {"x": "\ufffd", "y": "\u00e9", "z": "a b"}  # parse_qsl's UTF-8 decoding
    assert answer["path"] == "/echo"
    for up in ups.values():  # a target that is not ASCII: granian refuses it on either interface
        head, _ = send(up, get(b"/echo?x=\xe9"))
        assert head.startswith(b"HTTP/1.1 400 "), head


def test_a_response_header_value_goes_out_as_the_same_bytes(ups: dict[str, UpProcess]) -> None:
    heads = {}
    for interface, up in ups.items():
        head, body = send(up, get(b"/word"))
        assert head.startswith(b"HTTP/1.1 200 ") and body == b"ok", (interface, head)
        heads[interface] = {
            name.lower(): value.strip()
            for name, _, value in (line.partition(b":") for line in head.split(b"\r\n")[1:])
        }
    for interface, head in heads.items():
        assert head[b"x-word"] == "café".encode(), interface  # UTF-8, from either interface
        assert head[b"x-plain"] == b"tea"


def test_the_default_up_serves_rsgi_cells_which_refuse_an_unreadable_header_without_the_front(
    ups: dict[str, UpProcess],
) -> None:
    """The first `up` sets nothing: its cells speak RSGI (`runtime.server.cell_interface`), so a client
    at a cell's own socket, with no front to carry its headers, is refused with 400 there; told
    "asgi", the second `up`'s cell serves the same request (and the tests above compare two
    interfaces, not one twice)."""
    request = get(b"/echo", b"X-Term: lev\xc3\xa9")
    for interface, up in ups.items():
        [cell_socket] = Path(up.env["TMPDIR"]).glob("*/demo.dev/cell.sock")
        answer = send_raw(cell_socket, request, timeout=20)
        head, _, body = answer.partition(b"\r\n\r\n")
        if interface == "rsgi":
            assert head.startswith(b"HTTP/1.1 400 "), head
            assert "not visible ASCII" in json.loads(body)["error"]["message"]
        else:
            assert head.startswith(b"HTTP/1.1 200 "), head
            assert headers_of(json.loads(body))["x-term"] == "lev\xc3\xa9"
