"""The invoker: ctx in, status/headers/body out; failures become answers, never crashes."""

from __future__ import annotations

import gc
import json
import logging
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from fnstage.build import build
from fnstage.runtime.invoker import (
    InvocationLog,
    InvocationLogs,
    Outcome,
    RunningCalls,
    invoke,
    response_headers,
    running_calls,
)
from fnstage.runtime.loader import LiveVersion, load_function
from fnstage.runtime.request_metrics import SECONDS, RequestMetrics
from fnstage.sdk import Context, Log

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def live(code: str, files: Mapping[str, str] | None = None, **kwargs: Any) -> LiveVersion:
    all_files = {"index.py": code, **(files or {})}
    bundle = build(all_files, "index.py")
    return load_function(
        "dev/user/me",
        7,
        "0.7.0",
        "index.py",
        bundle.compiled,
        bundle.files,
        {"greeting": "hello"},
        None,
        gateway="demo",
        **kwargs,
    )


async def call(fn: LiveVersion, logs: InvocationLogs | None = None, **kwargs: Any) -> Outcome:
    request: dict[str, Any] = {"method": "GET", "path": "/user/me", "request_id": "req-1", **kwargs}
    return await invoke(fn, logs=logs, **request)


def content_type(outcome: Outcome) -> str:
    return dict(outcome.headers)["content-type"]


async def test_context_fields() -> None:
    fn = live(
        "async def main(ctx):\n"
        "    return {'method': ctx.method, 'path': ctx.path, 'query': dict(ctx.query),\n"
        "            'header': ctx.headers['x-thing'], 'body': ctx.body.decode(), 'json': ctx.json,\n"
        "            'env': ctx.env,\n"
        "            'function': [ctx.function.name, ctx.function.version, ctx.function.semver],\n"
        "            'config': dict(ctx.config), 'request_id': ctx.request_id}\n"
    )
    outcome = await call(
        fn,
        method="POST",
        query_string=b"name=ada&x=%C3%A9",
        headers=[(b"X-Thing", b"a"), (b"x-thing", b"b")],
        body=b'{"k": 1}',
    )
    assert outcome.status == 200
    assert json.loads(outcome.body) == {
        "method": "POST",
        "path": "/user/me",
        "query": {"name": "ada", "x": "é"},
        "header": "a, b",
        "body": '{"k": 1}',
        "json": {"k": 1},
        "env": "dev",
        "function": ["dev/user/me", 7, "0.7.0"],
        "config": {"greeting": "hello"},
        "request_id": "req-1",
    }


async def test_invoke_keeps_and_counts_as_the_logs_record_does() -> None:
    """What `invoke` records is what `InvocationLogs.record` records: the same ring, outbox, counts
    and metrics, a failure and an uncounted request (a version URL's) included."""
    ok = live("async def main(ctx):\n    return {}\n")
    failing = live("async def main(ctx):\n    raise ValueError('no')\n")
    inline_logs, inline_metrics = InvocationLogs(outbox=10), RequestMetrics()
    counted = [True, True, False]
    for fn, count in zip([ok, failing, ok], counted, strict=True):
        await invoke(fn, "GET", "/user/me", "r", logs=inline_logs, metrics=inline_metrics, count=count)
    assert inline_metrics.in_flight == 0
    logs, metrics = InvocationLogs(outbox=10), RequestMetrics()
    shipped, _ = inline_logs.take_outbox()
    gateways, names, *fields = shipped
    for gateway, name, entry, count in zip(gateways, names, zip(*fields, strict=True), counted, strict=True):
        logs.record(gateway, name, entry, count, metrics, InvocationLog(*entry).duration_ms / 1000)
    assert logs.recent("demo", "dev/user/me") == inline_logs.recent("demo", "dev/user/me")
    inline_counts = inline_logs.take_counts()
    assert logs.take_counts() == inline_counts and [(c.requests, c.errors) for c in inline_counts] == [(2, 1)]
    assert logs.take_outbox()[0] == shipped
    [row], [inline_row] = metrics.take(), inline_metrics.take()
    seconds = 3 + SECONDS
    assert row[seconds] == pytest.approx(inline_row[seconds])
    assert row[:seconds] + row[seconds + 1 :] == inline_row[:seconds] + inline_row[seconds + 1 :]
    assert row[3:8] == [0, 2, 0, 0, 1]  # two 2xx, one 5xx


