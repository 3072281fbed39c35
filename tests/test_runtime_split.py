"""A canary split inside the runtime app (`runtime.split` through `RuntimeApp`): which side a request
gets, stickiness by key header or cookie, and what is counted per side for the judge and /metrics."""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx
import pytest

from fnstage.build import build
from fnstage.domain.canary import BUCKETS_MS
from fnstage.runtime.app import RuntimeApp
from fnstage.runtime.invoker import InvocationLogs
from fnstage.runtime.loader import LiveVersion, load_function
from fnstage.runtime.registry import Registry
from fnstage.runtime.request_metrics import BUCKETS, RequestMetrics
from fnstage.runtime.router import Router
from fnstage.runtime.split import Split
from fnstage.runtime.versions import ExtraVersions, VersionUnavailable

pytestmark = pytest.mark.anyio

STABLE = "async def main(ctx):\n    return {'side': 'stable'}\n"
CANARY = "async def main(ctx):\n    return {'side': 'canary'}\n"
SLOW_CANARY = "import asyncio\n\nasync def main(ctx):\n    await asyncio.sleep(0.025)\n    return 'slow'\n"
BROKEN_CANARY = "async def main(ctx):\n    raise RuntimeError('regression')\n"
KEY = ("demo", "prod/user/me")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def live(code: str, version: int) -> LiveVersion:
    bundle = build({"index.py": code}, "index.py")
    return load_function(
        "prod/user/me", version, f"1.0.{version}", "index.py", bundle.compiled, bundle.files, gateway="demo"
    )


def split_app(canary_code: str = CANARY, share: int = 30, *, loadable: bool = True) -> RuntimeApp:
    registry = Registry()
    registry.apply(live(STABLE, 1))
    canary = live(canary_code, 2)

    async def fetch(gateway: str, name: str, version: int) -> LiveVersion:
        if not loadable:
            raise VersionUnavailable(503, "cannot load it")
        assert (gateway, name, version) == (*KEY, 2)
        return canary

    app = RuntimeApp(
        registry,
        Router(),
        versions=ExtraVersions(fetch),
        metrics=RequestMetrics(),
        logs=InvocationLogs(),
    )
    app.set_splits({KEY: Split(stable=1, canary=2, share=share)})
    return app


def client(app: RuntimeApp) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://demo.prod.localhost")


async def test_requests_without_a_key_split_by_share_and_name_their_version() -> None:
    app = split_app(share=30)
    async with client(app) as http:
        answers = [await http.get("/user/me") for _ in range(400)]
    sides = Counter((r.headers["x-fnstage-version"], r.json()["side"]) for r in answers)
    assert set(sides) == {("1", "stable"), ("2", "canary")}
    assert 0.2 < sides[("2", "canary")] / len(answers) < 0.4


async def test_a_key_header_or_cookie_keeps_a_client_on_its_side() -> None:
    app = split_app(share=50)
    async with client(app) as http:
        for n in range(20):
            by_header = {
                (await http.get("/user/me", headers={"x-fnstage-key": f"client-{n}"})).headers[
                    "x-fnstage-version"
                ]
                for _ in range(5)
            }
            cookie = {"cookie": f"theme=dark; fnstage-key=client-{n}"}
            by_cookie = {
                (await http.get("/user/me", headers=cookie)).headers["x-fnstage-version"] for _ in range(5)
            }
            assert len(by_header) == 1 and by_header == by_cookie  # the same key: the same side
        # the header wins over the cookie; an empty header falls back to the cookie
        both = {"x-fnstage-key": "client-1", "cookie": "fnstage-key=client-2"}
        only_cookie = {"x-fnstage-key": "", "cookie": "fnstage-key=client-2"}
        one = (await http.get("/user/me", headers={"x-fnstage-key": "client-1"})).headers["x-fnstage-version"]
        two = (await http.get("/user/me", headers={"x-fnstage-key": "client-2"})).headers["x-fnstage-version"]
        assert (await http.get("/user/me", headers=both)).headers["x-fnstage-version"] == one
        assert (await http.get("/user/me", headers=only_cookie)).headers["x-fnstage-version"] == two


