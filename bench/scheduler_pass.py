"""What the scheduler costs: its idle pass every second, and the claim of one tick, as triggers grow.

Every `fnstage up` asks the store once a second which triggers are due (and when the next one is);
this measures that pass with 10 and with 10,000 triggers, none due, and the claim of a due tick (the
conditional UPDATE and the run's INSERT, one transaction), side by side in one run, on SQLite and,
with --postgres URL (a maintenance database: a new one is created and dropped), on PostgreSQL.

    .venv/bin/python bench/scheduler_pass.py [--postgres postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from machine import describe, median
from stores import bench_admin

from fnstage.service import Services
from fnstage.service.scheduler import Scheduler
from fnstage.store import schema as t
from fnstage.store.engine import sqlite_url
from fnstage.store.store import Store

T0 = datetime(2030, 1, 1, 10, 59, 30, tzinfo=UTC)
ROUNDS, PASSES, CLAIMS = 5, 200, 50
SIZES = (10, 10_000)
FN = {"index.py": "def main(ctx):\n    return 1\n"}


def fill(store: Store, count: int) -> None:
    """`count` hourly triggers on one function, next tick 11:00 (none due at 10:59:30)."""
    actor = bench_admin(store)
    services = Services.create(store, clock=lambda: T0)
    services.gateways.create(actor, "bench")
    services.deployments.save(actor, "bench", "dev/jobs/report", FN)
    services.triggers.add(actor, "bench", "dev/jobs/report", "0 * * * *", name="t0")
    with store.write() as tx:  # the rest in one statement: adding 10,000 one by one measures nothing here
        first = tx.conn.execute(t.triggers.select()).first()
        assert first is not None
        row = dict(first._mapping)
        del row["id"]
        tx.conn.execute(t.triggers.insert(), [{**row, "name": f"t{i}"} for i in range(1, count)])


def idle_pass_ms(scheduler: Scheduler) -> float:
    started = time.perf_counter()
    assert scheduler.tick() == []
    scheduler._until_next_tick()  # the pass's second question: how long it may sleep
    return (time.perf_counter() - started) * 1000


def claim_ms(store: Store, count: int) -> list[float]:
    """CLAIMS times: one trigger made due, and claimed by one pass (a minute later each time)."""
    samples = []
    with store.write() as tx:  # none due in the days measured, but the one made due
        tx.conn.execute(t.triggers.update().values(next_tick=T0 + timedelta(days=365), cron="0 0 1 1 *"))
        ids = [r.id for r in tx.conn.execute(t.triggers.select().limit(CLAIMS))]
    for i in range(CLAIMS):
        trigger_id = ids[i % len(ids)]
        moment = T0 + timedelta(days=1, minutes=i)
        with store.write() as tx:
            tx.conn.execute(
                t.triggers.update()
                .where(t.triggers.c.id == trigger_id)
                .values(next_tick=moment, cron="0 0 1 1 *")  # then not due for a year
            )
        scheduler = Scheduler(store, lambda moment=moment: moment + timedelta(seconds=1))
        started = time.perf_counter()
        assert len(scheduler.tick()) == 1
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def run(engine: str, urls: dict[int, str]) -> None:
    stores = {n: Store.open(url) for n, url in urls.items()}
    try:
        for n, store in stores.items():
            fill(store, n)
        idle: dict[int, list[float]] = {n: [] for n in stores}
        for _ in range(ROUNDS):  # interleaved, so the machine's noise falls on both sizes alike
            for n, store in stores.items():
                scheduler = Scheduler(store, lambda: T0)
                idle[n] += [idle_pass_ms(scheduler) for _ in range(PASSES)]
        claims = {n: claim_ms(store, n) for n, store in stores.items()}
        small, big = SIZES
        print(
            f"| {engine} | {median(idle[small]):.2f} ms | {median(idle[big]):.2f} ms | "
            f"**{median(idle[big]) / median(idle[small]):.2f}** | {median(claims[small]):.2f} ms | "
            f"{median(claims[big]):.2f} ms | **{median(claims[big]) / median(claims[small]):.2f}** |"
        )
    finally:
        for store in stores.values():
            store.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--postgres", metavar="URL", help="a PostgreSQL maintenance database URL")
    args = parser.parse_args()
    print(describe())
    print(f"{ROUNDS} rounds x {PASSES} idle passes per size, interleaved; {CLAIMS} claims per size")
    print("| engine | idle pass, 10 triggers | 10,000 | ratio | claim, 10 | 10,000 | ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as folder:
        urls = {}
        for n in SIZES:
            (Path(folder) / str(n)).mkdir()
            urls[n] = sqlite_url(Path(folder) / str(n))
        run("SQLite", urls)
    if args.postgres:
        names = {n: f"bench_sched_{n}_{uuid.uuid4().hex[:8]}" for n in SIZES}
        conninfo = args.postgres.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(conninfo, autocommit=True) as admin:
            for name in names.values():
                admin.execute(f'CREATE DATABASE "{name}"')
        try:
            base = args.postgres.rsplit("/", 1)[0]
            run("PostgreSQL", {n: f"{base}/{name}" for n, name in names.items()})
        finally:
            with psycopg.connect(conninfo, autocommit=True) as admin:
                for name in names.values():
                    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
