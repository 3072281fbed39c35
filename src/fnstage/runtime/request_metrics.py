"""Request metrics as a cell keeps them: plain integers in a dict, on the hot path.

A cell cannot be scraped (it has no port of its own behind the front, and nothing in it should answer
a monitoring system), so it only counts: per (gateway, name, version), requests by status class,
function failures, the sum of durations and a count per latency bucket. Every few seconds the cell
sends what it counted since the last time (`take`) to its supervisor, which adds it to the totals it
exposes (`runtime.metrics`). The app's requests are counted by the invocation logs, in bulk when read
(`InvocationLogs`): a few C-level passes over the queued requests, no lookup per request;
prometheus_client's labelled metrics cost a lock and a label lookup per metric instead.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fnstage.runtime.invoker import InvocationLogs

# The latency histogram's upper bounds in seconds (Prometheus `le`), +Inf after the last one.
BUCKETS: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
FIRST_BOUND = BUCKETS[0]  # at most this: the first bucket (`le` is "less than or equal")
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
# one counted version: [requests per status class (5), failures, seconds, per bucket (len(BUCKETS)+1)]
FAILURES = len(STATUS_CLASSES)
# status // 100 -> its class's slot; any other (outside 100-599) counts as a 5xx
CLASS_SLOT = {1: 0, 2: 1, 3: 2, 4: 3, 5: 4}
SECONDS = FAILURES + 1
FIRST_BUCKET = SECONDS + 1
SLOTS = FIRST_BUCKET + len(BUCKETS) + 1
_EMPTY: list[Any] = [0] * SECONDS + [0.0] + [0] * (len(BUCKETS) + 1)


def new_slots() -> list[Any]:
    """One version's counts, all zero."""
    return _EMPTY.copy()


Key = tuple[str, str, int]  # (gateway, name "env/base", version)


class RequestMetrics:
    """What one cell answered since it last reported, and how many requests it holds right now."""

    def __init__(self) -> None:
        # key -> its slots; `InvocationLogs` counts here in bulk what `invoke` queued (`record`: `observe`)
        self.counted: dict[Key, list[Any]] = {}
        self.in_flight = 0
        self.lock = threading.Lock()  # held to change `counted` (the logs' drains run on two threads)
        # the invocation logs counting into these metrics in bulk (`InvocationLogs.count_into`): drained
        # by `take` first, so that it counts every request answered before it
        self.sources: list[InvocationLogs] = []

    def observe(
        self, gateway: str, name: str, version: int, status: int, seconds: float, failed: bool
    ) -> None:
        """One answered request; `failed`: the function raised or ran out of time (not an HTTPError).
        The app's requests are counted in bulk by `InvocationLogs` (`_take`); the others come here."""
        key = (gateway, name, version)
        with self.lock:
            counted = self.counted.get(key)
            if counted is None:
                counted = self.counted[key] = new_slots()
            klass = status // 100 - 1
            counted[klass if 0 <= klass < FAILURES else FAILURES - 1] += 1
            if failed:
                counted[FAILURES] += 1
            counted[SECONDS] += seconds
            counted[FIRST_BUCKET + bisect_left(BUCKETS, seconds)] += 1

    def take(self) -> list[list[Any]]:
        """What was counted since the last call, as JSON-ready rows `[gateway, name, version, *slots]`;
        the counts start again from zero."""
        for source in self.sources:
            source.drain()
        with self.lock:
            counted, self.counted = self.counted, {}
        return [[gateway, name, version, *values] for (gateway, name, version), values in counted.items()]


def parse_row(row: Any) -> tuple[Key, list[int], int, float, list[int]] | None:
    """A row a cell sent, checked (a cell is not trusted): (key, per status class, failures, seconds,
    per bucket), or None if it does not fit."""
    if not isinstance(row, list) or len(row) != 3 + SLOTS:
        return None
    gateway, name, version = row[:3]
    values = row[3:]
    if not isinstance(gateway, str) or not isinstance(name, str) or type(version) is not int:
        return None
    counts = [values[i] for i in range(SLOTS) if i != SECONDS]
    if any(type(c) is not int or c < 0 for c in counts):
        return None
    seconds = values[SECONDS]
    if not isinstance(seconds, int | float) or not seconds >= 0:  # NaN fails too
        return None
    return (
        (gateway, name, version),
        values[:FAILURES],
        values[FAILURES],
        float(seconds),
        values[FIRST_BUCKET:],
    )