async def test_a_ctx_made_on_first_read_is_still_a_context() -> None:
    """`ctx.headers`, `ctx.query` and `ctx.log` are made when read (`RequestContext`): the same values,
    the same dataclass behaviour (`replace`, `fields`, `repr`), and a field the function sets stays."""
    fn = live(
        "import dataclasses\n"
        "from fnstage import sdk\n"
        "def main(ctx):\n"  # sync: made on a worker thread
        "    ctx.log('one', 2)\n"
        "    assert isinstance(ctx, sdk.Context)\n"
        "    other = dataclasses.replace(ctx, path='/other')\n"
        "    ctx.headers = {'set': 'by me'}\n"
        "    return {'other': [other.path, dict(other.headers), dict(other.query), other.log is ctx.log],\n"
        "            'headers': dict(ctx.headers), 'fields': [f.name for f in dataclasses.fields(ctx)],\n"
        "            'repr': 'x-thing' in repr(other)}\n"
    )
    outcome = await call(fn, query_string=b"a=1", headers=[(b"X-Thing", b"a")], executor=None)
    assert outcome.status == 200, outcome.error
    answer = json.loads(outcome.body)
    assert answer["other"] == ["/other", {"x-thing": "a"}, {"a": "1"}, True]
    assert answer["headers"] == {"set": "by me"}
    assert "headers" in answer["fields"] and "log" in answer["fields"] and "query" in answer["fields"]
    assert answer["repr"] is True
    assert outcome.lines == ["one 2"]
    unread = await call(live("async def main(ctx):\n    return {}\n"))
    assert not unread.lines  # no `ctx.log` read: no lines, and no Log made for them


@pytest.mark.parametrize(
    ("replaced", "kind"), [("5", "int"), ("'one line'", "str"), ("None", "NoneType"), ("('a', 'b')", "tuple")]
)
async def test_lines_a_function_replaced_are_kept_as_a_line_that_says_so(replaced: str, kind: str) -> None:
    """`ctx.log.lines` is the function's own list; one that replaced it with something else made its
    cell's log writer refuse the whole message it went in, other functions' invocations with it."""
    logs = InvocationLogs()
    outcome = await call(
        live(f"async def main(ctx):\n    ctx.log.lines = {replaced}\n    return 1\n"), logs=logs
    )
    assert outcome.status == 200
    said = [f"(ctx.log.lines was replaced by a {kind}: its lines are not kept)"]
    assert list(outcome.lines) == said
    assert list(logs.recent("demo", "dev/user/me")[0].lines) == said


async def test_a_dict_answer_that_is_not_json_is_a_500_that_says_why() -> None:
    outcome = await call(live("async def main(ctx):\n    return {'a': object()}\n"))
    assert outcome.status == 500 and outcome.error is not None
    assert "main returned dict, which is not JSON" in outcome.error


@pytest.mark.parametrize(
    ("returned", "status", "ctype", "body"),
    [
        ("{'a': 1}", 200, "application/json", b'{"a":1}'),
        ("[1, 'é']", 200, "application/json", '[1,"é"]'.encode()),
        ("'hi'", 200, "text/plain; charset=utf-8", b"hi"),
        ("b'\\x00\\x01'", 200, "application/octet-stream", b"\x00\x01"),
        ("Response('made', status=201, headers={'X-A': 'b'})", 201, "text/plain; charset=utf-8", b"made"),
        ("Response({'ok': True}, status=202)", 202, "application/json", b'{"ok":true}'),
        ("Response(b'<p>', headers={'Content-Type': 'text/html'})", 200, "text/html", b"<p>"),
    ],
)
async def test_return_types(returned: str, status: int, ctype: str, body: bytes) -> None:
    fn = live(f"from fnstage import Response\nasync def main(ctx):\n    return {returned}\n")
    outcome = await call(fn)
    assert (outcome.status, content_type(outcome), outcome.body) == (status, ctype, body)


async def test_none_is_204() -> None:
    outcome = await call(live("def main(ctx):\n    return None\n"))
    assert (outcome.status, outcome.body, outcome.headers) == (204, b"", [])


async def test_response_headers_are_kept_but_never_split() -> None:
    fn = live(
        "from fnstage import Response\ndef main(ctx):\n"
        "    return Response('x', headers={'X-A': '1', 'X-B': 'a\\r\\nb'})\n"
    )
    headers = dict((await call(fn)).headers)
    assert headers["x-a"] == "1"
    assert "x-b" not in headers


