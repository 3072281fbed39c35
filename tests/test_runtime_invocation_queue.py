"""The invocations `invoke` queues (`InvocationLogs.pending`) and takes in bulk when read: every read sees
what `record` of each would have kept and counted, the ring, the outbox (its bound and drops), the
counts and the metrics, whatever the mix of functions, versions, statuses and durations."""

from __future__ import annotations

import gc
import random
import threading
from typing import Any

import pytest

from fnstage.runtime.invoker import DRAIN_AT, NO_LINES, PENDING_FIELDS, InvocationLogs
from fnstage.runtime.request_metrics import BUCKETS, RequestMetrics

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def invocations(count: int, functions: int, seed: int) -> list[tuple[str, str, Any, float]]:
    """`count` invocations of `functions` functions (two gateways), interleaved, with new versions
    going live and older ones still answering, failures, odd statuses and every latency bucket."""
    rng = random.Random(seed)
    versions = dict.fromkeys(range(functions), 3)
    out = []
    for n in range(count):
        f = rng.randrange(functions)
        if rng.random() < 0.01:
            versions[f] += 1
        version = versions[f] - (rng.random() < 0.05)
        status = rng.choice([200, 200, 200, 201, 404, 500, 504, 99, 600])
        error = rng.choice([None] * 8 + ["boom\ntrace", ""])
        seconds = rng.choice([0.0001, 0.0004, *BUCKETS, *(b * 1.0001 for b in BUCKETS), 99.0])
        entry = (f"r{n}", 1.0 + n, version, status, seconds * 1000, NO_LINES, error, None)
        out.append((f"g{f % 2}", f"dev/f{f}", entry, seconds))
    return out


def queue(logs: InvocationLogs, gateway: str, name: str, entry: Any, seconds: float) -> None:
    """What `invoke` does for the app's request."""
    logs.pending += (gateway, name, *entry, seconds)
    if len(logs.pending) >= DRAIN_AT:
        logs.drain()


def rows(logs: InvocationLogs) -> list[tuple[str, str, Any]]:
    """`take_outbox`'s columns as (gateway, name, entry) rows."""
    (gateways, names, *fields), _ = logs.take_outbox()
    return list(zip(gateways, names, zip(*fields, strict=True), strict=True))


def observed(logs: InvocationLogs, metrics: RequestMetrics, names: set[tuple[str, str]]) -> Any:
    return (
        {key: logs.recent(*key) for key in sorted(names)},
        logs.take_counts(),
        logs.take_outbox(),
        sorted(metrics.take()),  # rows in any order: the supervisor adds them up, /metrics sorts
    )


@pytest.mark.parametrize(("functions", "reads"), [(1, 0), (3, 0), (3, 7), (40, 0), (40, 300)])
def test_queued_invocations_read_as_if_each_had_been_recorded(functions: int, reads: int) -> None:
    """Queued and drained in bulk (at `DRAIN_AT`, and by reads every `reads` invocations) against
    `record` of each: the same rings, counts, outbox with its drops, and metrics to the last bit of
    the seconds' sum. One function, a few (a pass each), many (a step each)."""
    items = invocations(5000, functions, seed=functions + reads)
    names = {(g, n) for g, n, _, _ in items}
    queued, recorded = (
        InvocationLogs(per_function=50, outbox=3000),
        InvocationLogs(per_function=50, outbox=3000),
    )
    queued_metrics, recorded_metrics = RequestMetrics(), RequestMetrics()
    queued.count_into(queued_metrics)
    results: list[Any] = [[], []]
    for n, (gateway, name, entry, seconds) in enumerate(items, start=1):
        queue(queued, gateway, name, entry, seconds)
        recorded.record(gateway, name, entry, True, recorded_metrics, seconds)
        if reads and n % reads == 0:
            results[0].append(observed(queued, queued_metrics, names))
            results[1].append(observed(recorded, recorded_metrics, names))
    results[0].append(observed(queued, queued_metrics, names))
    results[1].append(observed(recorded, recorded_metrics, names))
    assert results[0] == results[1]
    assert results[0][-1][2][1] > 0 or reads  # a full outbox dropped some, counted alike


