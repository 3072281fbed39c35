"""Metrics (issue 15): invocation throughput with metrics on against off, side by side in one run.

    .venv/bin/python bench/metrics_overhead.py [--rounds 9] [--seconds 3]

One SQLite store with one small async function (`bench/cells.py`'s). Four runtimes run at once for the
whole run: a cell served directly (`fnstage runtime --gateway bench --env dev`) and the same through
the front (`--gateway bench`, as `fnstage up` runs it), each with metrics off (no `--metrics-port`:
nothing is counted) and on (`--metrics-port`: the cell counts every request and sends its counts to
the supervisor, which keeps the totals and serves /metrics). Each round loads every runtime in turn
with `wrk -t1 -c64`, off and on back to back (which goes first alternates), so a change in the
machine's load between two servers costs the ratio as little as it can. A third runtime of each
layout, also with metrics off ("off, again"), measures the noise: the ratio of two identical servers.
Reported: median req/s of each, and the medians of the per-round ratios on/off and off-again/off. At
the end /metrics is scraped, to show the "on" runtimes counted what wrk sent.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import httpx
from cells import free_port, publish, start, wrk
from machine import describe
from processes import descendants, stop_tree
from prometheus_client.parser import text_string_to_metric_families


def counted(metrics_port: int) -> float:
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "fnstage_request_duration_seconds_count"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--seconds", type=int, default=3)
    options = parser.parse_args()
    print(describe(), flush=True)
    folder = tempfile.mkdtemp(prefix="fnstage-bench-metrics-")
    url = publish(Path(folder), 1, 1)
    layouts = {
        "cell direct": ["--database-url", url, "--gateway", "bench", "--env", "dev"],
        "front -> cell": ["--database-url", url, "--gateway", "bench"],
    }
    servers: dict[tuple[str, str], tuple[int, int | None]] = {}
    processes = []
    try:
        for layout, args in layouts.items():
            for mode in ("off", "on", "off, again"):
                port = free_port()
                metrics_port = free_port() if mode == "on" else None
                extra = ["--metrics-port", str(metrics_port)] if metrics_port is not None else []
                processes.append(start([*args, *extra], port, None))
                servers[(layout, mode)] = (port, metrics_port)
        for port, _ in servers.values():
            wrk(port, 1)  # warm-up
        results: dict[tuple[str, str], list[float]] = {key: [] for key in servers}
        for round_ in range(options.rounds):
            for layout in layouts:
                modes = ["off", "on", "off, again"]
                order = modes[round_ % 3 :] + modes[: round_ % 3]
                for mode in order:
                    port, _ = servers[(layout, mode)]
                    results[(layout, mode)].append(wrk(port, options.seconds))
                line = ", ".join(f"{mode} {results[(layout, mode)][-1]:,.0f}" for mode in order)
                print(f"round {round_ + 1} {layout}: {line} req/s", flush=True)
        print()
        print(
            "| layout | metrics off, req/s | metrics on, req/s | off again, req/s "
            "| on/off | off again/off (noise) |"
        )
        print("| --- | --- | --- | --- | --- | --- |")
        for layout in layouts:
            off, on, again = (results[(layout, mode)] for mode in ("off", "on", "off, again"))
            ratio = statistics.median(b / a for a, b in zip(off, on, strict=True))
            noise = statistics.median(b / a for a, b in zip(off, again, strict=True))
            medians = " | ".join(f"{statistics.median(r):,.0f}" for r in (off, on, again))
            print(f"| {layout} | {medians} | {ratio:.2f} | {noise:.2f} |")
        for layout in layouts:
            _, metrics_port = servers[(layout, "on")]
            assert metrics_port is not None
            print(f"{layout}, metrics on: /metrics counted {counted(metrics_port):,.0f} requests")
    finally:
        for process in processes:
            stop_tree([process.pid, *descendants(process.pid)])


if __name__ == "__main__":
    sys.exit(main())