async def test_http_error() -> None:
    fn = live(
        "from fnstage import HTTPError\ndef main(ctx):\n"
        "    raise HTTPError(404, 'no such user', {'X-Why': 'gone'})\n"
    )
    outcome = await call(fn)
    assert outcome.status == 404
    assert json.loads(outcome.body) == {"error": {"code": "function_error", "message": "no such user"}}
    assert dict(outcome.headers)["x-why"] == "gone"


async def test_exception_is_500_with_request_id_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    fn = live(
        "import helper\ndef main(ctx):\n    return helper.boom()\n",
        {"helper.py": "def boom():\n    return 1 / 0\n"},
    )
    logs = InvocationLogs()
    with caplog.at_level(logging.ERROR, logger="fnstage.runtime"):
        outcome = await call(fn, logs=logs, request_id="abc123")
    assert outcome.status == 500
    error = json.loads(outcome.body)["error"]
    assert error["request_id"] == "abc123"
    assert "abc123" in caplog.text and "ZeroDivisionError" in caplog.text and "return 1 / 0" in caplog.text
    (entry,) = logs.recent("demo", "dev/user/me")
    assert entry.status == 500
    assert entry.error is not None and entry.error.startswith(
        "ZeroDivisionError at helper.py:2: division by zero"
    )


async def test_a_failures_traceback_shows_the_functions_frames_only() -> None:
    """Its author reads it in `fnstage logs`: the runtime's frames that called `main` name where fnstage
    is installed and nothing of theirs."""
    fn = live(
        "import helper\ndef main(ctx):\n    return helper.boom()\n",
        {"helper.py": "def boom():\n    return 1 / 0\n"},
    )
    logs = InvocationLogs()
    await call(fn, logs=logs, request_id="abc123")
    (entry,) = logs.recent("demo", "dev/user/me")
    assert entry.error is not None
    summary, traceback = entry.error.split("\n", 1)
    assert summary == "ZeroDivisionError at helper.py:2: division by zero"
    assert traceback.splitlines() == [
        "Traceback (most recent call last):",
        '  File "index.py", line 3, in main',
        "    return helper.boom()",
        '  File "helper.py", line 2, in boom',
        "    return 1 / 0",
        "ZeroDivisionError: division by zero",
    ]


async def test_each_live_version_counts_its_requests_and_failures() -> None:
    code = (
        "from fnstage import HTTPError\ndef main(ctx):\n    if ctx.query.get('fail'):\n        return 1 / 0\n"
        "    if ctx.query.get('teapot'):\n        raise HTTPError(418, 'short')\n    return 'ok'\n"
    )
    logs = InvocationLogs()
    v7 = live(code)
    for query in (b"", b"fail=1", b"teapot=1", b"fail=1"):
        await call(v7, logs=logs, query_string=query)
    (counts,) = logs.take_counts()
    assert (counts.version, counts.requests, counts.errors) == (7, 4, 2)  # an HTTPError is an answer
    assert counts.last_error == "ZeroDivisionError at index.py:4: division by zero"
    assert logs.take_counts() == []  # only what changed since the last report
    v8 = load_function(
        "dev/user/me",
        8,
        "0.8.0",
        "index.py",
        build({"index.py": code}, "index.py").compiled,
        {"index.py": code},
        gateway="demo",
    )
    await call(v8, logs=logs)
    await call(v7, logs=logs, query_string=b"fail=1")  # began on 7 while 8 went live: not 8's failure
    (counts,) = logs.take_counts()
    assert (counts.version, counts.requests, counts.errors, counts.last_error) == (8, 1, 0, None)


async def test_system_exit_in_a_function_does_not_stop_the_runtime() -> None:
    outcome = await call(live("import sys\nasync def main(ctx):\n    sys.exit(3)\n"))
    assert outcome.status == 500


async def test_unjsonable_return_is_500() -> None:
    outcome = await call(live("def main(ctx):\n    return object()\n"))
    assert outcome.status == 500


