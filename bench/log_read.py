"""Reading the durable invocation log at a million invocations of one function: what `fnstage logs`
asks the store (`invocation_log.read`, the API's call) with its filters, and a request-id lookup (the
console's link from a request id to its traceback), side by side with another checkout.

    .venv/bin/python bench/log_read.py [--invocations 1000000] [--repeats 7] [--baseline OTHER/src]

Each side runs in a process of its own with its checkout's code on a SQLite database of its own
(written by that code: batches of 2,000, as the log writer writes them; 1 in 100 a 500 with a
traceback, the first half version 1, the rest version 2, one line each). Prints the median CPU time
(`process_time`) and wall time of each read, which the machine's load disturbs less than wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BATCH = 2000
START = 1_764_590_000.0


def fill_and_read(root: str, invocations: int, repeats: int) -> dict[str, list[float]]:
    from durable_logs import publish

    from fnstage.store import invocation_log
    from fnstage.store.engine import make_engine
    from fnstage.store.invocation_log import LogFilter, LogRecord

    engine = make_engine(publish(None, Path(root)))
    for base in range(0, invocations, BATCH):
        invocation_log.write(
            engine,
            [
                LogRecord(
                    "bench",
                    "dev/hello",
                    1 if n < invocations // 2 else 2,
                    f"{n:032x}",
                    START + n / 1000,
                    500 if n % 100 == 99 else 200,
                    0.123,
                    '["hello from /"]',
                    "ZeroDivisionError: division by zero\nTraceback ..." if n % 100 == 99 else None,
                    None,
                    "7d1c2b9e-5d4f-4a43-9f4c-0a3b1c2d3e4f",
                )
                for n in range(base, min(base + BATCH, invocations))
            ],
        )
    _, cursor = invocation_log.read(engine, "bench", "dev/hello", LogFilter(limit=1))
    middle = START + invocations / 2000
    reads = {
        "newest 50": LogFilter(),
        "--status error (newest 50)": LogFilter(status="error"),
        "--version 1 (newest 50)": LogFilter(version=1),
        "--since/--until a minute in the middle (newest 50)": LogFilter(since=middle, until=middle + 60),
        "request id, the middle one": LogFilter(request_id=f"{invocations // 2:032x}"),
        "request id, the oldest": LogFilter(request_id=f"{0:032x}"),
        "request id, none such": LogFilter(request_id="f" * 32),
        "--follow, the next 1,000 after an older cursor": LogFilter(after=cursor - 5000, limit=1000),
    }
    times: dict[str, list[float]] = {}
    for name, wanted in reads.items():
        cpu, wall = [], []
        for _ in range(repeats):
            c0, w0 = time.process_time(), time.perf_counter()
            found, _ = invocation_log.read(engine, "bench", "dev/hello", wanted)
            cpu.append(time.process_time() - c0)
            wall.append(time.perf_counter() - w0)
        assert found or "none such" in name, name
        times[name] = [statistics.median(cpu) * 1000, statistics.median(wall) * 1000, len(found)]
    engine.dispose()
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--invocations", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--baseline", default=None, metavar="SRC")
    parser.add_argument("--side", default=None, help=argparse.SUPPRESS)  # internal: run one side here
    args = parser.parse_args()
    if args.side:
        print(json.dumps(fill_and_read(args.side, args.invocations, args.repeats)))
        return
    sources = {"this": str(Path(__file__).resolve().parents[1] / "src")}
    if args.baseline:
        sources["baseline"] = str(Path(args.baseline).resolve())
    results = {}
    with tempfile.TemporaryDirectory(prefix="fnstage-bench-logread-") as folder:
        for side, src in sources.items():
            env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, str(Path(__file__).resolve().parent)])}
            root = Path(folder) / side
            root.mkdir()
            started = time.perf_counter()
            done = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--side",
                    str(root),
                    "--invocations",
                    str(args.invocations),
                    "--repeats",
                    str(args.repeats),
                ],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            )
            results[side] = json.loads(done.stdout.strip().splitlines()[-1])
            size = sum(p.stat().st_size for p in root.iterdir())
            print(
                f"{side} ({src}): filled and read in {time.perf_counter() - started:.0f} s, "
                f"database {size / 1e6:.0f} MB, load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    for name in results["this"]:
        row = " | ".join(
            f"{side} {r[name][0]:.1f} ms CPU, {r[name][1]:.1f} ms wall ({r[name][2]:.0f} found)"
            for side, r in results.items()
        )
        print(f"{name}: {row}")


if __name__ == "__main__":
    main()
