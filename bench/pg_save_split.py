"""Where a save's time goes, in process (the service layer, no HTTP), on SQLite and on PostgreSQL, for
this checkout and optionally another build side by side (issue 17, goal 1).

    .venv/bin/python bench/pg_save_split.py [--saves 200] [--rounds 3] [--base-src /tmp/pg-before/src]
        [--server URL]

Each round runs every (build, engine) in a child process of its own (`PYTHONPATH` = that build's
src), in turn: a fresh database, 20 warm-up saves of a 3-file function, then `--saves` timed ones.
Per save: `wall` and `cpu` (the process's own CPU time: Python, SQLAlchemy, psycopg; the server's
work is in `wall` only) and, on PostgreSQL, the two waits a save cannot avoid: `first` (checkout,
BEGIN and the transaction's first round trip, `engine._begin`) and `commit` (COMMIT with the answers
still owed: the WAL flush of `synchronous_commit = on` is in it). Medians of each round, then the
median over rounds.
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
from typing import Any

HERE = Path(__file__).resolve().parent


def files(i: int) -> dict[str, str]:
    return {
        "index.py": "from utils import greet\n\ndef main(ctx):\n    return greet(ctx)\n",
        "utils.py": f"def greet(ctx):\n    return {{'hello': {i}}}\n",
        "consts.py": "X = 1\n",
    }


def child(url: str, saves: int) -> dict[str, float]:
    """One (build, engine): saves through `Services`, timed; the PostgreSQL waits by wrapping the
    engine's begin and commit where this build has them."""
    from fnstage.service import Actor, Services
    from fnstage.store import engine as store_engine
    from fnstage.store.store import Store

    waits: dict[str, list[float]] = {"first": [], "commit": []}
    begin, leave = store_engine._begin, store_engine._Pipeline.leave

    def timed_begin(*args: Any) -> Any:
        started = time.perf_counter()
        try:
            return begin(*args)
        finally:
            waits["first"].append(time.perf_counter() - started)

    def timed_leave(self: Any) -> None:
        committing = self._context is not None  # `abandon` leaves again: a no-op, not timed
        started = time.perf_counter()
        leave(self)
        if committing:
            waits["commit"].append(time.perf_counter() - started)

    store_engine._begin = timed_begin
    store_engine._Pipeline.leave = timed_leave  # type: ignore[method-assign]  # a bench's probe
    store = Store.open(url)
    services = Services.create(store)
    with store.write() as tx:
        user = tx.create_user("ada", is_admin=True)
    actor = Actor(user.id, user.name, True)
    services.gateways.create(actor, "bench")
    for i in range(20):
        services.deployments.save(actor, "bench", "dev/user/me", files(i))
    wall, cpu = [], []
    for waited in waits.values():
        waited.clear()
    for i in range(20, 20 + saves):
        started, started_cpu = time.perf_counter(), time.process_time()
        services.deployments.save(actor, "bench", "dev/user/me", files(i))
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    store.close()
    result = {"wall": statistics.median(wall), "cpu": statistics.median(cpu)}
    for name, waited in waits.items():
        if waited and url.startswith("postgres"):
            result[name] = statistics.median(waited[-saves:])
    return {name: round(seconds * 1000, 3) for name, seconds in result.items()}


def run_child(src: str | None, url: str, saves: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (src, str(HERE)) if p)}
    done = subprocess.run(
        [sys.executable, __file__, "--child", url, "--saves", str(saves)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--saves", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--base-src", help="another build's src folder, measured beside this one")
    parser.add_argument("--server", default=None)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.saves)))
        return
    sys.path.insert(0, str(HERE))
    from machine import describe
    from pg_bench import DEFAULT_SERVER, scratch_database

    from fnstage.store.engine import sqlite_url

    builds = {"this": None} if not args.base_src else {"base": args.base_src, "this": None}
    rounds: dict[str, list[dict[str, float]]] = {}
    before = describe()
    for _ in range(args.rounds):
        for build, src in builds.items():
            with tempfile.TemporaryDirectory(prefix="pg-split-") as tmp:
                rounds.setdefault(f"{build}/sqlite", []).append(
                    run_child(src, sqlite_url(Path(tmp)), args.saves)
                )
            with scratch_database(args.server or DEFAULT_SERVER) as url:
                rounds.setdefault(f"{build}/postgres", []).append(run_child(src, url, args.saves))
    results: dict[str, Any] = {
        name: {key: round(statistics.median(r[key] for r in runs), 3) for key in runs[0]}
        for name, runs in rounds.items()
    }
    for build in builds:
        pg, lite = results[f"{build}/postgres"], results[f"{build}/sqlite"]
        results[f"{build}: postgres / sqlite"] = {
            "wall": round(pg["wall"] / lite["wall"], 3),
            "cpu": round(pg["cpu"] / lite["cpu"], 3),
        }
    results["unit"] = "ms per save, median over rounds of each round's median"
    print(json.dumps({**results, "machine_before": before, "machine_after": describe()}, indent=2))


if __name__ == "__main__":
    main()