async def test_each_side_is_counted_apart_for_the_judge_and_for_metrics() -> None:
    app = split_app(BROKEN_CANARY, share=40)
    async with client(app) as http:
        answers = [await http.get("/user/me") for _ in range(200)]
    by_version = Counter(r.headers["x-fnstage-version"] for r in answers)
    failed = sum(1 for r in answers if r.status_code == 500)
    assert failed == by_version["2"] > 0
    taken = {row[2]: row for row in _take(app)}
    assert set(taken) == {1, 2}
    for version, row in taken.items():
        _, _, _, requests, errors, latency = row
        assert requests == by_version[str(version)] == sum(latency)
        assert errors == (failed if version == 2 else 0)
    assert app.metrics is not None
    metered = {row[2]: row for row in app.metrics.take()}
    assert metered[2][3 + 4] == metered[2][3 + 5] == by_version["2"]  # 5xx, and failures
    assert metered[1][3 + 1] == by_version["1"] and metered[1][3 + 5] == 0  # 2xx, no failures
    # the environment's own counts (its status) are the live version's requests only
    counts = app.logs.take_counts()
    assert [(c.version, c.requests, c.errors) for c in counts] == [(1, by_version["1"], 0)]

    assert app.split_stats.take() == []  # nothing new since
    more: Counter[str] = Counter()
    async with client(app) as http:
        while not more["1"]:
            more[(await http.get("/user/me")).headers["x-fnstage-version"]] += 1
    again = {row[2]: row for row in app.split_stats.take()}  # the sides that answered since: totals
    assert set(again) == ({1, 2} if more["2"] else {1})
    assert again[1][3] == by_version["1"] + 1


async def test_a_side_is_timed_by_what_its_function_took() -> None:
    app = split_app(SLOW_CANARY, share=50)
    async with client(app) as http:
        for _ in range(40):
            await http.get("/user/me")
    rows = {row[2]: row for row in _take(app)}
    slow_latency: list[int] = rows[2][5]
    fast_latency: list[int] = rows[1][5]
    at_least_20ms = BUCKETS_MS.index(20)
    assert sum(slow_latency[: at_least_20ms + 1]) == 0 and sum(slow_latency) == rows[2][3]
    assert sum(fast_latency[at_least_20ms:]) < rows[1][3]
    assert app.metrics is not None
    metered = {row[2]: row for row in app.metrics.take()}
    seconds = metered[2][3 + 6]
    assert seconds >= 0.025 * rows[2][3]
    assert len(metered[2]) == 3 + 7 + len(BUCKETS) + 1


async def test_a_version_url_or_another_live_version_is_never_split() -> None:
    app = split_app(share=99)
    async with client(app) as http:
        pinned = [(await http.get("/_v/1/user/me")).headers["x-fnstage-version"] for _ in range(30)]
        assert set(pinned) == {"1"}
        app.registry.apply(live(STABLE, 3))  # the canary was decided: a new live version
        after = [(await http.get("/user/me")).headers["x-fnstage-version"] for _ in range(30)]
        assert set(after) == {"3"}
    rows = _take(app)
    assert all(row[2] in (1, 2) for row in rows) and sum(row[3] for row in rows) == 0


async def test_a_canary_that_cannot_load_is_charged_a_failure_and_stable_answers() -> None:
    app = split_app(share=99, loadable=False)
    async with client(app) as http:
        answers = [await http.get("/user/me") for _ in range(20)]
    assert {(r.status_code, r.headers["x-fnstage-version"]) for r in answers} == {(200, "1")}
    rows = {row[2]: row for row in app.split_stats.take()}
    assert rows[2][4] == rows[2][3] > 0  # every request sent its way counted as a failure


def _take(app: Any) -> list[list[Any]]:
    """The split's rows (gateway, name, version, requests, errors, latency buckets), typed for reading."""
    rows: list[list[Any]] = app.split_stats.take()
    return rows


async def test_counts_not_yet_sent_when_the_canary_is_decided_are_sent_once_after() -> None:
    """A cell sends its split counts once a second; a canary decided in between (its split removed)
    dropped what its sides had answered since the last report, so the judge's record of the canary
    lacked them (and a runtime whose first report came after the decision was never counted)."""
    app = split_app(BROKEN_CANARY, share=50)
    async with client(app) as http:
        answers = [await http.get("/user/me") for _ in range(60)]
    by_version = Counter(r.headers["x-fnstage-version"] for r in answers)
    assert by_version["2"] > 0
    app.set_splits({})  # decided before the cell's next report
    last = {row[2]: row[3] for row in _take(app)}
    assert last == {1: by_version["1"], 2: by_version["2"]}
    assert _take(app) == []  # said once: the decided canary's sides are forgotten after
