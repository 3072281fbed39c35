"""What a cold start's status reports cost the supervisor (issue 17 item 3, "status stays truthful").

    .venv/bin/python bench/pending_reports.py [--count 100000] [--repeat 3] [--postgres URL]

A cold start reported every version live in one write (`RuntimeReporter.live_many`). Its cells hold
them pending now: it reports them pending in that same write (`live_many(..., pending=True)`), then
live as the warm-up loads them, a write per batch the cell sends (`warmed`, WARM_PROGRESS rows each).
This times both paths in the reporting process, CPU (`time.process_time`: what the load on the machine
does not move) and wall, on a fresh SQLite file and, given `--postgres`, a fresh PostgreSQL database
(dropped after), `--repeat` times each, alternately; the table shows medians.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import create_engine, text

from fnstage.runtime.cell import WARM_PROGRESS
from fnstage.store.engine import sqlite_url
from fnstage.store.runtime_status import RuntimeIdentity, RuntimeReporter
from fnstage.store.store import Store


def _items(count: int) -> list[tuple[str, str, int, str]]:
    return [("bench", f"dev/fn/{i}", 1, f"{i:064x}") for i in range(count)]


def today(reporter: RuntimeReporter, items: list[tuple[str, str, int, str]]) -> None:
    reporter.live_many(items)


def pending_then_warmed(reporter: RuntimeReporter, items: list[tuple[str, str, int, str]]) -> None:
    reporter.live_many(items, pending=True)
    for start in range(0, len(items), WARM_PROGRESS):
        reporter.warmed([(g, n, v) for g, n, v, _ in items[start : start + WARM_PROGRESS]])


def _timed(
    url: str, write: Callable[..., None], items: list[tuple[str, str, int, str]]
) -> tuple[float, float]:
    reporter = RuntimeReporter(url, RuntimeIdentity.new("bench", "http://127.0.0.1:1", pid=1))
    try:
        reporter.register()
        cpu, wall = time.process_time(), time.perf_counter()
        write(reporter, items)
        return time.process_time() - cpu, time.perf_counter() - wall
    finally:
        reporter.deregister()
        reporter.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--postgres", help="a server URL; a database of its own is made and dropped")
    args = parser.parse_args()
    items = _items(args.count)
    with tempfile.TemporaryDirectory() as folder:
        urls = {"sqlite": sqlite_url(Path(folder))}
        admin = None
        name = f"bench_pending_{uuid.uuid4().hex[:8]}"
        if args.postgres:
            admin = create_engine(args.postgres, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            urls["postgres"] = args.postgres.rsplit("/", 1)[0] + f"/{name}"
        try:
            for engine, url in urls.items():
                Store.open(url).close()  # migrated
                runs: dict[str, list[tuple[float, float]]] = {"today": [], "pending + warmed": []}
                for _ in range(args.repeat):
                    runs["today"].append(_timed(url, today, items))
                    runs["pending + warmed"].append(_timed(url, pending_then_warmed, items))
                base_cpu = statistics.median(c for c, _ in runs["today"])
                for label, timings in runs.items():
                    cpu = statistics.median(c for c, _ in timings)
                    wall = statistics.median(w for _, w in timings)
                    rounds = ", ".join(f"{c:.2f}" for c, _ in timings)
                    print(
                        f"{engine:8} {args.count:>7} {label:18} CPU {cpu:6.2f} s  wall {wall:6.2f} s"
                        f"  CPU x{cpu / base_cpu:.2f}  (CPU rounds: {rounds})"
                    )
        finally:
            if admin is not None:
                with admin.connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                admin.dispose()


if __name__ == "__main__":
    main()
