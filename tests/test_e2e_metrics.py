"""Metrics as Prometheus reads them: a real `fnstage up` with its metrics ports, scraped over HTTP and
parsed with prometheus_client's own parser, while functions are called and saved."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from fnstage.testing import UpProcess, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

FUNCTION = """def main(ctx):
    if ctx.query.get("fail"):
        raise KeyError("boom")
    return {"save": %d}
"""


class Metered:
    def __init__(self, up: UpProcess, api_port: int, runtime_port: int) -> None:
        self.up = up
        self.api_metrics = f"http://127.0.0.1:{api_port}/metrics"
        self.runtime_metrics = f"http://127.0.0.1:{runtime_port}/metrics"


@pytest.fixture(scope="module")
def metered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Metered]:
    api_port, runtime_port = free_port(), free_port()
    args = ["--metrics-port", str(api_port), "--runtime-metrics-port", str(runtime_port)]
    with UpProcess(tmp_path_factory.mktemp("up"), extra_args=args) as up:
        with up.client() as client:
            assert client.post("/api/v1/gateways", json={"id": "demo"}).status_code == 201
        yield Metered(up, api_port, runtime_port)


def scrape(url: str) -> Samples:
    answer = httpx.get(url, timeout=10)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    out: Samples = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def key(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return (name, tuple(sorted(labels.items())))


def save(up: UpProcess, name: str, n: int, client: httpx.Client | None = None) -> int:
    with up.client() if client is None else contextlib.nullcontext(client) as api:
        answer = api.put(
            f"/api/v1/gateways/demo/functions/{name}", json={"files": {"index.py": FUNCTION % n}}
        )
    assert answer.status_code in (200, 201), answer.text
    return int(answer.json()["function"]["version"])


def call(up: UpProcess, path: str) -> httpx.Response:
    return httpx.get(f"{up.runtime_url}{path}", headers={"Host": "demo.dev.localhost"}, timeout=30)


def until(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError("not seen in time")


def live_version(up: UpProcess, path: str, version: int) -> bool:
    answer = call(up, path)
    return answer.status_code == 200 and answer.headers.get("x-fnstage-version") == str(version)


def test_prometheus_parses_both_and_the_histogram_moves_with_requests(metered: Metered) -> None:
    up = metered.up
    version = save(up, "dev/metered", 1)
    until(lambda: live_version(up, "/metered", version))
    labels = {"gateway": "demo", "env": "dev", "function": "metered", "version": str(version)}
    count = key("fnstage_request_duration_seconds_count", **labels)
    until(lambda: count in scrape(metered.runtime_metrics))  # the call above, reported
    before = scrape(metered.runtime_metrics)
    for _ in range(10):
        assert call(up, "/metered").status_code == 200
    assert call(up, "/metered?fail=1").status_code == 500
    until(lambda: scrape(metered.runtime_metrics)[count] == before[count] + 11)
    after = scrape(metered.runtime_metrics)
    inf = key("fnstage_request_duration_seconds_bucket", **labels, le="+Inf")
    assert after[inf] == before[inf] + 11
    assert (
        after[key("fnstage_request_duration_seconds_sum", **labels)]
        > before[key("fnstage_request_duration_seconds_sum", **labels)]
    )
    errors = key("fnstage_function_errors_total", **labels)
    assert after[errors] == before[errors] + 1
    assert after[key("fnstage_requests_total", **labels, status="5xx")] == 1
    slot = {"gateway": "demo", "env": "dev"}
    assert after[key("fnstage_loads_total", **slot)] >= 1
    assert after[key("fnstage_publish_to_live_seconds_count", **slot)] >= 1
    assert key("fnstage_requests_in_flight", **slot) in after
    # the API's own, by route template (never by the path asked for)
    api = scrape(metered.api_metrics)
    route = "/api/v1/gateways/{gateway}/functions/{env}/{base:path}"
    saved = [
        v
        for (n, labels_), v in api.items()
        if n == "fnstage_api_requests_total" and ("route", route) in labels_
    ]
    assert saved and sum(saved) >= 1, sorted({dict(ls).get("route") for (_, ls) in api})


def test_label_sets_stay_bounded_after_a_thousand_saves(metered: Metered) -> None:
    up = metered.up
    version = 0
    with up.client() as client:
        for n in range(1000):
            version = save(up, "dev/churn", n, client)
            if n % 10 == 0:  # requests on a hundred of the thousand versions, each leaving its labels
                call(up, "/churn")
    until(lambda: live_version(up, "/churn", version))
    call(up, "/churn")

    def reported() -> bool:
        versions = {
            dict(labels)["version"]
            for (name, labels) in scrape(metered.runtime_metrics)
            if name == "fnstage_request_duration_seconds_count" and ("function", "churn") in labels
        }
        return versions == {str(version)}

    until(reported)  # only the live version's series: the 99 others dropped out
    everything = scrape(metered.runtime_metrics)
    churn = [labels for (_, labels) in everything if ("function", "churn") in labels]
    # one version: requests by status (1), errors (1), histogram buckets (16) + count + sum
    assert len(churn) <= 20, len(churn)
    assert len(everything) < 200


def test_a_production_runtime_of_one_cell_serves_its_metrics_on_their_port(tmp_path: Path) -> None:
    from fnstage.service import Actor, Services
    from fnstage.store.engine import sqlite_url
    from fnstage.store.store import Store
    from fnstage.testing import RuntimeServer

    store = Store.open(sqlite_url(tmp_path))
    with store.write() as tx:
        user = tx.create_user("ada", is_admin=True)
    actor = Actor(user.id, user.name, True)
    services = Services.create(store)
    services.gateways.create(actor, "demo")
    services.deployments.save(actor, "demo", "dev/user/me", {"index.py": FUNCTION % 1})
    metrics_port = free_port()
    runtime = RuntimeServer(sqlite_url(tmp_path), "demo", tmp_path / "runtime.log", env="dev")
    runtime.args += ["--metrics-port", str(metrics_port)]
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    with runtime:
        until(lambda: httpx.get(f"{runtime.url}/dev/user/me").status_code == 200)
        assert httpx.get(f"{runtime.url}/metrics").status_code == 404  # never on the functions' port
        labels = {"gateway": "demo", "env": "dev", "function": "user/me", "version": "1"}
        count = key("fnstage_request_duration_seconds_count", **labels)
        until(lambda: scrape(url).get(count) == 1)
        assert scrape(url)[key("fnstage_loads_total", gateway="demo", env="dev")] == 1
    store.close()
