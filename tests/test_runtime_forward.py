"""An environment cell forwarding a lock cell's functions (`runtime.forward`): the environment's app
(driven through httpx's ASGI transport) in front of a second app served on a Unix socket by uvicorn,
standing in for the lock's cell. Streamed bodies both ways, keep-alive reuse, HEAD, the internal
endpoints of a forwarded function, and the front's answers when the lock cell fails: 503 while it does
not accept, 502 when it fails mid-request."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from fnstage.carried_headers import NAME, carried
from fnstage.runtime.app import RuntimeApp
from fnstage.runtime.forward import request_head
from fnstage.runtime.registry import Registry
from fnstage.runtime.router import Router
from support.functions import live

pytestmark = pytest.mark.anyio

KEY = "s3cret"
ECHO = (
    "async def main(ctx):\n"
    "    return {'where': 'lock', 'size': len(ctx.body), 'method': ctx.method, 'path': ctx.path,"
    " 'query': dict(ctx.query), 'host': ctx.headers.get('host')}\n"
)
BIG = "async def main(ctx):\n    return 'x' * (3 * 1024 * 1024)\n"
LOCAL = "async def main(ctx):\n    return {'where': 'env'}\n"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@contextlib.asynccontextmanager
async def lock_cell(socket: Path) -> AsyncIterator[RuntimeApp]:
    """A cell's app for `prod/pinned` and `prod/big`, served on `socket` (HTTP/1.1, keep-alive)."""
    registry = Registry()
    registry.apply(live(ECHO, name="prod/pinned", version=4, methods=["GET", "POST", "HEAD"]))
    registry.apply(live(BIG, name="prod/big", version=1))
    app = RuntimeApp(registry, Router(gateway="demo"), internal_token=KEY)
    # asgi3 said outright: RuntimeApp.__call__ returns its coroutine rather than being `async def` (one
    # coroutine less a request), and uvicorn's guess would take it for an ASGI 2 app
    config = uvicorn.Config(
        app, uds=str(socket), log_level="warning", lifespan="off", http="h11", interface="asgi3"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield app
    finally:
        server.should_exit = True
        await task


def env_cell(socket: Path) -> RuntimeApp:
    registry = Registry()
    registry.apply(live(LOCAL, name="prod/plain", version=2))
    app = RuntimeApp(registry, Router(gateway="demo"), internal_token=KEY)
    app.set_forwards({("demo", "prod/pinned"): str(socket), ("demo", "prod/big"): str(socket)})
    return app


def client(app: RuntimeApp) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url="http://demo.prod.localhost", timeout=10)


async def test_a_forwarded_function_answers_from_its_lock_cell_and_the_others_locally(tmp_path: Path) -> None:
    socket = tmp_path / "lock.sock"
    async with lock_cell(socket), client(env_cell(socket)) as http:
        plain = await http.get("/plain")
        pinned = await http.get("/pinned?a=1&b=two%20three")
        body = b"z" * (1024 * 1024 + 7)
        posted = await http.post("/pinned", content=body)
        big = await http.get("/big")
        head = await http.head("/pinned")
    assert plain.json() == {"where": "env"}
    assert pinned.status_code == 200 and pinned.headers["x-fnstage-version"] == "4"
    answer = pinned.json()
    assert (answer["where"], answer["method"], answer["host"]) == ("lock", "GET", "demo.prod.localhost")
    assert answer["query"] == {"a": "1", "b": "two three"} and answer["path"].endswith("/pinned")
    assert posted.json()["size"] == len(body)  # the body went up whole
    assert big.status_code == 200 and big.content == b"x" * (3 * 1024 * 1024)  # and came down whole
    assert head.status_code == 200 and head.content == b""