async def test_a_return_that_refers_to_itself_is_a_500_that_says_so_and_the_next_one_answers() -> None:
    logs = InvocationLogs()
    circular = live("def main(ctx):\n    d = {'a': [1]}\n    d['a'].append(d)\n    return d\n")
    outcome = await call(circular, logs=logs)
    assert outcome.status == 500
    error = logs.recent("demo", "dev/user/me")[0].error or ""
    assert "which is not JSON" in error and "refers to itself" in error
    not_json = await call(live("def main(ctx):\n    return {'a': [1, {2}]}\n"), logs=logs)
    assert "Object of type set is not JSON serializable" in (
        logs.recent("demo", "dev/user/me")[1].error or ""
    )
    assert not_json.status == 500
    nested = await call(live("def main(ctx):\n    return {'a': [{'b': 'é', 'c': 1.5, 'd': None}]}\n"))
    assert nested.body == '{"a":[{"b":"é","c":1.5,"d":null}]}'.encode()


async def test_an_outcome_says_how_long_the_invocation_took() -> None:
    logs = InvocationLogs()
    outcome = await call(
        live("import asyncio\nasync def main(ctx):\n    await asyncio.sleep(0.02)\n"), logs=logs
    )
    assert 0.02 <= outcome.seconds < 5
    assert logs.recent("demo", "dev/user/me")[0].duration_ms == pytest.approx(outcome.seconds * 1000)


async def test_sync_main_runs_in_a_worker_thread() -> None:
    fn = live("import threading\ndef main(ctx):\n    return threading.current_thread().name\n")
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="fn-worker") as executor:
        outcome = await invoke(fn, method="GET", path="/", request_id="r", executor=executor)
    assert outcome.body.startswith(b"fn-worker")
    assert outcome.body.decode() != threading.current_thread().name


async def test_async_timeout_is_504() -> None:
    fn = live("import asyncio\nasync def main(ctx):\n    await asyncio.sleep(10)\n", timeout_s=0.05)
    logs = InvocationLogs()
    outcome = await call(fn, logs=logs)
    assert outcome.status == 504
    assert json.loads(outcome.body)["error"]["code"] == "timeout"
    assert logs.recent("demo", "dev/user/me")[0].status == 504


async def test_sync_timeout_is_504() -> None:
    fn = live(
        "import threading\nstop = threading.Event()\ndef main(ctx):\n    stop.wait(2)\n", timeout_s=0.05
    )
    outcome = await call(fn)
    assert outcome.status == 504
    fn.main.__globals__["stop"].set()


async def test_a_sync_call_is_recorded_while_its_thread_runs_it_even_past_its_504() -> None:
    # the watchdog stops a thread past its limit by this record, not by the thread pool's internals
    fn = live(
        "import threading\nstop = threading.Event()\ndef main(ctx):\n    stop.wait(5)\n", timeout_s=0.05
    )
    with ThreadPoolExecutor(max_workers=1) as executor:
        outcome = await invoke(fn, method="GET", path="/", request_id="r-slow", executor=executor)
        assert outcome.status == 504
        [(ident, running)] = [(i, c) for i, c in running_calls.now().items() if c.request_id == "r-slow"]
        assert running.live is fn and ident != threading.get_ident()
        fn.main.__globals__["stop"].set()
    assert all(c.request_id != "r-slow" for c in running_calls.now().values())  # returned: not recorded


async def test_a_call_that_raises_is_no_longer_recorded() -> None:
    calls = RunningCalls()
    fn = live("def main(ctx):\n    raise KeyError('no')\n")
    with pytest.raises(KeyError):
        calls.run(fn, Context("GET", "/", {}, {}, b"", "dev", fn.info, {}, Log(), "r-1"))
    assert calls.now() == {}


async def test_a_timeout_error_raised_by_the_function_is_a_500() -> None:
    outcome = await call(live("async def main(ctx):\n    raise TimeoutError('upstream')\n"))
    assert outcome.status == 500


async def test_log_lines_are_kept_per_function_in_a_ring() -> None:
    fn = live(
        "def main(ctx):\n    ctx.log('hello', ctx.request_id)\n    ctx.log.error('bad')\n    return 'ok'\n"
    )
    logs = InvocationLogs(per_function=3)
    for i in range(5):
        outcome = await call(fn, logs=logs, request_id=f"r{i}")
    assert outcome.lines == ["hello r4", "ERROR bad"]
    recent = logs.recent("demo", "dev/user/me")
    assert [e.request_id for e in recent] == ["r2", "r3", "r4"]
    assert recent[-1].lines == ["hello r4", "ERROR bad"]
    assert recent[-1].status == 200 and recent[-1].version == 7 and recent[-1].duration_ms >= 0
    assert logs.recent("demo", "dev/other") == []


