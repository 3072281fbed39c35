"""A sync `def main` through `invoke`, in process: wall and CPU time per call, this checkout against another.

    .venv/bin/python bench/sync_invoke.py --before /tmp/seams-before/src [--rounds 7] [--calls 20000]

What it isolates: the invoker's part of a sync call (ctx, the hop to a function thread and back, the
deadline, the invocation log), without HTTP. Each round runs the same loop in two fresh interpreters,
one importing fnstage from this checkout and one from `--before` (alternating which goes first), and
the table shows medians over the rounds: wall time and process CPU time (every thread) per call, 64
calls in flight at a time on a pool of 32 threads, as the runtime's app runs them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"

CHILD = r"""
import asyncio, json, sys, time
from concurrent.futures import ThreadPoolExecutor
from fnstage.build import build
from fnstage.runtime.invoker import Deadlines, InvocationLogs, invoke
from fnstage.runtime.loader import load_function

CALLS, IN_FLIGHT = int(sys.argv[1]), 64
code = "def main(ctx):\n    return 'Hello, world!'\n"
bundle = build({"index.py": code}, "index.py")
live = load_function("dev/hello", 1, "0.1.0", "index.py", bundle.compiled, bundle.files, gateway="bench")

async def run() -> tuple[float, float]:
    executor = ThreadPoolExecutor(max_workers=32, thread_name_prefix="fnstage-fn")
    logs, deadlines = InvocationLogs(), Deadlines()

    async def one(i: int) -> None:
        outcome = await invoke(live, method="GET", path="/hello", request_id=f"r{i}",
                               executor=executor, logs=logs, deadlines=deadlines)
        assert outcome.status == 200

    for i in range(2000):  # warm-up
        await one(i)
    wall, cpu = time.perf_counter(), time.process_time()
    for start in range(0, CALLS, IN_FLIGHT):
        await asyncio.gather(*(one(i) for i in range(start, min(start + IN_FLIGHT, CALLS))))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    executor.shutdown()
    return wall / CALLS * 1e6, cpu / CALLS * 1e6

print(json.dumps(asyncio.run(run())))
"""


def measure(src: str, calls: int) -> tuple[float, float]:
    env = {**os.environ, "PYTHONPATH": src}
    out = subprocess.run([sys.executable, "-c", CHILD, str(calls)], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(out.stderr)
    wall, cpu = json.loads(out.stdout)
    return float(wall), float(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="the other checkout's src folder")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=20000)
    args = parser.parse_args()
    results: dict[str, list[tuple[float, float]]] = {"before": [], "after": []}
    print(f"load average at start: {os.getloadavg()}")
    for round_ in range(args.rounds):
        order = [("before", args.before), ("after", str(SRC))]
        if round_ % 2:
            order.reverse()
        for label, src in order:
            results[label].append(measure(src, args.calls))
        now = {k: v[-1] for k, v in results.items()}
        said = [f"{k} {w:.1f} us wall, {c:.1f} us CPU" for k, (w, c) in now.items()]
        print(f"round {round_ + 1}: " + "; ".join(said))
    print(f"load average at end: {os.getloadavg()}")
    print("| checkout | wall per call (median) | CPU per call (median) | wall per round | CPU per round |")
    print("| --- | ---: | ---: | --- | --- |")
    for label, runs in results.items():
        walls, cpus = [w for w, _ in runs], [c for _, c in runs]
        print(
            f"| {label} | {statistics.median(walls):.1f} us | {statistics.median(cpus):.1f} us | "
            f"{' / '.join(f'{w:.1f}' for w in walls)} | {' / '.join(f'{c:.1f}' for c in cpus)} |"
        )


if __name__ == "__main__":
    main()