async def test_forwarded_requests_reuse_one_kept_alive_connection(tmp_path: Path) -> None:
    socket = tmp_path / "lock.sock"
    app = env_cell(socket)
    async with lock_cell(socket), client(app) as http:
        for _ in range(5):
            assert (await http.get("/pinned")).status_code == 200
        pool = app._forwarder.pools[str(socket)]
        assert len(pool) == 1  # one connection, five requests
        app.set_forwards({})
        app.close_unused_pools()
        assert pool.closed and app._forwarder.pools == {}
        gone = await http.get("/pinned")  # no longer forwarded, and not live here
    assert gone.status_code == 404


async def test_a_lock_cell_that_does_not_accept_is_answered_503_with_retry_after(tmp_path: Path) -> None:
    async with client(env_cell(tmp_path / "nobody.sock")) as http:
        r = await http.get("/pinned", headers={"x-request-id": "req-1"})
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    assert r.json()["error"]["code"] == "starting" and r.json()["error"]["request_id"] == "req-1"


async def test_a_lock_cell_that_fails_mid_request_is_answered_502(tmp_path: Path) -> None:
    socket = tmp_path / "rude.sock"

    async def rude(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()  # reads the request, answers nothing

    server = await asyncio.start_unix_server(rude, path=str(socket))
    try:
        async with client(env_cell(socket)) as http:
            r = await http.get("/pinned")
    finally:
        server.close()
    assert r.status_code == 502 and r.json()["error"]["code"] == "bad_gateway"


async def test_the_internal_endpoints_of_a_forwarded_function_reach_its_lock_cell(tmp_path: Path) -> None:
    socket = tmp_path / "lock.sock"
    auth = {"authorization": f"Bearer {KEY}"}
    async with lock_cell(socket), client(env_cell(socket)) as http:
        await http.get("/pinned", headers={"x-request-id": "seen-in-lock-cell"})
        logs = await http.get(
            "/_fnstage/logs", params={"gateway": "demo", "name": "prod/pinned"}, headers=auth
        )
        refused = await http.get("/_fnstage/logs", params={"gateway": "demo", "name": "prod/pinned"})
        order = {
            "gateway": "demo",
            "name": "prod/pinned",
            "payload": {"hello": 1},
            "trigger": {
                "name": "t",
                "schedule": "* * * * *",
                "timezone": "UTC",
                "tick": "2026-12-01T00:00:00",
            },
        }
        run = await http.post("/_fnstage/invoke", json=order, headers=auth)
    assert [e["request_id"] for e in logs.json()["invocations"]] == ["seen-in-lock-cell"]
    assert refused.status_code == 401
    assert run.status_code == 200 and run.json()["version"] == 4 and run.json()["status"] == 200


def test_a_forwarded_head_carries_its_own_lines_and_never_a_stale_carrier() -> None:
    """An RSGI lock cell cannot read a value that is not visible ASCII: the head carries every line it
    sends (`carried_headers`), made from the environment cell's headers; a carrier it was given is
    dropped (made from lines the lock cell does not get: hop-by-hop ones, X-Forwarded-*)."""
    stale = (NAME, base64.b64encode(b"host: other\r\n"))
    scope = {
        "method": "GET",
        "path": "/x",
        "query_string": b"a=1",
        "headers": [
            (b"host", b"demo.dev.localhost"),
            stale,
            (b"x-term", b"lev\xc3\xa9"),
            (b"connection", b"x-a"),
        ],
    }
    head, chunked, has_body = request_head(scope)
    lines = head.split(b"\r\n")
    assert lines[0] == b"GET /x?a=1 HTTP/1.1" and (chunked, has_body) == (False, False)
    [carrier] = [line for line in lines if line.startswith(NAME + b": ")]
    sent = [line for line in lines[1:] if line and line != carrier]
    assert sent == [b"host: demo.dev.localhost", b"x-term: lev\xc3\xa9"]
    assert carried(carrier.partition(b": ")[2]) == [
        (b"host", b"demo.dev.localhost"),
        (b"x-term", b"lev\xc3\xa9"),
    ]
    plain, _, _ = request_head({**scope, "headers": [(b"host", b"h"), stale]})
    assert plain == b"GET /x?a=1 HTTP/1.1\r\nhost: h\r\n\r\n"