async def test_the_entry_of_an_invocation_that_logged_nothing_is_left_to_reference_counting() -> None:
    """A cell keeps thousands of entries a second under load (the recent ring; the durable logs'
    outbox keeps their fields as columns): each one the collector tracks is promoted from generation to generation until a full
    collection walks them all. An entry of atomic values is untracked at its first collection."""
    logs = InvocationLogs(outbox=10)
    await call(live("async def main(ctx):\n    return {'a': 1}\n"), logs=logs, request_id="quiet")
    await call(live("async def main(ctx):\n    ctx.log('hi')\n    return {}\n"), logs=logs, request_id="loud")
    logs.drain()
    quiet, loud = logs._kept["demo", "dev/user/me"].ring  # the entries `recent` names when read
    # gc.collect() returns at once, collecting nothing, while another thread of this process is
    # mid-collection (CPython's `collecting` flag): the test failed now and then in a busy run; an entry
    # holding anything but atomic values is never untracked, however often it is tried
    for _ in range(50):
        gc.collect()
        if not gc.is_tracked(quiet):
            break
        time.sleep(0.01)
    assert quiet[0] == "quiet" and not gc.is_tracked(quiet)
    assert loud[5] == ["hi"] and gc.is_tracked(loud)  # a list of lines: tracked, as it must be
    assert [e.request_id for e in logs.recent("demo", "dev/user/me")] == ["quiet", "loud"]  # named


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_invoke_finds_its_task_as_asyncio_does(loop_kind: str) -> None:
    """`invoke` reads the running task from asyncio's own table, without asyncio.current_task's frame;
    a Python whose tasks no longer fill that table would silently fall back to a timer per call."""
    import asyncio

    import uvloop

    from fnstage.runtime import invoker

    async def both() -> tuple[object, object]:
        return invoker.RUNNING_TASKS.get(asyncio.get_running_loop()), asyncio.current_task()

    run = uvloop.run if loop_kind == "uvloop" else asyncio.run
    found, expected = run(both())
    assert expected is not None and found is expected


async def test_a_log_the_function_set_without_reading_ctx_log_is_the_one_kept() -> None:
    """`ctx.log` is kept in the ctx itself, no dict (`RequestContext`): a log the function set is the
    one whose lines are kept, as one it read; None or a deleted one keeps none."""
    setter = live(
        "from fnstage import sdk\n"
        "async def main(ctx):\n"
        "    mine = sdk.Log()\n"
        "    mine('mine')\n"
        "    ctx.log = mine\n"
        "    return [ctx.log is mine, ctx.trigger, ctx.method, ctx.env, ctx.function.version]\n"
    )
    outcome = await call(setter)
    assert json.loads(outcome.body) == [True, None, "GET", "dev", 7] and outcome.lines == ["mine"]
    for body in ("ctx.log('x')\n    ctx.log = None\n", "ctx.log('x')\n    del ctx.log\n"):
        outcome = await call(live(f"async def main(ctx):\n    {body}    return 1\n"))
        assert outcome.status == 200 and not outcome.lines


def test_the_version_headers_made_once_are_bounded_and_right(monkeypatch: pytest.MonkeyPatch) -> None:
    """`x-fnstage-version` as ASGI sends it is made once per version and kept, within a bound."""
    from fnstage.runtime import invoker

    monkeypatch.setattr(invoker, "_VERSION_HEADERS", {})
    monkeypatch.setattr(invoker, "_VERSION_HEADERS_SIZE", 3)
    for version in (1, 2, 3, 4, 12, 2**31 - 1, 4):
        header = invoker._VERSION_HEADERS.get(version) or invoker._version_header(version)
        assert header == (b"x-fnstage-version", str(version).encode())
        assert len(invoker._VERSION_HEADERS) <= 3
    assert invoker._VERSION_HEADERS.get(4) is header  # kept: the same tuple again


def test_a_functions_header_values_go_out_as_utf8_as_granian_sends_an_rsgi_cells() -> None:
    """A client gets the same bytes from a cell of either interface: RSGI takes text, which granian
    sends as UTF-8; the ASGI path sent latin-1 (`é` as `\\xe9`) before cells spoke RSGI by default."""
    headers = response_headers(live("def main(ctx):\n    return 1\n"), [("x-word", "café")], b"", "r1")
    assert headers[0] == (b"x-word", "café".encode())
