"""The CLI's HTTP on the standard library (cli/transport.py) against real sockets on loopback:
keep-alive, a connection the server closed, timeouts, refusals, proxies from the environment."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from fnstage.cli import transport
from fnstage.cli.client import ApiClient, CliError, query_string
from fnstage.cli.transport import ConnectFailed, HttpTransport, Request, TimedOut, TransportError


class Recorder(ThreadingHTTPServer):
    """Answers every request with {"path": ...}; records (client port, method, target, headers, body)."""

    daemon_threads = True
    close_after_answer = False  # drop the connection after answering, without saying so

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.seen: list[dict[str, Any]] = []
        self.closed = threading.Event()  # set when the server closed a connection

    def shutdown_request(self, request: Any) -> None:
        super().shutdown_request(request)
        self.closed.set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    server: Recorder

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.seen.append(
            {
                "port": self.client_address[1],
                "method": self.command,
                "target": self.path,
                "headers": dict(self.headers),
                "body": body,
            }
        )
        payload = json.dumps({"path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        self.wfile.flush()
        if self.server.close_after_answer:
            self.close_connection = True

    do_GET = do_POST = _answer

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[Recorder]:
    recorder = Recorder()
    thread = threading.Thread(target=recorder.serve_forever, daemon=True)
    thread.start()
    try:
        yield recorder
    finally:
        recorder.shutdown()
        recorder.server_close()


@pytest.fixture(autouse=True)
def no_proxy_from_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


def get(url: str) -> Request:
    return Request("GET", url, {"Accept": "application/json"})


def test_requests_share_one_kept_alive_connection(server: Recorder) -> None:
    http = HttpTransport(timeout=5)
    try:
        first = http(get(server.url + "/api/v1/me?x=1"))
        second = http(Request("POST", server.url + "/api/v1/gateways", {}, b'{"id":"demo"}'))
    finally:
        http.close()
    assert (first.status, json.loads(first.body)) == (200, {"path": "/api/v1/me?x=1"})
    assert second.status == 200
    assert server.seen[0]["port"] == server.seen[1]["port"]  # one TCP connection
    assert server.seen[1]["body"] == b'{"id":"demo"}'
    assert server.seen[1]["headers"]["Content-Length"] == "13"


def test_a_connection_the_server_closed_is_opened_again(server: Recorder) -> None:
    server.close_after_answer = True  # as a server's keep-alive timeout does, without a Connection header
    http = HttpTransport(timeout=5)
    try:
        assert http(get(server.url + "/a")).status == 200
        assert server.closed.wait(5)
        assert http(Request("POST", server.url + "/b", {}, b"{}")).status == 200
    finally:
        http.close()
    assert [s["target"] for s in server.seen] == ["/a", "/b"]
    assert server.seen[0]["port"] != server.seen[1]["port"]


def test_a_close_racing_the_request_repeats_only_a_get(
    server: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.close_after_answer = True
    monkeypatch.setattr(transport, "_closed_by_peer", lambda connection: False)  # the close comes too late
    http = HttpTransport(timeout=5)
    try:
        http(get(server.url + "/a"))
        assert server.closed.wait(5)
        server.closed.clear()
        assert http(get(server.url + "/b")).status == 200  # sent again on a fresh connection
        assert server.closed.wait(5)
        with pytest.raises(TransportError, match="closed the connection before answering"):
            http(Request("POST", server.url + "/c", {}, b"{}"))  # a POST could act twice: never repeated
    finally:
        http.close()
    assert [s["target"] for s in server.seen] == ["/a", "/b"]


def test_a_server_that_never_answers_times_out() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # accepts connections (the kernel does), never answers
        http = HttpTransport(timeout=0.2)
        with pytest.raises(TimedOut, match=r"no answer within 0\.2 s"):
            http(get(f"http://127.0.0.1:{silent.getsockname()[1]}/api/v1/me"))
        http.close()


def test_refused_and_unknown_hosts_fail_to_connect() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    http = HttpTransport(timeout=5)
    with pytest.raises(ConnectFailed) as refused:
        http(get(f"http://127.0.0.1:{port}/"))
    assert refused.value.refused
    with pytest.raises(ConnectFailed) as unknown:
        http(get("http://no-such-host.invalid/"))
    assert not unknown.value.refused


def test_https_to_a_server_without_tls_fails_to_connect_with_the_tls_error(server: Recorder) -> None:
    with pytest.raises(ConnectFailed) as failed:
        HttpTransport(timeout=5)(get(server.url.replace("http://", "https://") + "/"))
    assert not failed.value.refused
    assert "SSL" in str(failed.value)
    assert server.seen == []  # the handshake failed: no request went out


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("ftp://example.test/x", "must start with http:// or https://"),
        ("http:///x", "names no host"),
        ("http://127.0.0.1:99999/x", "invalid port"),
    ],
)
def test_bad_urls_are_refused_before_any_connection(url: str, says: str) -> None:
    with pytest.raises(TransportError, match=says):
        HttpTransport(timeout=5)(get(url))


def test_a_proxy_from_the_environment_gets_the_absolute_url(
    server: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("http_proxy", "http://user:p%40ss@" + server.url.removeprefix("http://"))
    http = HttpTransport(timeout=5)
    try:
        answer = http(get("http://fnstage.example:8470/api/v1/me"))
    finally:
        http.close()
    assert answer.status == 200
    assert server.seen[0]["target"] == "http://fnstage.example:8470/api/v1/me"
    assert server.seen[0]["headers"]["Proxy-Authorization"] == "Basic dXNlcjpwQHNz"  # user:p@ss


def test_no_proxy_sends_straight_to_the_server(server: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    http = HttpTransport(timeout=5)
    try:
        assert http(get(server.url + "/direct")).status == 200
    finally:
        http.close()
    assert server.seen[0]["target"] == "/direct"


def test_the_client_names_the_url_when_the_server_never_answers() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with ApiClient(url, None, timeout=0.2) as api, pytest.raises(CliError) as error:
            api.get("me")
    assert str(error.value) == f"fnstage at {url} did not answer in time (no answer within 0.2 s): try again"


def test_query_string_leaves_out_none_and_spells_booleans_as_the_api_reads_them() -> None:
    assert query_string({"a": "x y", "b": None, "c": True, "d": False, "e": 3}) == "a=x+y&c=true&d=false&e=3"


def test_query_string_refuses_a_nested_value() -> None:
    # what `--wait` once sent: params={"version": 2} under the name "params"
    with pytest.raises(TypeError, match="query parameter params must be a str, int, float or bool"):
        query_string({"params": {"version": 2}})


def _answering(raw: bytes) -> tuple[str, list[bytes]]:
    """A server on loopback that reads one request and writes `raw` back, then closes: (URL, the
    requests it read)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    seen: list[bytes] = []

    def serve() -> None:
        with listener, listener.accept()[0] as conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            seen.append(data)
            conn.sendall(raw)

    threading.Thread(target=serve, daemon=True).start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}", seen


