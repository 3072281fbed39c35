"""A function's charts: requests, errors and p50/p95 latency per version over the last hour or day, in
time buckets, with its releases marked; computed from the durable invocation log.

The log keeps each function's newest `FNSTAGE_LOG_KEEP` invocations (default 1000), so a busy
function's day shows its last thousand requests, not all of them: the answer says from when it has
data (`covered_since`)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from fnstage.domain.errors import InvalidInput
from fnstage.domain.names import FunctionName
from fnstage.service.queries import Queries
from fnstage.store import invocation_log
from fnstage.store.store import Store

WINDOWS = {"hour": (3600, 60), "day": (86400, 900)}  # span, bucket (seconds)


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending, non-empty list."""
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def buckets_of(
    samples: list[tuple[float, int, int, float]], start: float, bucket_s: int, count: int
) -> dict[int, dict[str, list[Any]]]:
    """Per version and bucket: requests, errors (status >= 500), p50 and p95 duration (ms; None: none)."""
    durations: dict[int, list[list[float]]] = {}
    out: dict[int, dict[str, list[Any]]] = {}
    for started, version, status, duration_ms in samples:
        index = int((started - start) // bucket_s)
        if not 0 <= index < count:
            continue
        series = out.get(version)
        if series is None:
            series = out[version] = {"requests": [0] * count, "errors": [0] * count}
            durations[version] = [[] for _ in range(count)]
        series["requests"][index] += 1
        if status >= 500:
            series["errors"][index] += 1
        durations[version][index].append(duration_ms)
    for version, series in out.items():
        ordered = [sorted(d) for d in durations[version]]
        series["p50_ms"] = [percentile(d, 50) if d else None for d in ordered]
        series["p95_ms"] = [percentile(d, 95) if d else None for d in ordered]
    return out


class InvocationStats:
    def __init__(self, store: Store, queries: Queries, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.queries = queries
        self.clock = clock

    def chart(self, gateway: str, name: str, window: str) -> dict[str, Any]:
        if window not in WINDOWS:
            raise InvalidInput(f"window {window!r} is not one of: {', '.join(WINDOWS)}", field="window")
        fname = FunctionName.parse(name)
        self.queries.function(gateway, str(fname))  # 404 for an unknown gateway or function
        span, bucket_s = WINDOWS[window]
        now = self.clock()
        count = span // bucket_s
        start = (math.floor(now / bucket_s) + 1) * bucket_s - span  # whole buckets, the last one current
        samples = invocation_log.samples(self.store.engine, gateway, str(fname), start)
        with self.store.read() as tx:
            history = tx.list_history(gateway, env=fname.env, base=fname.base, limit=200)
        releases = [
            {"time": _epoch(h.created_at), "version": h.version, "semver": h.semver, "kind": h.kind}
            for h in history
            if _epoch(h.created_at) >= start
        ]
        return {
            "window": window,
            "bucket_s": bucket_s,
            "start": start,
            "times": [start + i * bucket_s for i in range(count)],
            "versions": {str(v): s for v, s in sorted(buckets_of(samples, start, bucket_s, count).items())},
            "releases": sorted(releases, key=lambda r: r["time"]),
            "covered_since": samples[0][0] if samples else None,
        }


def _epoch(moment: datetime) -> float:
    """SQLite gives the stored UTC time back without its zone."""
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
