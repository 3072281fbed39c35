"""The runtime app, through httpx: routing, 404/405/413, internal endpoints, and hot swap mid-request.
Every test that goes through `client` runs twice: by ASGI, and by RSGI as a cell serves the app
(`support.rsgi` calls `__rsgi__` as granian does)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from fnstage.runtime.app import RuntimeApp
from fnstage.runtime.loader import LoadError
from fnstage.runtime.registry import Registry
from fnstage.runtime.router import Router
from support.functions import live
from support.rsgi import RSGITransport

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


ECHO = "async def main(ctx):\n    return {'name': ctx.function.name, 'method': ctx.method, 'size': len(ctx.body)}\n"


INTERFACE = {"now": "asgi"}  # which interface `client` calls the app by (the `interface` fixture)


@pytest.fixture(autouse=True, params=["asgi", "rsgi"])
def interface(request: pytest.FixtureRequest) -> Iterator[str]:
    INTERFACE["now"] = request.param
    yield request.param
    INTERFACE["now"] = "asgi"


def client(app: RuntimeApp, host: str = "demo.dev.localhost") -> httpx.AsyncClient:
    transport = RSGITransport(app) if INTERFACE["now"] == "rsgi" else httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url=f"http://{host}")


@pytest.fixture
def registry() -> Registry:
    registry = Registry()
    registry.apply(live(ECHO))
    registry.apply(live(ECHO, name="prod/user/me", version=4))
    registry.apply(live(ECHO, gateway="other"))
    return registry


async def test_host_routing(registry: Registry) -> None:
    async with client(RuntimeApp(registry)) as http:
        response = await http.get("/user/me")
    assert response.status_code == 200
    assert response.json() == {"name": "dev/user/me", "method": "GET", "size": 0}
    assert response.headers["x-fnstage-version"] == "1"
    assert len(response.headers["x-request-id"]) == 32


async def test_incoming_request_id_is_kept(registry: Registry) -> None:
    async with client(RuntimeApp(registry)) as http:
        response = await http.get("/user/me", headers={"x-request-id": "trace-42"})
        bad = await http.get("/user/me", headers={"x-request-id": "no spaces please"})
    assert response.headers["x-request-id"] == "trace-42"
    assert bad.headers["x-request-id"] != "no spaces please"


async def test_path_routing_unbound(registry: Registry) -> None:
    async with client(RuntimeApp(registry), host="127.0.0.1:8000") as http:
        prod = await http.get("/demo/prod/user/me")
        other = await http.get("/other/dev/user/me")
    assert (prod.json()["name"], prod.headers["x-fnstage-version"]) == ("prod/user/me", "4")
    assert other.status_code == 200


async def test_path_routing_bound_to_a_gateway(registry: Registry) -> None:
    app = RuntimeApp(registry, Router(gateway="demo"))
    async with client(app, host="runtime:9000") as http:
        assert (await http.get("/prod/user/me")).json()["name"] == "prod/user/me"
    async with client(app, host="other.dev.localhost") as http:
        assert (await http.get("/user/me")).status_code == 404


async def test_unknown_function_is_404_json(registry: Registry) -> None:
    async with client(RuntimeApp(registry)) as http:
        unknown = await http.get("/nobody")
        unrouted = await http.get("/", headers={"host": "example.com"})
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "not_found"
    assert "dev/nobody" in unknown.json()["error"]["message"]
    assert unrouted.status_code == 404


async def test_function_that_failed_to_load_is_503(registry: Registry) -> None:
    registry.record_failure(
        "demo", "dev/broken", 1, LoadError("NameError at index.py:1: name 'x' is not defined")
    )
    async with client(RuntimeApp(registry)) as http:
        response = await http.get("/broken")
    assert response.status_code == 503
    assert "NameError at index.py:1" in response.json()["error"]["message"]


async def test_method_not_allowed_has_allow(registry: Registry) -> None:
    async with client(RuntimeApp(registry)) as http:
        response = await http.delete("/user/me")
        options = await http.options("/user/me")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD, OPTIONS, POST"
    assert options.status_code == 204
    assert options.headers["allow"] == "GET, HEAD, OPTIONS, POST"


async def test_declared_methods() -> None:
    registry = Registry()
    registry.apply(live(ECHO, methods=["PUT", "delete"]))
    async with client(RuntimeApp(registry)) as http:
        assert (await http.delete("/user/me")).json()["method"] == "DELETE"
        get = await http.get("/user/me")
    assert get.status_code == 405
    assert get.headers["allow"] == "DELETE, OPTIONS, PUT"


async def test_head_runs_get_without_a_body(registry: Registry) -> None:
    async with client(RuntimeApp(registry)) as http:
        response = await http.head("/user/me")
    assert response.status_code == 200
    assert response.content == b""
    assert int(response.headers["content-length"]) > 0


async def test_post_body_reaches_the_function(registry: Registry) -> None:
    async with client(RuntimeApp(registry)) as http:
        response = await http.post("/user/me", content=b"x" * 1000)
    assert response.json() == {"name": "dev/user/me", "method": "POST", "size": 1000}


async def test_a_request_without_a_body_never_waits_for_one(registry: Registry) -> None:
    # No content-length and no transfer-encoding: HTTP/1.1 says there is no body, so the app answers
    # without a `receive()` (on granian a receive is a round trip to the server: 40% of a hello's time).
    received: list[object] = []
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        received.append(1)
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/user/me", "query_string": b""}
    app = RuntimeApp(registry)
    await app({**scope, "headers": [(b"host", b"demo.dev.localhost")]}, receive, send)
    assert sent[0]["status"] == 200
    assert b'"size":0' in sent[1]["body"]
    assert received == []
    sent.clear()
    headers = [(b"host", b"demo.dev.localhost"), (b"content-length", b"0")]
    await app({**scope, "method": "POST", "headers": headers}, receive, send)
    assert sent[0]["status"] == 200
    assert received == []


async def test_a_chunked_body_is_read(registry: Registry) -> None:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"abc", "more_body": False}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    headers = [(b"host", b"demo.dev.localhost"), (b"transfer-encoding", b"chunked")]
    scope = {"type": "http", "method": "POST", "path": "/user/me", "query_string": b"", "headers": headers}
    await RuntimeApp(registry)(scope, receive, send)
    assert b'"size":3' in sent[1]["body"]


async def test_body_over_the_limit_by_content_length_is_413(registry: Registry) -> None:
    async with client(RuntimeApp(registry, max_body_bytes=100)) as http:
        ok = await http.post("/user/me", content=b"x" * 100)
        too_large = await http.post("/user/me", content=b"x" * 101)
    assert ok.status_code == 200
    assert too_large.status_code == 413
    assert too_large.json()["error"]["code"] == "too_large"


async def test_streamed_body_over_the_limit_is_413_without_reading_it_all(registry: Registry) -> None:
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(100):
            sent += 1
            yield b"x" * 10

    async with client(RuntimeApp(registry, max_body_bytes=25)) as http:
        response = await http.post("/user/me", content=chunks())
    assert response.status_code == 413
    assert sent < 10


async def test_internal_endpoints(registry: Registry) -> None:
    registry.record_failure("demo", "dev/broken", 3, LoadError("SyntaxError at index.py:2: bad", "tb"))
    app = RuntimeApp(registry)
    async with client(app) as http:
        await http.get("/user/me")
        health = await http.get("/_fnstage/health")
        status = await http.get("/_fnstage/status")
        logs = await http.get("/_fnstage/logs", params={"gateway": "demo", "name": "dev/user/me"})
        missing = await http.get("/_fnstage/nope")
    assert health.json() == {"status": "ok", "live": 3, "pending": 0}  # pending: a deferred cold start's
    functions = status.json()["functions"]
    assert [(f["gateway"], f["name"], f["version"]) for f in functions] == [
        ("demo", "dev/user/me", 1),
        ("demo", "prod/user/me", 4),
        ("other", "dev/user/me", 1),
    ]
    assert status.json()["load_failures"][0]["summary"] == "SyntaxError at index.py:2: bad"
    (entry,) = logs.json()["invocations"]
    assert entry["status"] == 200
    assert missing.status_code == 404


async def test_internal_token(registry: Registry) -> None:
    app = RuntimeApp(registry, internal_token="s3cret")
    async with client(app) as http:
        assert (await http.get("/_fnstage/health")).status_code == 200
        assert (await http.get("/_fnstage/logs?gateway=demo&name=dev/user/me")).status_code == 401
        public = await http.get("/_fnstage/status")  # anyone may learn which protections are missing
        ok = await http.get("/_fnstage/status", headers={"authorization": "Bearer s3cret"})
    assert public.status_code == 200 and set(public.json()) == {"pid", "gateway", "sandbox"}
    assert ok.status_code == 200 and "functions" in ok.json()


async def test_function_errors_keep_the_runtime_serving(registry: Registry) -> None:
    registry.apply(live("def main(ctx):\n    raise RuntimeError('boom')\n", name="dev/bad"))
    async with client(RuntimeApp(registry)) as http:
        bad = await http.get("/bad")
        good = await http.get("/user/me")
    assert bad.status_code == 500
    assert bad.json()["error"]["request_id"] == bad.headers["x-request-id"]
    assert good.status_code == 200


async def test_hot_swap_mid_request_finishes_on_the_old_version() -> None:
    started, release = asyncio.Event(), asyncio.Event()
    slow_v1 = (
        "async def main(ctx):\n"
        "    ctx.config['started'].set()\n"
        "    await ctx.config['release'].wait()\n"
        "    return 'v1'\n"
    )
    registry = Registry()
    registry.apply(live(slow_v1, config={"started": started, "release": release}))
    async with client(RuntimeApp(registry)) as http:
        slow = asyncio.create_task(http.get("/user/me"))
        await started.wait()
        assert registry.apply(live("async def main(ctx):\n    return 'v2'\n", version=2))
        release.set()
        first = await slow
        second = await http.get("/user/me")
    assert (first.text, first.headers["x-fnstage-version"]) == ("v1", "1")
    assert (second.text, second.headers["x-fnstage-version"]) == ("v2", "2")


async def test_lifespan_starts_and_stops_the_watcher(registry: Registry) -> None:
    events: list[str] = []

    class FakeWatcher:
        async def start(self) -> None:
            events.append("start")

        async def stop(self) -> None:
            events.append("stop")

        def status(self) -> dict[str, Any]:
            return {"positions": {}}

    app = RuntimeApp(registry, watcher=FakeWatcher())
    messages = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[str] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: Any) -> None:
        sent.append(message["type"])

    await app({"type": "lifespan"}, receive, send)
    assert events == ["start", "stop"]
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert app.status()["watcher"] == {"positions": {}}


async def test_time_limits_through_the_deadline_sweeper() -> None:
    registry = Registry()
    registry.apply(live("import asyncio\nasync def main(ctx):\n    await asyncio.sleep(5)\n", timeout_s=0.05))
    sync = "import threading\nstop = threading.Event()\ndef main(ctx):\n    stop.wait(5)\n"
    registry.apply(live(sync, name="dev/sync", timeout_s=0.05))
    registry.apply(live("async def main(ctx):\n    return 'quick'\n", name="dev/quick", timeout_s=0.05))
    app = RuntimeApp(registry)
    async with client(app) as http:
        slow, slow_sync, quick = await asyncio.gather(
            http.get("/user/me"), http.get("/sync"), http.get("/quick")
        )
        again = await http.get("/quick")
    assert (slow.status_code, slow.json()["error"]["code"]) == (504, "timeout")
    assert slow_sync.status_code == 504
    assert quick.text == again.text == "quick"
    sync_live = registry.get("demo", "dev/sync")
    assert sync_live is not None
    sync_live.main.__globals__["stop"].set()
    async with asyncio.timeout(2):  # the sweeper stops once nothing is in flight
        while app.deadlines.sweeper is not None:
            await asyncio.sleep(0.01)


async def test_a_short_limit_is_kept_behind_a_long_one_in_flight() -> None:
    """The sweeper looks at every deadline, not only the first in flight: a request with a short
    limit that came after one with a long limit is still cut off at its own."""
    registry = Registry()
    patient = "import asyncio\nasync def main(ctx):\n    await asyncio.sleep(0.4)\n    return 'done'\n"
    registry.apply(live(patient, name="dev/patient", timeout_s=5))
    registry.apply(live("import asyncio\nasync def main(ctx):\n    await asyncio.sleep(5)\n", timeout_s=0.05))
    app = RuntimeApp(registry)
    async with client(app) as http:
        first = asyncio.ensure_future(http.get("/patient"))
        await asyncio.sleep(0.05)  # in flight first, its deadline the later one
        started = asyncio.get_running_loop().time()
        short = await http.get("/user/me")
        assert short.status_code == 504 and asyncio.get_running_loop().time() - started < 0.3
        assert (await first).text == "done"


async def test_a_body_that_stops_arriving_is_cut_off_with_408(registry: Registry) -> None:
    app = RuntimeApp(registry, body_timeout_s=0.2)
    sent: list[dict[str, Any]] = []
    chunks = [{"type": "http.request", "body": b"x" * 10, "more_body": True}]

    async def receive() -> dict[str, Any]:
        if chunks:
            return chunks.pop()
        await asyncio.sleep(3600)  # the client never sends the rest
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/user/me",
        "query_string": b"",
        "headers": [(b"host", b"demo.dev.localhost"), (b"content-length", b"100")],
    }
    async with asyncio.timeout(5):
        await app(scope, receive, send)
    start = sent[0]
    assert start["status"] == 408 and (b"connection", b"close") in start["headers"]


async def test_request_headers_larger_than_the_limit_are_refused_before_the_function_runs() -> None:
    registry = Registry()
    registry.apply(live("calls = []\n\ndef main(ctx):\n    calls.append(1)\n    return len(calls)\n"))
    app = RuntimeApp(registry, max_header_bytes=16 * 1024)
    async with client(app) as http:
        one_big = await http.get("/user/me", headers={"x-big": "v" * (100 * 1024)})
        many = await http.get("/user/me", headers={f"x-h{i}": "v" * 1000 for i in range(20)})
        fits = await http.get("/user/me", headers={"x-fits": "v" * (8 * 1024)})
    for refused in (one_big, many):
        assert refused.status_code == 431
        assert refused.json()["error"]["code"] == "too_large"
        assert "request headers are" in refused.json()["error"]["message"]
        assert "at most 16384 bytes" in refused.json()["error"]["message"]
    assert fits.status_code == 200 and fits.json() == 1  # the refused two never ran it


def test_the_runtime_header_limit_matches_the_api() -> None:
    from fnstage.api.limits import RequestLimits
    from fnstage.runtime.app import DEFAULT_MAX_HEADER_BYTES

    assert RequestLimits().max_header_bytes == DEFAULT_MAX_HEADER_BYTES


# scheduled runs: `/_fnstage/invoke` -------------------------------------------------------------------
WHY = (
    "async def main(ctx):\n"
    "    t = ctx.trigger\n"
    "    ctx.log('why', None if t is None else (t.name, t.schedule, t.timezone, t.tick.isoformat()))\n"
    "    return {'trigger': None if t is None else t.name, 'json': ctx.json, 'method': ctx.method}\n"
)
ORDER = {
    "gateway": "demo",
    "name": "dev/user/why",
    "request_id": "trigger-abc",
    "payload": {"full": True},
    "trigger": {
        "name": "nightly",
        "schedule": "0 3 * * *",
        "timezone": "UTC",
        "tick": "2030-01-01T03:00:00+00:00",
    },
}


async def test_a_scheduled_run_sets_ctx_trigger_and_is_logged_as_one() -> None:
    registry = Registry()
    registry.apply(live(WHY, name="dev/user/why", methods=["GET"]))  # a trigger is not an HTTP method
    app = RuntimeApp(registry, internal_token="s3cret")
    async with client(app) as http:
        answer = await http.post("/_fnstage/invoke", json=ORDER, headers={"Authorization": "Bearer s3cret"})
        plain = await http.get("/user/why")
    assert answer.status_code == 200, answer.text
    outcome = answer.json()
    assert outcome["status"] == 200 and outcome["version"] == 1 and outcome["request_id"] == "trigger-abc"
    assert outcome["error"] is None and outcome["duration_ms"] >= 0
    assert outcome["lines"] == ["why ('nightly', '0 3 * * *', 'UTC', '2030-01-01T03:00:00+00:00')"]
    assert plain.json() == {"trigger": None, "json": None, "method": "GET"}
    (run, request) = app.logs.recent("demo", "dev/user/why")
    assert (run.request_id, run.trigger) == ("trigger-abc", "nightly")
    assert request.trigger is None


async def test_a_failing_scheduled_run_answers_its_error() -> None:
    registry = Registry()
    registry.apply(live("def main(ctx):\n    return 1 / 0\n", name="dev/user/why"))
    app = RuntimeApp(registry, internal_token="s3cret")
    async with client(app) as http:
        answer = await http.post("/_fnstage/invoke", json=ORDER, headers={"Authorization": "Bearer s3cret"})
    outcome = answer.json()
    assert outcome["status"] == 500 and outcome["error"].startswith("ZeroDivisionError")


async def test_nobody_but_the_control_plane_can_pose_as_a_schedule() -> None:
    registry = Registry()
    registry.apply(live(WHY, name="dev/user/why"))
    guarded = RuntimeApp(registry, internal_token="s3cret")
    open_app = RuntimeApp(registry)  # no token: internal reads are open (tests), scheduled runs never
    async with client(guarded) as http:
        anonymous = await http.post("/_fnstage/invoke", json=ORDER)
        wrong = await http.post("/_fnstage/invoke", json=ORDER, headers={"Authorization": "Bearer guess"})
        # a public request that names a trigger anywhere still has none
        forged = await http.post(
            "/user/why?trigger=nightly",
            json={"trigger": ORDER["trigger"]},
            headers={"x-fnstage-trigger": "nightly"},
        )
    async with client(open_app) as http:
        tokenless = await http.post("/_fnstage/invoke", json=ORDER)
    assert anonymous.status_code == wrong.status_code == 401
    assert tokenless.status_code == 403 and "internal token" in tokenless.json()["error"]["message"]
    assert forged.json()["trigger"] is None
    assert [e.trigger for e in guarded.logs.recent("demo", "dev/user/why")] == [None]


async def test_a_scheduled_run_of_a_function_not_live_here_or_a_bad_order_is_refused() -> None:
    app = RuntimeApp(Registry(), internal_token="s3cret")
    auth = {"Authorization": "Bearer s3cret"}
    async with client(app) as http:
        missing = await http.post("/_fnstage/invoke", json=ORDER, headers=auth)
        bad = await http.post("/_fnstage/invoke", json={"gateway": "demo"}, headers=auth)
        not_json = await http.post("/_fnstage/invoke", content=b"{", headers=auth)
    assert missing.status_code == 404
    assert bad.status_code == not_json.status_code == 400


async def test_a_held_app_answers_no_404_before_it_has_its_functions() -> None:
    """A cell alone on a runtime's port listens before the runtime's first sync has loaded anything: a
    request then got 404 "no function is live" for a function that exists (the two-runtime canary test
    saw it in 1 run of 3). Held, the request waits for `serve` and gets the function."""
    registry = Registry()
    app = RuntimeApp(registry)
    app.hold()
    async with client(app, host="demo.prod.localhost") as http:
        waiting = asyncio.ensure_future(http.get("/user/me"))
        health = await http.get("/_fnstage/health")
        await asyncio.sleep(0.2)
        assert not waiting.done(), waiting.result()
        registry.apply(live(ECHO, name="prod/user/me", version=3))
        app.serve()
        answer = await waiting
        healthy = await http.get("/_fnstage/health")
    assert (health.status_code, health.json()["status"]) == (503, "starting")
    assert (answer.status_code, answer.headers["x-fnstage-version"]) == (200, "3")
    assert (healthy.status_code, healthy.json()["status"]) == (200, "ok")


async def test_a_held_app_refuses_with_503_and_retry_after_when_its_functions_never_come() -> None:
    app = RuntimeApp(Registry())
    app.hold()
    app.hold_s = 0.1
    async with client(app, host="demo.prod.localhost") as http:
        answer = await http.get("/user/me")
    assert answer.status_code == 503 and answer.headers["retry-after"] == "1"
    assert answer.json()["error"]["code"] == "starting"
    assert "starting" in answer.json()["error"]["message"]