@pytest.mark.parametrize(
    ("raw", "body"),
    [
        (
            b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{"a"\r\n3;x=y\r\n:1}\r\n0\r\nT: 1\r\n\r\n',
            b'{"a":1}',
        ),
        (
            b'HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{"to": "the close"}',
            b'{"to": "the close"}',
        ),
        (b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n", b""),
        (b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}", b"{}"),
    ],
    ids=["chunked", "to-the-close", "no-content", "content-length"],
)
def test_answers_are_read_by_chunks_length_or_close(raw: bytes, body: bytes) -> None:
    url, seen = _answering(raw)
    http = HttpTransport(timeout=5)
    try:
        answer = http(Request("PUT", url + "/x?y=1", {"Accept": "application/json"}))
    finally:
        http.close()
    assert (answer.status, answer.body) == (int(raw[9:12]), body)
    host = url.removeprefix("http://")
    assert seen[0].startswith(f"PUT /x?y=1 HTTP/1.1\r\nHost: {host}\r\n".encode())
    assert b"\r\nContent-Length: 0\r\n" in seen[0] and b"\r\nAccept: application/json\r\n" in seen[0]


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b"SSH-2.0-OpenSSH_9.6\r\n", "not an HTTP answer"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}", "ended after 2 of 10 bytes"),
        (b"HTTP/1.1 200 OK\r\nContent-Le", "headers end too early"),
    ],
)
def test_an_answer_that_is_not_http_fails_the_request(raw: bytes, says: str) -> None:
    url, _ = _answering(raw)
    with pytest.raises(TransportError, match=says):
        HttpTransport(timeout=5)(get(url + "/"))
