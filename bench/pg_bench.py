"""PostgreSQL: publish -> live, and save latency with 10 vs 10,000 functions in the gateway.

    /work/venv/bin/python bench/pg_bench.py live [--saves 200] [--server URL]
    /work/venv/bin/python bench/pg_bench.py scale [--functions 10000] [--saves 200] [--server URL]
        [--engine postgres|sqlite] [--fill saves|bulk]

`--server`: a PostgreSQL server where the user may create databases (default: the local one on
127.0.0.1:5432); each run creates a database of its own and drops it afterwards.

`live`: as bench/publish_to_live.py, on PostgreSQL: a real `fnstage up --database-url` (API, and its
runtime in a child process woken by LISTEN/NOTIFY), a poller hammering the runtime on one keep-alive
connection, 200 saves of a 3-file function through the HTTP API; client-side latency = first response
carrying the new version minus the moment the PUT was sent; server-side, commit -> the runtime reported
it live (the rollout's `latency_ms`).

`scale`: in-process saves through the service layer (what the API calls, no HTTP), of one function in a
gateway holding 10 functions (`--small`), then in one holding N: the median save must not grow with N
(issue 17 goal 5: ratio <= 1.1). `--fill saves` fills each gateway by saving its functions one by one
(N saves); `--fill bulk` saves one and copies it N-2 times in SQL (its function row, two history
entries, its published row and log entry, each under a name of its own), which takes seconds at
100,000 where the saves take most of an hour. `--engine sqlite` measures the same on SQLite (a
temporary folder). On PostgreSQL, prints the EXPLAIN of the save's statements that touch a gateway's
tables, in the big one.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from machine import describe, median, percentile
from processes import running_up
from publish_to_live import measure_saves
from sqlalchemy import event
from sqlalchemy.engine import make_url
from stores import bench_admin, bulk_copies

from fnstage.service import Actor, Services
from fnstage.store.engine import sqlite_url
from fnstage.store.store import Store

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


@contextmanager
def scratch_database(server: str) -> Iterator[str]:
    name = f"pgtask_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def stats(values: list[float]) -> dict[str, float]:
    return {
        "p50": round(median(values), 2),
        "p99": round(percentile(values, 0.99), 2),
        "max": round(max(values), 2),
    }


def live(args: argparse.Namespace) -> dict[str, object]:
    with (
        tempfile.TemporaryDirectory() as tmp,
        scratch_database(args.server) as url,
        running_up(Path(tmp) / "up", database_url=url, timeout=90) as up,
        up.client() as api,
    ):
        api.post("/api/v1/gateways", json={"id": "bench"}).raise_for_status()
        saves = measure_saves(api, up.runtime_port, args.saves)
    return {
        "saves": args.saves,
        "send_to_first_new_response_ms": stats(saves.client_ms),
        "save_request_ms": stats(saves.save_ms),
        "server_commit_to_live_ms": stats(saves.server_ms),
        "served_after_save_answered_ms": stats(
            [c - s for c, s in zip(saves.client_ms, saves.save_ms, strict=True)]
        ),
        "poller": {
            "requests": saves.poller.requests,
            "errors": saves.poller.errors,
            "went_back": saves.poller.went_back,
        },
        "goal": "p50 <= 10 ms, p99 <= 50 ms",
    }


def timed_saves(services: Services, actor: Actor, gateway: str, saves: int, first: int = 0) -> list[float]:
    """`saves` saves of dev/measured, each a change (numbered from `first`: a save of the same code
    changes nothing, and costs a fraction of one that does)."""
    times = []
    for i in range(first, first + saves):
        body = {"index.py": f"def main(ctx):\n    return {{'n': {i}}}\n"}
        start = time.perf_counter()
        services.deployments.save(actor, gateway, "dev/measured", body)
        times.append((time.perf_counter() - start) * 1000)
    return times


@contextmanager
def scale_store(args: argparse.Namespace) -> Iterator[Store]:
    if args.engine == "sqlite":
        with tempfile.TemporaryDirectory(prefix="pg-scale-") as tmp:
            store = Store.open(sqlite_url(Path(tmp)))
            yield store
            store.close()
        return
    with scratch_database(args.server) as url:
        store = Store.open(url)
        yield store
        store.close()


def scale(args: argparse.Namespace) -> dict[str, object]:
    with scale_store(args) as store:
        services = Services.create(store)
        actor = bench_admin(store)
        sizes = {"small": args.small, "big": args.functions}
        fill_s = {}
        for gateway, count in sizes.items():
            services.gateways.create(actor, gateway)
            start = time.perf_counter()
            if args.fill == "bulk":
                body = {"index.py": "def main(ctx):\n    return {'fn': 0}\n"}
                services.deployments.save(actor, gateway, "dev/fn/seed", body)
                with store.write() as tx:
                    bulk_copies(tx.conn, gateway, count - 2)  # plus the seed and the measured one
            else:
                for i in range(count - 1):  # plus the measured one
                    body = {"index.py": f"def main(ctx):\n    return {{'fn': {i}}}\n"}
                    services.deployments.save(actor, gateway, f"dev/fn/f{i:05d}", body)
            fill_s[gateway] = round(time.perf_counter() - start, 1)
            print(f"{gateway}: {count} functions in {fill_s[gateway]} s", file=sys.stderr)
        with store.engine.connect() as conn:  # fresh planner statistics after the bulk fill
            conn.exec_driver_sql("ANALYZE")
            conn.commit()
        timed_saves(services, actor, "small", 20, first=1_000_000)  # warm up both
        timed_saves(services, actor, "big", 20, first=1_000_000)
        rounds: dict[str, list[float]] = {"small": [], "big": []}
        per_turn = max(1, args.saves // args.rounds)
        for turn in range(args.saves // per_turn):  # interleaved, so a burst of load hits both alike
            for gateway in ("small", "big") if turn % 2 else ("big", "small"):
                rounds[gateway].extend(timed_saves(services, actor, gateway, per_turn, turn * per_turn))
        with store.read() as tx:
            counted = {gw: len(tx.list_functions(gw)) for gw in sizes}
        plans = explain_a_save(store, services, actor, "big") if args.engine == "postgres" else []
    small, big = statistics.median(rounds["small"]), statistics.median(rounds["big"])
    return {
        "engine": args.engine,
        "fill": args.fill,
        "functions": counted,
        "fill_seconds": fill_s,
        "save_ms": {gw: stats(values) for gw, values in rounds.items()},
        "ratio_big_to_small_p50": round(big / small, 3),
        "goal": "ratio <= 1.1",
        "plans": plans,
    }


def explain_a_save(store: Store, services: Services, actor: Actor, gateway: str) -> list[str]:
    """One save's statements, each EXPLAINed (no ANALYZE, so nothing runs twice): the plans that
    read a table of the gateway must be index scans, never a scan of the gateway's rows."""
    statements: list[tuple[str, object]] = []

    def capture(conn: object, cursor: object, statement: str, parameters: object, *rest: object) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE", "INSERT")):
            statements.append((statement, parameters))

    event.listen(store.engine, "before_cursor_execute", capture)
    try:
        services.deployments.save(
            actor, gateway, "dev/measured", {"index.py": "def main(ctx):\n    return 1\n"}
        )
    finally:
        event.remove(store.engine, "before_cursor_execute", capture)
    out = []
    with store.engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        assert raw is not None
        with raw.cursor() as cursor:
            for statement, parameters in statements:
                if "pg_notify" in statement or "pg_advisory" in statement:
                    continue
                if isinstance(parameters, list | tuple):  # executemany: one row's parameters do
                    parameters = parameters[0]
                try:
                    cursor.execute("EXPLAIN " + statement, parameters)
                    plan = " | ".join(row[0].strip() for row in cursor.fetchall())
                except psycopg.Error as exc:
                    raw.rollback()
                    plan = f"(not explained: {type(exc).__name__})"
                out.append(f"{' '.join(statement.split())[:90]}  =>  {plan[:220]}")
        raw.rollback()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["live", "scale"])
    parser.add_argument("--server", default=DEFAULT_SERVER)
    parser.add_argument("--saves", type=int, default=200)
    parser.add_argument("--functions", type=int, default=10_000)
    parser.add_argument("--small", type=int, default=10, help="functions in the small gateway")
    parser.add_argument(
        "--rounds", type=int, default=5, help="turns per size (--saves 200 --rounds 200: one save a turn)"
    )
    parser.add_argument("--engine", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--fill", choices=["saves", "bulk"], default="saves")
    args = parser.parse_args()
    before = describe()
    results = live(args) if args.what == "live" else scale(args)
    print(json.dumps({**results, "machine_before": before, "machine_after": describe()}, indent=2))


if __name__ == "__main__":
    main()
