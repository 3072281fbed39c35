"""How long one prune of the invocation log holds SQLite's write lock (the time a save waits behind it).

    .venv/bin/python bench/log_prune.py [--rows 100000]

A busy function logs thousands of invocations a second; every prune drops all but its newest 1,000.
Fills a fresh SQLite store with `--rows` entries of one function, prunes it in one transaction (as
before) and in chunks (`invocation_log.PRUNE_CHUNK`, without the pause, to time the chunks alone),
and reports the longest transaction of each: a save waiting on the write lock waits that long.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from machine import describe
from sqlalchemy import event
from stores import bench_admin

from fnstage.service import Services
from fnstage.store import invocation_log
from fnstage.store.engine import sqlite_url
from fnstage.store.invocation_log import LogRecord
from fnstage.store.store import Store


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    print(describe())
    store = Store.open(sqlite_url(Path(tempfile.mkdtemp(prefix="fnstage-bench-prune-"))))
    Services.create(store).gateways.create(bench_admin(store), "bench")
    held: list[float] = []
    event.listen(store.engine, "begin", lambda conn: conn.info.__setitem__("began", time.perf_counter()))

    def committed(conn: Any) -> None:
        held.append((time.perf_counter() - conn.info.pop("began")) * 1000)

    event.listen(store.engine, "commit", committed)
    for label, chunk in (("one transaction", 10**12), ("in chunks", invocation_log.PRUNE_CHUNK)):
        now = time.time()
        for start in range(0, args.rows, 2000):
            rows = range(start, min(args.rows, start + 2000))
            batch = [LogRecord("bench", "dev/hello", 1, f"r{i}", now, 200, 1.0, '["hi"]') for i in rows]
            invocation_log.write(store.engine, batch)
        held.clear()
        started = time.perf_counter()
        gone = invocation_log.prune(
            store.engine, [("bench", "dev/hello")], 1000, None, chunk=chunk, pause_s=0.0
        )
        took = (time.perf_counter() - started) * 1000
        print(
            f"{label}: {gone:,} rows in {took:.0f} ms; longest transaction {max(held):.1f} ms "
            f"({len(held)} transactions)"
        )
    store.close()


if __name__ == "__main__":
    main()
