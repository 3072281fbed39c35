"""A runtime's Prometheus metrics, kept by its supervisor and served on a port of their own.

Cells count their requests cheaply (`runtime.request_metrics`) and send what they counted every few
seconds over their channel; the supervisor adds it here, with what it sees itself: loads and load
failures with their duration, publish -> live latency, cell restarts and quarantines. The totals are
the supervisor's, so a cell that dies and comes back does not reset them (what a dead cell counted in
its last seconds, before sending it, is lost).

Label sets stay bounded: request series exist only for the version of a function that is live here,
or the one after it (counted before the supervisor heard it went live). A version that stops serving
(replaced, removed) drops out; a report for any other name or version is refused, so not even a cell
whose function code forges its reports can grow them. Load, restart and quarantine series are per
(gateway, environment). Canary series (issue 14: share, each side's requests and errors) exist only
for the canaries running on what this runtime serves, read from the store, and drop out once decided.

`serve_metrics` answers `GET /metrics` on its own address (`--metrics-port`, loopback by default), not
on the functions' port: the exporter convention, which keeps the public port free of it and leaves
who may scrape to where it listens (see README, "Metrics").
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from fnstage.runtime.request_metrics import BUCKETS, STATUS_CLASSES, Key, parse_row

if TYPE_CHECKING:
    from fnstage.runtime.split_follower import CanaryState

logger = logging.getLogger("fnstage.runtime")

LOAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)
LIVE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_LABELS = ("gateway", "env", "function", "version")
_SLOT = ("gateway", "env")


class _Counted:
    """One version's totals: requests per status class, failures, seconds, per bucket."""

    __slots__ = ("buckets", "by_class", "failures", "seconds")

    def __init__(self) -> None:
        self.by_class = [0] * len(STATUS_CLASSES)
        self.failures = 0
        self.seconds = 0.0
        self.buckets = [0] * (len(BUCKETS) + 1)


def _labels(key: Key) -> list[str]:
    gateway, name, version = key
    env, _, function = name.partition("/")
    return [gateway, env, function, str(version)]


