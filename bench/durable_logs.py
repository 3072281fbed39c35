"""Durable invocation logs (issue 15): invocation throughput with them on against off, side by side.

    .venv/bin/python bench/durable_logs.py [--rounds 5] [--seconds 5] [--database-url URL]
        [--with-metrics] [--keep N] [--baseline OTHER_CHECKOUT/src] [--layouts cell,front] [--pin] [--rate N]
        [--interleave N [--settle S]]

wrk -t1 -c64 against one small async function that logs one line with `ctx.log`, in both layouts: a
cell serving its port directly (`fnstage runtime --gateway bench --env dev`, production behind a
proxy) and through the front as `fnstage up` runs it (`fnstage runtime --gateway bench`, the front in
the supervisor's process, beside the log writer); each server started afresh, rounds interleaved:
`FNSTAGE_LOGS=on` (every invocation shipped to the supervisor and written to the store in
batches) and `FNSTAGE_LOGS=off` (memory only, as before). After each "on" round it counts the rows
the store gained against the requests wrk made (`FNSTAGE_LOG_KEEP` is raised so pruning does not
hide them), so a writer that falls behind shows as dropped entries, not as a fast number.

`--with-metrics` measures issue 15's goal as written: "on" is durable logs and metrics together
(`--metrics-port`: every request counted and its latency observed), "off" neither. Next to req/s,
requests per CPU-second of the runtime's process tree (user + system from /proc, read around wrk),
which the machine's other work disturbs far less.

`--interleave N` pairs on and off within each round: both servers started together, then N slices of
`--seconds` each, taken in turn (on, off, off, on, ...) so that the host's drift falls on both alike;
each round prints its paired ratio of the pooled slices, and the summary their median. Even one
server's run-to-run speed here moved 25-40% within a minute (a shared host: its slowest runs were those
with the most steal ticks), more than logs cost, so rounds started apart cannot resolve it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cells import free_port, hey_at_rate, start, wrk
from machine import describe
from processes import cpu_seconds, descendants, stop_tree
from sqlalchemy import inspect, text

# each layout's runtime arguments: a cell serving its port, or `up`'s front before the cells
LAYOUTS = {"cell": ["--env", "dev"], "front": []}
FUNCTION = "async def main(ctx):\n    ctx.log('hello from', ctx.path)\n    return 'Hello, world!'\n"


def publish(url: str | None, root: Path) -> str:
    from stores import bench_admin

    from fnstage.service import Services
    from fnstage.store.engine import sqlite_url
    from fnstage.store.store import Store

    url = url or sqlite_url(root)
    store = Store.open(url)
    services = Services.create(store)
    actor = bench_admin(store)
    services.gateways.create(actor, "bench")
    services.deployments.save(actor, "bench", "dev/hello", {"index.py": FUNCTION})
    store.close()
    return url


def publish_with(src: str, root: Path) -> str:
    """`publish` by the code of the checkout `src` (in a process of its own), on a SQLite database of
    its own: each side of a side-by-side run has the schema its code migrates to (issue 15's blocks
    replaced main's table of rows, and a runtime does not migrate)."""
    root.mkdir(parents=True, exist_ok=True)
    code = (
        "import sys; from pathlib import Path; from durable_logs import publish; "
        "print(publish(None, Path(sys.argv[1])))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, str(Path(__file__).resolve().parent)])}
    done = subprocess.run(
        [sys.executable, "-c", code, str(root)], env=env, check=True, capture_output=True, text=True
    )
    return done.stdout.strip().splitlines()[-1]


def stored_rows(url: str) -> int:
    """Invocations the store holds: entries of its blocks, or its rows (a checkout before blocks)."""
    from fnstage.store.engine import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            if "invocation_log_blocks" in inspect(conn).get_table_names():
                return int(
                    conn.scalar(text("SELECT coalesce(sum(entries), 0) FROM invocation_log_blocks")) or 0
                )
            return int(conn.scalar(text("SELECT count(*) FROM invocation_logs")) or 0)
    finally:
        engine.dispose()


def checkouts(baseline: str | None) -> dict[str, str]:
    """The sides' src folders: this checkout's, and the baseline's when given."""
    sources = {"this": str(Path(__file__).resolve().parents[1] / "src")}
    if baseline:
        sources["baseline"] = str(Path(baseline).resolve())
    return sources


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--database-url", default=None, help="PostgreSQL (a fresh database); SQLite if unset")
    parser.add_argument("--with-metrics", action="store_true", help="'on' also serves /metrics")
    parser.add_argument(
        "--keep",
        type=int,
        default=1_000_000,
        help="FNSTAGE_LOG_KEEP: the default raises it so that no row is pruned and every one can be "
        "counted; 1000 (fnstage's default) measures what users run, with pruning (rows not counted)",
    )
    parser.add_argument(
        "--baseline",
        default=None,
        metavar="SRC",
        help="another checkout's src (say main's, `git worktree add --detach /tmp/base main`): each round "
        "runs its on and off too, interleaved with this checkout's, and both ratios are printed",
    )
    parser.add_argument("--layouts", default="cell,front", help="cell, front, or both (the default)")
    parser.add_argument(
        "--pin",
        action="store_true",
        help="the runtime (every process of it) on CPU 0 and wrk on CPU 1 (`taskset -c`), as "
        "invocation_overhead.py runs: wrk's share of the cores no longer moves between rounds, and the "
        "log writer and supervisor take their CPU from the cell's core, as a runtime's own work does",
    )
    parser.add_argument(
        "--rate",
        type=int,
        default=0,
        help="offer this many requests a second with `hey` (Debian's package) instead of wrk's "
        "saturation, and compare the CPU a request: at saturation a runtime started afresh settles "
        "into batching more or fewer requests a wake, which moved its CPU a request 30-40%% between "
        "starts (BENCHMARKS.md, the eleventh window)",
    )
    parser.add_argument(
        "--interleave",
        type=int,
        default=0,
        metavar="N",
        help="each round starts on and off together and runs N slices of --seconds on each, in turn "
        "(on, off, off, on, ...), and its ratio is the pooled slices' (see the docstring); N even",
    )
    parser.add_argument(
        "--settle", type=float, default=0.6, help="seconds after each slice before its CPU is read"
    )
    return parser


def parse_arguments(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    """The arguments, or exit 2 saying which is wrong (before any server starts)."""
    args = parser.parse_args(argv)
    if args.interleave and (args.interleave < 2 or args.interleave % 2):
        # on, off, off, on: a drift cancels only over whole groups of four slices
        parser.error(
            f"--interleave must be an even number of slices a side, 2 or more, not {args.interleave}"
        )
    return args


def main() -> None:
    parser = build_parser()
    args = parse_arguments(parser)
    if args.interleave:
        interleaved(args)
        return
    server_cpus, client_cpus = ("0", "1") if args.pin else (None, None)
    print(describe(), flush=True)
    sources = checkouts(args.baseline)
    layouts = {name: LAYOUTS[name] for name in args.layouts.split(",")}
    results: dict[str, list[float]] = {
        f"{side} {layout} logs {m}": [] for side in sources for layout in layouts for m in ("on", "off")
    }
    per_cpu: dict[str, list[float]] = {name: [] for name in results}
    kept: list[float] = []
    with tempfile.TemporaryDirectory(prefix="fnstage-bench-logs-") as folder:
        if args.database_url:
            if args.baseline:
                parser.error("--baseline runs on SQLite only: each side needs a database of its own schema")
            urls = {"this": publish(args.database_url, Path(folder))}
        else:
            urls = {side: publish_with(src, Path(folder) / side) for side, src in sources.items()}
        os.environ["FNSTAGE_LOG_KEEP"] = str(args.keep)
        os.environ["FNSTAGE_LOG_QUEUE"] = "1000000"
        for round_ in range(args.rounds):
            for name in results:
                side, layout, _, mode = name.split()
                os.environ["FNSTAGE_LOGS"] = mode
                port = free_port()
                metrics = ["--metrics-port", str(free_port())] if args.with_metrics and mode == "on" else []
                process = start(
                    ["--database-url", urls[side], "--gateway", "bench", *layouts[layout], *metrics],
                    port,
                    sources[side],
                    cpus=server_cpus,
                )
                try:
                    wrk(port, 1, cpus=client_cpus)  # warm-up
                    time.sleep(1.5)  # its entries written before counting
                    before = stored_rows(urls[side])
                    tree = descendants(process.pid)
                    cpu_before = cpu_seconds(tree)
                    rate, total = (
                        hey_at_rate(port, args.seconds, args.rate, cpus=client_cpus)
                        if args.rate
                        else wrk(port, args.seconds, cpus=client_cpus)
                    )
                    cpu = cpu_seconds(tree) - cpu_before
                    results[name].append(rate)
                    per_cpu[name].append(total / cpu if cpu else 0.0)
                    if mode == "on" and total and args.keep >= 1_000_000:
                        time.sleep(3)  # the writer's last batches
                        kept.append((stored_rows(urls[side]) - before) / total)
                finally:
                    stop_tree([process.pid, *descendants(process.pid)])
                print(
                    f"round {round_ + 1} {name}: {rate:,.0f} req/s, {per_cpu[name][-1]:,.0f} per CPU-second",
                    flush=True,
                )
    what = "logs and metrics" if args.with_metrics else "logs"
    for side, src in sources.items():
        print(f"{side} ({src}):")
        for layout in layouts:
            on = statistics.median(results[f"{side} {layout} logs on"])
            off = statistics.median(results[f"{side} {layout} logs off"])
            cpu_on = statistics.median(per_cpu[f"{side} {layout} logs on"])
            cpu_off = statistics.median(per_cpu[f"{side} {layout} logs off"])
            print(
                f"  {layout}: median {what} on {on:,.0f} req/s, off {off:,.0f} req/s, ratio on/off "
                f"{on / off:.2f}; per CPU-second on {cpu_on:,.0f}, off {cpu_off:,.0f}, "
                f"ratio {cpu_on / cpu_off:.2f}"
            )
    if kept:
        print(f"rows written per request made (logs on, each round): {', '.join(f'{k:.3f}' for k in kept)}")


def order(slices: int) -> list[int]:
    """0 (on) and 1 (off) in turn, ABBA by pairs, so a linear drift of the host's speed falls on both
    alike: on, off, off, on, on, off, ..."""
    return [(i + i // 2) % 2 for i in range(2 * slices)]


def paired_ratios(sides: list[int], rates: list[float]) -> list[float]:
    """On's rate over off's in each pair of adjacent slices (`order` puts one of each in every pair):
    a burst of the host's other work spoils one pair, not a round."""
    pairs = zip(
        zip(sides[::2], rates[::2], strict=True), zip(sides[1::2], rates[1::2], strict=True), strict=True
    )
    return [a / b if side == 0 else b / a for (side, a), (_, b) in pairs]


def interleaved(args: argparse.Namespace) -> None:
    """Rounds of paired slices (`--interleave`): the ratio of a round is on's requests per CPU-second
    over off's, each pooled over its slices; the summary is the median of the rounds' ratios, and of
    all adjacent slices' (`paired_ratios`)."""
    cpus = ("0", "1") if args.pin else (None, None)
    print(describe(), flush=True)
    sources = checkouts(args.baseline)
    pairs = [(side, layout) for side in sources for layout in args.layouts.split(",")]
    ratios: dict[tuple[str, str], list[float]] = {pair: [] for pair in pairs}
    paired: dict[tuple[str, str], list[float]] = {pair: [] for pair in pairs}
    with tempfile.TemporaryDirectory(prefix="fnstage-bench-logs-") as folder:
        os.environ["FNSTAGE_LOG_KEEP"] = str(args.keep)
        os.environ["FNSTAGE_LOG_QUEUE"] = "1000000"
        for round_ in range(args.rounds):
            for side, layout in pairs:
                # a database of its own: a round's rows stay under the keep (at most 1,000,000), so
                # pruning does not hide an entry the writer lost
                url = publish_with(sources[side], Path(folder) / f"{side}-{layout}-{round_}")
                servers = []
                try:
                    for mode in ("on", "off"):
                        os.environ["FNSTAGE_LOGS"] = mode
                        port = free_port()
                        metrics = (
                            ["--metrics-port", str(free_port())] if args.with_metrics and mode == "on" else []
                        )
                        process = start(
                            [
                                "--database-url",
                                url,
                                "--gateway",
                                "bench",
                                *LAYOUTS[layout],
                                *metrics,
                            ],
                            port,
                            sources[side],
                            cpus=cpus[0],
                        )
                        servers.append((port, process))
                        wrk(port, 1, cpus=cpus[1])  # warm-up
                    time.sleep(args.settle)
                    trees = [descendants(process.pid) for _, process in servers]
                    before = stored_rows(url)
                    served, spent = [0, 0], [0.0, 0.0]
                    slice_rates: list[float] = []  # each slice's requests per CPU-second, in order
                    for which in order(args.interleave):
                        port, _ = servers[which]
                        cpu_before = cpu_seconds(trees[which])
                        _, total = wrk(port, args.seconds, cpus=cpus[1])
                        time.sleep(args.settle)  # the on side's last shipment and batch, inside its slice
                        cpu = cpu_seconds(trees[which]) - cpu_before
                        served[which] += total
                        spent[which] += cpu
                        slice_rates.append(total / cpu)
                    time.sleep(3)  # the writer's last batches, if it fell behind
                    kept = (stored_rows(url) - before) / served[0]
                finally:
                    for _, process in servers:
                        stop_tree([process.pid, *descendants(process.pid)])
                on, off = (served[i] / spent[i] for i in (0, 1))
                ratios[(side, layout)].append(on / off)
                paired[(side, layout)].extend(paired_ratios(order(args.interleave), slice_rates))
                print(
                    f"round {round_ + 1} {side} {layout}: per CPU-second on {on:,.0f}, off {off:,.0f}, "
                    f"ratio {on / off:.3f}; rows written per request (on) {kept:.3f}",
                    flush=True,
                )
    what = "logs and metrics" if args.with_metrics else "logs"
    for (side, layout), each in ratios.items():
        slices = paired[(side, layout)]
        quartiles = ", ".join(f"{q:.3f}" for q in statistics.quantiles(slices, n=4))
        print(
            f"{side} {layout}: {what} on/off per CPU-second, median of {len(each)} paired rounds "
            f"{statistics.median(each):.3f} (rounds {', '.join(f'{r:.3f}' for r in each)}); median of "
            f"{len(slices)} adjacent slices' ratios {statistics.median(slices):.3f} (quartiles {quartiles})"
        )


if __name__ == "__main__":
    main()
