"""Durable invocation logs (issue 15): invocation throughput with them on against off, side by side.

    .venv/bin/python bench/durable_logs.py [--rounds 5] [--seconds 5] [--database-url URL]

wrk -t1 -c64 against one small async function that logs one line with `ctx.log`, in both layouts: a
cell serving its port directly (`fnstage runtime --gateway bench --env dev`, production behind a
proxy) and through the front as `fnstage up` runs it (`fnstage runtime --gateway bench`, the front in
the supervisor's process, beside the log writer); each server started afresh, rounds interleaved:
`FNSTAGE_LOGS=on` (every invocation shipped to the supervisor and written to the store in
batches) and `FNSTAGE_LOGS=off` (memory only, as before). After each "on" round it counts the rows
the store gained against the requests wrk made (`FNSTAGE_LOG_KEEP` is raised so pruning does not
hide them), so a writer that falls behind shows as dropped entries, not as a fast number.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from cells import free_port, start, wrk
from machine import describe
from processes import descendants, stop_tree
from sqlalchemy import func, select

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


def stored_rows(url: str) -> int:
    from fnstage.store import schema
    from fnstage.store.engine import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.scalar(select(func.count()).select_from(schema.invocation_logs)) or 0)
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--database-url", default=None, help="PostgreSQL (a fresh database); SQLite if unset")
    args = parser.parse_args()
    print(describe(), flush=True)
    src = str(Path(__file__).resolve().parents[1] / "src")
    layouts = {"cell": ["--env", "dev"], "front": []}
    results: dict[str, list[float]] = {f"{layout} logs {m}": [] for layout in layouts for m in ("on", "off")}
    kept: list[float] = []
    with tempfile.TemporaryDirectory(prefix="fnstage-bench-logs-") as folder:
        url = publish(args.database_url, Path(folder))
        os.environ["FNSTAGE_LOG_KEEP"] = "1000000"
        os.environ["FNSTAGE_LOG_QUEUE"] = "1000000"
        for round_ in range(args.rounds):
            for name in results:
                layout, _, mode = name.split()
                os.environ["FNSTAGE_LOGS"] = mode
                port = free_port()
                process = start(["--database-url", url, "--gateway", "bench", *layouts[layout]], port, src)
                try:
                    wrk(port, 1)  # warm-up
                    time.sleep(1.5)  # its entries written before counting
                    before = stored_rows(url)
                    rate, total = wrk(port, args.seconds)
                    results[name].append(rate)
                    if mode == "on" and total:
                        time.sleep(3)  # the writer's last batches
                        kept.append((stored_rows(url) - before) / total)
                finally:
                    stop_tree([process.pid, *descendants(process.pid)])
                print(f"round {round_ + 1} {name}: {rate:,.0f} req/s", flush=True)
    for layout in layouts:
        on = statistics.median(results[f"{layout} logs on"])
        off = statistics.median(results[f"{layout} logs off"])
        print(
            f"{layout}: median logs on {on:,.0f} req/s, logs off {off:,.0f} req/s, "
            f"ratio on/off {on / off:.2f}"
        )
    print(f"rows written per request made (logs on, each round): {', '.join(f'{k:.3f}' for k in kept)}")


if __name__ == "__main__":
    main()