class RuntimeMetrics:
    """Totals of one runtime; `live_version(gateway, name)` says which version serves a name now."""

    def __init__(self, live_version: Callable[[str, str], int | None]) -> None:
        self.live_version = live_version
        self.registry = CollectorRegistry(auto_describe=True)
        self._lock = threading.Lock()
        self._requests: dict[Key, _Counted] = {}
        self._in_flight: dict[tuple[str, ...], int] = {}  # per cell (gateway, env, lock)
        self.loads = Counter(
            "fnstage_loads", "Function versions loaded into cells", _SLOT, registry=self.registry
        )
        self.load_failures = Counter(
            "fnstage_load_failures", "Function versions that failed to load", _SLOT, registry=self.registry
        )
        self.load_seconds = Histogram(
            "fnstage_load_duration_seconds",
            "Time a cell took to load a function version, failed ones too (not those cut off by its limit)",
            _SLOT,
            buckets=LOAD_BUCKETS,
            registry=self.registry,
        )
        self.publish_to_live = Histogram(
            "fnstage_publish_to_live_seconds",
            "From the commit that published a version to the version live here (the store's clock)",
            _SLOT,
            buckets=LIVE_BUCKETS,
            registry=self.registry,
        )
        self.cell_restarts = Counter(
            "fnstage_cell_restarts", "Cells restarted after they died", _SLOT, registry=self.registry
        )
        self.quarantines = Counter(
            "fnstage_quarantines",
            "Function versions quarantined: their load killed the cell twice",
            _SLOT,
            registry=self.registry,
        )
        self.registry.register(_RequestCollector(self))

    # what cells send (their reader threads) -------------------------------------------------------
    def add_cell(self, slot: tuple[str, ...], rows: Any, in_flight: Any) -> None:
        """A cell's counts since its last report; believed only for its own gateway and environment."""
        gateway, env = slot[:2]
        parsed = [parse_row(row) for row in rows] if isinstance(rows, list) else [None]
        if any(p is None for p in parsed) or type(in_flight) is not int or in_flight < 0:
            raise ValueError("metrics that do not fit")
        with self._lock:
            self._in_flight[slot] = in_flight
            for item in parsed:
                assert item is not None
                key, by_class, failures, seconds, buckets = item
                if key[0] != gateway or not key[1].startswith(f"{env}/"):
                    continue
                live = self.live_version(key[0], key[1])
                if live is None or not live <= key[2] <= live + 1:
                    # older: a request that began on the version before, which has dropped out; a name
                    # not live here, or a version far ahead: refused, so no cell can grow the label sets
                    continue
                counted = self._requests.get(key)
                if counted is None:
                    counted = self._requests[key] = _Counted()
                for i, n in enumerate(by_class):
                    counted.by_class[i] += n
                counted.failures += failures
                counted.seconds += seconds
                for i, n in enumerate(buckets):
                    counted.buckets[i] += n
            self._prune()

    def forget_cell(self, slot: tuple[str, ...]) -> None:
        with self._lock:
            self._in_flight.pop(slot, None)

    # what the supervisor sees ---------------------------------------------------------------------
    def loaded(self, gateway: str, name: str, seconds: float) -> None:
        env = name.split("/", 1)[0]
        self.loads.labels(gateway, env).inc()
        self.load_seconds.labels(gateway, env).observe(seconds)

    def loaded_many(self, loads: list[tuple[str, str, float]]) -> None:
        """`loaded` of each (gateway, name, seconds): a warm-up's batch (`cells.CellSet._warmed`),
        thousands at a time, with a label set's children looked up once per run of them."""
        last: tuple[str, str] | None = None
        count = histogram = None
        for gateway, name, seconds in loads:
            slot = (gateway, name.split("/", 1)[0])
            if slot != last:
                last, count, histogram = slot, self.loads.labels(*slot), self.load_seconds.labels(*slot)
            assert count is not None and histogram is not None
            count.inc()
            histogram.observe(seconds)

    def load_failed(self, gateway: str, name: str, seconds: float | None) -> None:
        env = name.split("/", 1)[0]
        self.load_failures.labels(gateway, env).inc()
        if seconds is not None:
            self.load_seconds.labels(gateway, env).observe(seconds)

    def live_after_publish(self, gateway: str, name: str, seconds: float) -> None:
        self.publish_to_live.labels(gateway, name.split("/", 1)[0]).observe(max(0.0, seconds))

    def cell_restarted(self, slot: tuple[str, ...]) -> None:
        self.cell_restarts.labels(*slot[:2]).inc()

    def quarantined(self, gateway: str, name: str) -> None:
        self.quarantines.labels(gateway, name.split("/", 1)[0]).inc()

    def watch_canaries(self, states: Callable[[], list[CanaryState]]) -> None:
        """Export the running canaries `states()` gives at each scrape (the split follower's)."""
        self.registry.register(_CanaryCollector(states))

    # exposition -----------------------------------------------------------------------------------
    def render(self) -> bytes:
        """The text format (version 0.0.4) that Prometheus scrapes."""
        return generate_latest(self.registry)

    def series(self) -> int:
        """How many request label sets are kept now (what a test of boundedness counts)."""
        with self._lock:
            self._prune()
            return len(self._requests)

    def _prune(self) -> None:
        """Drop versions that stopped serving: older than the live one, or of a name with nothing live
        (removed)."""
        for key in [k for k in self._requests if self._stale(k)]:
            del self._requests[key]

    def _stale(self, key: Key) -> bool:
        live = self.live_version(key[0], key[1])
        return live is None or key[2] < live

    def _snapshot(self) -> tuple[list[tuple[list[str], _Counted]], dict[tuple[str, ...], int]]:
        with self._lock:
            self._prune()
            rows = []
            for key, counted in sorted(self._requests.items()):
                copy = _Counted()
                copy.by_class = list(counted.by_class)
                copy.failures = counted.failures
                copy.seconds = counted.seconds
                copy.buckets = list(counted.buckets)
                rows.append((_labels(key), copy))
            return rows, dict(self._in_flight)


