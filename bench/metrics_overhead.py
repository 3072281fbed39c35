"""Metrics (issue 15): invocation throughput with metrics on against off, side by side in one run.

    .venv/bin/python bench/metrics_overhead.py [--rounds 9] [--seconds 3] [--batches 30]

One SQLite store with one small async function (`bench/cells.py`'s). Four runtimes run at once for the
whole run: a cell served directly (`fnstage runtime --gateway bench --env dev`) and the same through
the front (`--gateway bench`, as `fnstage up` runs it), each with metrics off (no `--metrics-port`:
nothing is counted) and on (`--metrics-port`: the cell counts every request and sends its counts to
the supervisor, which keeps the totals and serves /metrics). Each round loads every runtime in turn
with `wrk -t1 -c64`, off and on back to back (which goes first alternates), so a change in the
machine's load between two servers costs the ratio as little as it can. A third runtime of each
layout, also with metrics off ("off, again"), measures the noise: the ratio of two identical servers.
Reported: median req/s of each, and the medians of the per-round ratios on/off and off-again/off;
and the same for requests per CPU-second of the runtime's processes (supervisor, front, cells: user +
system time from /proc, read around each wrk run), which the machine's other work disturbs far less
than req/s. At the end /metrics is scraped, to show the "on" runtimes counted what wrk sent.

Part 2, what the cell itself spends per request, without HTTP or the machine's other processes in the
figure: the runtime's ASGI app called in-process on the same function, 20,000 requests a batch,
batches alternating between metrics off and on (`--batches` of each); microseconds of this process's
CPU time per request (CPU time: a batch preempted by the machine's other work is not charged for it).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from cells import free_port, publish, start, wrk
from machine import describe
from processes import cpu_seconds, descendants, stop_tree
from prometheus_client.parser import text_string_to_metric_families


def counted(metrics_port: int) -> float:
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "fnstage_request_duration_seconds_count"
    )


def in_process(batches: int, per_batch: int = 20_000) -> dict[str, list[float]]:
    """Microseconds per request of `RuntimeApp` with metrics off and on, batches alternating."""
    import asyncio

    from fnstage.build import build
    from fnstage.runtime.app import RuntimeApp
    from fnstage.runtime.loader import LiveVersion, load_rows
    from fnstage.runtime.registry import Registry
    from fnstage.runtime.request_metrics import RequestMetrics
    from fnstage.runtime.router import Router
    from fnstage.store.records import PublishedFunction

    bundle = build({"index.py": "async def main(ctx):\n    return 'Hello, world!'\n"}, "index.py")
    row = PublishedFunction(
        "bench",
        "dev/hello",
        1,
        "0.1.0",
        "index.py",
        bundle.compiled,
        dict(bundle.files),
        bundle.hash,
        ["GET"],
        {},
        1,
    )
    [live] = load_rows([row])
    assert isinstance(live, LiveVersion)

    def app(metrics: RequestMetrics | None) -> RuntimeApp:
        registry = Registry()
        registry.apply(live)
        return RuntimeApp(registry, Router(gateway="bench"), metrics=metrics)

    scope = {"type": "http", "path": "/dev/hello", "method": "GET", "headers": [], "query_string": b""}
    sent: list[int] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, object]) -> None:
        if message["type"] == "http.response.start":
            sent.append(int(message["status"]))  # type: ignore[call-overload]

    async def batch(target: RuntimeApp) -> float:
        # CPU time, not wall time: on a busy machine a batch is preempted for as long as others run
        started = time.process_time()
        for _ in range(per_batch):
            await target(scope, receive, send)
        return (time.process_time() - started) / per_batch * 1e6

    async def run() -> dict[str, list[float]]:
        apps = {"off": app(None), "on": app(RequestMetrics())}
        out: dict[str, list[float]] = {"off": [], "on": []}
        for i in range(batches):
            for mode in ("off", "on") if i % 2 == 0 else ("on", "off"):
                out[mode].append(await batch(apps[mode]))
        assert set(sent) == {200}, set(sent)
        return out

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--batches", type=int, default=30)
    options = parser.parse_args()
    print(describe(), flush=True)
    if options.batches:
        per_request = in_process(options.batches)
        off, on = per_request["off"], per_request["on"]
        print("\n| in-process, CPU us per request | median | min |\n| --- | --- | --- |")
        print(f"| metrics off | {statistics.median(off):.2f} | {min(off):.2f} |")
        print(f"| metrics on | {statistics.median(on):.2f} | {min(on):.2f} |")
        ratio = statistics.median(off) / statistics.median(on)
        print(f"requests per CPU-second, on/off (medians): {ratio:.3f}\n", flush=True)
        if not options.rounds:
            return
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
        trees: dict[tuple[str, str], list[int]] = {}
        for key, process in zip(servers, processes, strict=True):
            wrk(servers[key][0], 1)  # warm-up: the cell exists after it
            trees[key] = descendants(process.pid)
        rates: dict[tuple[str, str], list[float]] = {key: [] for key in servers}
        per_cpu: dict[tuple[str, str], list[float]] = {key: [] for key in servers}
        for round_ in range(options.rounds):
            for layout in layouts:
                modes = ["off", "on", "off, again"]
                order = modes[round_ % 3 :] + modes[: round_ % 3]
                for mode in order:
                    key = (layout, mode)
                    before = cpu_seconds(trees[key])
                    rate, total = wrk(servers[key][0], options.seconds)
                    rates[key].append(rate)
                    per_cpu[key].append(total / max(cpu_seconds(trees[key]) - before, 0.01))
                line = ", ".join(
                    f"{mode} {rates[(layout, mode)][-1]:,.0f} ({per_cpu[(layout, mode)][-1]:,.0f}/CPU-s)"
                    for mode in order
                )
                print(f"round {round_ + 1} {layout}: {line} req/s", flush=True)
        print()
        for title, results in (("req/s", rates), ("requests per CPU-second of the runtime", per_cpu)):
            print(f"{title}, medians of {options.rounds} rounds:\n")
            print("| layout | metrics off | metrics on | off again | on/off | off again/off (noise) |")
            print("| --- | --- | --- | --- | --- | --- |")
            for layout in layouts:
                off, on, again = (results[(layout, mode)] for mode in ("off", "on", "off, again"))
                ratio = statistics.median(b / a for a, b in zip(off, on, strict=True))
                noise = statistics.median(b / a for a, b in zip(off, again, strict=True))
                medians = " | ".join(f"{statistics.median(r):,.0f}" for r in (off, on, again))
                print(f"| {layout} | {medians} | {ratio:.2f} | {noise:.2f} |")
            print()
        for layout in layouts:
            _, metrics_port = servers[(layout, "on")]
            assert metrics_port is not None
            print(f"{layout}, metrics on: /metrics counted {counted(metrics_port):,.0f} requests")
    finally:
        for process in processes:
            stop_tree([process.pid, *descendants(process.pid)])


if __name__ == "__main__":
    sys.exit(main())