def test_a_read_sees_what_was_queued_before_it() -> None:
    logs, metrics = InvocationLogs(outbox=10), RequestMetrics()
    logs.count_into(metrics)
    queue(logs, "g", "dev/a", ("r1", 1.0, 2, 200, 0.1, NO_LINES, None, None), 0.0001)
    assert [e.request_id for e in logs.recent("g", "dev/a")] == ["r1"]
    queue(logs, "g", "dev/a", ("r2", 1.0, 2, 500, 0.1, NO_LINES, "boom", None), 0.0001)
    [counts] = logs.take_counts()
    assert (counts.requests, counts.errors, counts.last_error) == (2, 1, "boom")
    queue(logs, "g", "dev/a", ("r3", 1.0, 2, 200, 0.1, NO_LINES, None, None), 0.0001)
    [row] = metrics.take()
    assert row[:3] == ["g", "dev/a", 2] and row[3:8] == [0, 2, 0, 0, 1]
    (gateways, names, *fields), dropped = logs.take_outbox()
    assert list(zip(*fields, strict=True))[1] == ("r2", 1.0, 2, 500, 0.1, NO_LINES, "boom", None)
    assert fields[0] == ["r1", "r2", "r3"] and dropped == 0
    assert gateways == ["g"] * 3 and names == ["dev/a"] * 3
    assert len(PENDING_FIELDS) * 3 > len(logs.pending) == 0


def test_the_queue_stays_bounded_without_readers() -> None:
    logs = InvocationLogs()
    for n in range(3 * DRAIN_AT):
        queue(logs, "g", "dev/a", (f"r{n}", 1.0, 1, 200, 0.1, NO_LINES, None, None), 0.0001)
        assert len(logs.pending) < DRAIN_AT


def test_the_shipping_thread_takes_every_invocation_once_while_the_loop_queues() -> None:
    """`take_outbox` on another thread while invocations are queued: none lost, none twice."""
    logs = InvocationLogs(outbox=10**6)
    taken: list[Any] = []
    done = threading.Event()

    def ship() -> None:
        while not done.is_set():
            taken.extend(rows(logs))
        taken.extend(rows(logs))

    shipper = threading.Thread(target=ship)
    shipper.start()
    for n in range(50_000):
        queue(logs, "g", f"dev/f{n % 3}", (f"r{n}", 1.0, 1, 200, 0.1, NO_LINES, None, None), 0.0001)
    done.set()
    shipper.join()
    assert sorted(int(e[0][1:]) for _, _, e in taken) == list(range(50_000))
    assert all(name == f"dev/f{int(e[0][1:]) % 3}" for _, name, e in taken)  # each with its own name


def test_the_outbox_keeps_a_drains_columns_not_an_object_an_invocation() -> None:
    """A drain hands the outbox its gateways, names and the entries' fields as the lists they are: no
    tuple an invocation for the collector to track (thousands a second under load), and the shipping
    thread takes them as columns, in order. The ring's entries are the only ones made: a function's
    newest `per_function` of the drain."""
    logs = InvocationLogs(per_function=10, outbox=10_000)
    for n in range(3000):  # `queue` drains every DRAIN_AT: the last drain below takes the rest
        queue(logs, "g", "dev/a", (f"r{n}", 1.0, 1, 200, 0.1, NO_LINES, None, None), 0.0001)
    assert len(logs.pending) > 500 * len(PENDING_FIELDS)
    gc.collect()
    gc.disable()
    try:
        before = len(gc.get_objects())
        logs.drain()
        made = len(gc.get_objects()) - before
    finally:
        gc.enable()
    assert made < 50
    (gateways, names, *fields), dropped = logs.take_outbox()
    assert fields[0] == [f"r{n}" for n in range(3000)] and dropped == 0
    assert all(len(field) == 3000 for field in fields)
    assert gateways == ["g"] * 3000 and names == ["dev/a"] * 3000