class _RequestCollector:
    """The request series, built at each scrape from the totals (no per-request cost)."""

    def __init__(self, metrics: RuntimeMetrics) -> None:
        self.metrics = metrics

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        rows, in_flight = self.metrics._snapshot()
        requests = CounterMetricFamily(
            "fnstage_requests", "Requests answered, by status class", labels=[*_LABELS, "status"]
        )
        failures = CounterMetricFamily(
            "fnstage_function_errors",
            "Requests whose function raised or ran out of time (not an HTTPError it chose)",
            labels=list(_LABELS),
        )
        latency = HistogramMetricFamily(
            "fnstage_request_duration_seconds",
            "Time from the request's arrival in its cell to its answer",
            labels=list(_LABELS),
        )
        for labels, counted in rows:
            for klass, n in zip(STATUS_CLASSES, counted.by_class, strict=True):
                if n:
                    requests.add_metric([*labels, klass], n)
            failures.add_metric(labels, counted.failures)
            cumulative, buckets = 0, []
            for bound, n in zip([*map(_le, BUCKETS), "+Inf"], counted.buckets, strict=True):
                cumulative += n
                buckets.append((bound, cumulative))
            latency.add_metric(labels, buckets, counted.seconds)
        gauge = GaugeMetricFamily(
            "fnstage_requests_in_flight",
            "Requests a cell was answering at its last report (every few seconds)",
            labels=list(_SLOT),
        )
        per_env: dict[tuple[str, ...], int] = {}  # a (gateway, env) may have a cell per lock
        for slot, n in in_flight.items():
            per_env[slot[:2]] = per_env.get(slot[:2], 0) + n
        for key, n in sorted(per_env.items()):
            gauge.add_metric(list(key), n)
        yield requests
        yield failures
        yield latency
        yield gauge


class _CanaryCollector:
    """Running canaries here: their share, this runtime's requests and errors per side and version."""

    def __init__(self, states: Callable[[], list[CanaryState]]) -> None:
        self.states = states

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        labels = ["gateway", "env", "function"]
        running = GaugeMetricFamily(
            "fnstage_canary_running", "1 while a canary of the function runs (decided: gone)", labels=labels
        )
        share = GaugeMetricFamily(
            "fnstage_canary_share_percent", "Percent of requests the canary's version is given", labels=labels
        )
        arm_labels = [*labels, "arm", "version"]
        requests = CounterMetricFamily(
            "fnstage_canary_requests",
            "Requests of a canary's side (stable or canary) here since its cells began splitting",
            labels=arm_labels,
        )
        errors = CounterMetricFamily(
            "fnstage_canary_errors",
            "Failed requests of a canary's side here (what the judge compares)",
            labels=arm_labels,
        )
        for state in sorted(self.states(), key=lambda s: (s.gateway, s.name)):
            env, _, function = state.name.partition("/")
            which = [state.gateway, env, function]
            running.add_metric(which, 1)
            share.add_metric(which, state.share)
            for arm, version, counts in (
                ("stable", state.stable_version, state.stable),
                ("canary", state.canary_version, state.canary),
            ):
                requests.add_metric([*which, arm, str(version)], counts.requests)
                errors.add_metric([*which, arm, str(version)], counts.errors)
        yield running
        yield share
        yield requests
        yield errors


def _le(bound: float) -> str:
    return repr(float(bound))


def serve_metrics(metrics: RuntimeMetrics, host: str, port: int) -> Any:
    """Answer `GET /metrics` on host:port from a thread of its own; returns the server (`shutdown()`)."""
    from prometheus_client import start_http_server

    server, _ = start_http_server(port, addr=host, registry=metrics.registry)
    logger.info("runtime: metrics at http://%s:%d/metrics", host, server.server_port)
    return server
