"""Cold start and memory: how long from starting `fnstage runtime` to every published function live, and
how much memory the runtime takes, with 1,000 and 10,000 published functions.

    /work/venv/bin/python bench/cold_start.py [--counts 1000,10000] [--repeat 3]

The functions (a 3-file function each, distinct names `dev/fn/N`, each with its own bundle) are
published through the service layer (`Services.deployments.save`, the code path of the API) into a
SQLite store in a temporary folder. Then `fnstage runtime --gateway bench --workers 1` starts (its
supervisor, the front, and one cell for dev); "ready" is the first moment `/_fnstage/health` says ok
(the first sync has given every cell its functions) and the last function published answers 200
(polled every 5 ms). RSS: the largest process of the runtime's tree (the cell) and the whole tree, once
ready. Each start is repeated `--repeat` times on the same store; the table shows medians.

`--baseline SRC` compares with another checkout of fnstage (e.g. `git worktree add /tmp/base <commit>`,
then `--baseline /tmp/base/src`): its runtime starts on the same store, alternately with this one
(baseline, this, baseline, this, ...), so both see the same machine; that run's `fnstage` comes first
on PYTHONPATH. `--store DIR` keeps the published stores in DIR/<count> and reuses them on the next run
(publishing 10,000 functions takes about 90 s).

`--fill bulk` (issue 17 item 3: 100,000 functions in one cell) saves one function and copies it in SQL
(`stores.bulk_copies`: function rows, history, published rows), then gives every published row its own
tiny one-file function, built by fnstage's builder (its own source, compiled bundle and hash: nothing
shared between them), all in the dev environment of one gateway, so one cell loads them all. About
40 s for 100,000 where saving them one by one would take a quarter of an hour.

After ready (issue 17 item 3: a cold start's loads are deferred): the first request to each of ten
functions at the end of the published order, then a second request to each (`first_requests`), the
time until the health counts no version pending (`warm_s`: the warm-up's last load), and the cell's
USS then (`cell_uss_after_warm_up_mib`; `cell_uss_mib` is the largest USS of the tree at ready).
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

import httpx
from machine import describe
from processes import cpu_by_role, descendants, role_of, rss_mib, stop_tree, uss_mib

INDEX = (
    "from utils import greet\n\n\nasync def main(ctx):\n"
    "    return {'message': greet(ctx.query.get('name', 'world'))}\n"
)
UTILS = (
    "from helpers import shout\n\nN = {N}\n\n\ndef greet(name):\n    return shout(f'Hello, {name}! #{N}')\n"
)
HELPERS = "def shout(text):\n    return text.upper()\n"


def publish(root: Path, count: int) -> str:
    from stores import bench_admin

    from fnstage.service import Services
    from fnstage.store.engine import sqlite_url
    from fnstage.store.store import Store

    url = sqlite_url(root)
    store = Store.open(url)
    services = Services.create(store)
    actor = bench_admin(store)
    services.gateways.create(actor, "bench")
    started = time.perf_counter()
    for i in range(count):
        files = {"index.py": INDEX, "utils.py": UTILS.replace("{N}", str(i)), "helpers.py": HELPERS}
        services.deployments.save(actor, "bench", f"dev/fn/{i}", files)
    print(
        f"published {count} functions in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True
    )
    store.close()
    return url


TINY = "async def main(ctx):\n    return 'Hello, world! #{I}'\n"


def bulk_publish(root: Path, count: int) -> str:
    """`count` published tiny functions, each its own bundle (see the module's docstring)."""
    from sqlalchemy import text
    from stores import bench_admin, bulk_copies

    from fnstage.build.builder import build
    from fnstage.service import Services
    from fnstage.store.engine import sqlite_url
    from fnstage.store.store import Store

    url = sqlite_url(root)
    store = Store.open(url)
    services = Services.create(store)
    actor = bench_admin(store)
    services.gateways.create(actor, "bench")
    started = time.perf_counter()
    services.deployments.save(actor, "bench", "dev/fn/seed", {"index.py": TINY.replace("{I}", "seed")})
    with store.write() as tx:
        bulk_copies(tx.conn, "bench", count - 1)
        names = tx.conn.execute(
            text("SELECT name FROM published WHERE gateway_id = 'bench' AND name != 'dev/fn/seed'")
        ).scalars()
        rows = []
        for i, name in enumerate(names):
            source = TINY.replace("{I}", str(i))
            bundle = build({"index.py": source})
            rows.append(
                {
                    "name": name,
                    "compiled": bundle.compiled,
                    "source": json.dumps({"index.py": source}),
                    "hash": bundle.hash,
                }
            )
        tx.conn.execute(
            text(
                "UPDATE published SET compiled = :compiled, source = :source, bundle_hash = :hash "
                "WHERE gateway_id = 'bench' AND name = :name"
            ),
            rows,
        )
    print(
        f"published {count} functions (bulk) in {time.perf_counter() - started:.1f} s",
        file=sys.stderr,
        flush=True,
    )
    store.close()
    return url


def published_store(root: Path, count: int, fill: str = "saves") -> str:
    """The store with `count` published functions in `root`, published now unless already there."""
    from fnstage.store.engine import sqlite_url

    if (root / "fnstage.db").exists() and (root / "complete").exists():
        return sqlite_url(root)
    if (root / "fnstage.db").exists():
        raise SystemExit(f"{root} holds an unfinished publish: remove it and run again")
    root.mkdir(parents=True, exist_ok=True)
    url = bulk_publish(root, count) if fill == "bulk" else publish(root, count)
    (root / "complete").write_text(str(count))
    return url


def start_once(
    url: str, port: int, count: int, probe: str, timeout: float = 300, src: str | None = None
) -> dict[str, float]:
    """One start of `fnstage runtime` (from the checkout `src`, or the installed one); seconds to ready.

    Ready: `/_fnstage/health` says ok (the first sync has given every cell its functions) and the
    function at `probe` (a path on host bench.dev.localhost) answers 200."""
    args = [sys.executable, "-m", "fnstage", "runtime", "--database-url", url, "--gateway", "bench"]
    args += ["--workers", "1", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    base = f"http://127.0.0.1:{port}"
    started = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    first_answer = None
    try:
        deadline = started + timeout
        while time.perf_counter() < deadline:
            try:
                health = httpx.get(f"{base}/_fnstage/health", timeout=5)
                if first_answer is None:
                    first_answer = time.perf_counter() - started
                if health.status_code == 200:
                    answer = httpx.get(f"{base}{probe}", headers={"Host": "bench.dev.localhost"}, timeout=5)
                    if answer.status_code == 200:
                        ready = time.perf_counter() - started
                        break
            except httpx.TransportError:
                pass
            time.sleep(0.005)
        else:
            raise RuntimeError(f"not ready with {count} functions within {timeout} s")
        tree = descendants(proc.pid)
        cpu = cpu_by_role(proc.pid, tree)
        first = first_requests(base, count, probe)
        warm = warmed(base, deadline, started)
        cells = [pid for pid in tree if role_of(pid, proc.pid) == "cells"]
        return {
            **first,
            "warm_s": warm,
            "cell_uss_after_warm_up_mib": max((uss_mib(pid) for pid in cells), default=0.0),
            "ready_s": ready,
            "first_health_answer_s": first_answer or ready,
            "largest_process_rss_mib": max(rss_mib([pid]) for pid in tree),
            "tree_rss_mib": rss_mib(tree),
            "cell_uss_mib": max(uss_mib(pid) for pid in tree),
            "tree_cpu_s": sum(cpu.values()),
            **{f"cpu_{role}_s": seconds for role, seconds in cpu.items()},
        }
    finally:
        stopping = time.perf_counter()
        stop_tree(descendants(proc.pid))
        proc.wait(10)
        print(f"  stopped in {time.perf_counter() - stopping:.2f} s", file=sys.stderr, flush=True)


FIRST_REQUESTS = 10


def first_requests(base: str, count: int, probe: str) -> dict[str, float]:
    """At ready: the first request to each of FIRST_REQUESTS functions at the end of the published
    order (on a deferred cold start still pending: the warm-up goes in order and has just begun; the
    answer waits for its load), then a second request to each (loaded), on one kept-alive connection;
    milliseconds, medians. `pending_at_first_request`: how many versions the health said were pending
    just before (0: nothing deferred, as on main)."""
    prefix = probe.rsplit("f", 1)[0] if "/bulk/" in probe else probe.rsplit("/", 1)[0] + "/"
    paths = [f"{prefix}{'f' if '/bulk/' in probe else ''}{count - 2 - i}" for i in range(FIRST_REQUESTS)]
    host = {"Host": "bench.dev.localhost"}
    with httpx.Client(base_url=base, timeout=10) as client:
        pending = client.get("/_fnstage/health").json().get("pending", 0)
        timings: dict[str, list[float]] = {"first": [], "second": []}
        for path in paths:
            for which in ("first", "second"):
                began = time.perf_counter()
                answer = client.get(path, headers=host)
                timings[which].append((time.perf_counter() - began) * 1000)
                if answer.status_code != 200:
                    raise RuntimeError(f"{path}: {answer.status_code} {answer.text[:200]}")
    return {
        "pending_at_first_request": float(pending),
        "first_request_ms": statistics.median(timings["first"]),
        "second_request_ms": statistics.median(timings["second"]),
    }


def warmed(base: str, deadline: float, started: float) -> float:
    """Seconds from exec until the health says nothing is pending (the warm-up's last load); a runtime
    that says nothing of pending versions (main) loaded everything before ready."""
    while time.perf_counter() < deadline:
        health = httpx.get(f"{base}/_fnstage/health", timeout=5).json()
        if not health.get("pending"):
            return time.perf_counter() - started
        time.sleep(0.01)
    raise RuntimeError("the warm-up did not end in time")


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "ready_s_median": round(statistics.median(r["ready_s"] for r in runs), 3),
        "ready_s_runs": [round(r["ready_s"], 3) for r in runs],
        "first_health_answer_s_median": round(statistics.median(r["first_health_answer_s"] for r in runs), 3),
        "largest_process_rss_mib_median": round(
            statistics.median(r["largest_process_rss_mib"] for r in runs), 1
        ),
        "tree_rss_mib_median": round(statistics.median(r["tree_rss_mib"] for r in runs), 1),
        "cell_uss_mib_median": round(statistics.median(r["cell_uss_mib"] for r in runs), 1),
        **{
            f"{key}_median": round(statistics.median(r[key] for r in runs), 3)
            for key in (
                "warm_s",
                "cell_uss_after_warm_up_mib",
                "first_request_ms",
                "second_request_ms",
                "pending_at_first_request",
            )
        },
        **{
            f"{key}_median": round(statistics.median(r[key] for r in runs), 3)
            for key in runs[0]
            if key.startswith(("cpu_", "tree_cpu"))
        },
        "load_averages": [r["load"] for r in runs],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--counts", default="1000,10000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline", metavar="SRC", help="the src folder of another fnstage checkout")
    parser.add_argument("--store", metavar="DIR", type=Path, help="keep and reuse the published stores here")
    parser.add_argument("--fill", choices=["saves", "bulk"], default="saves")
    args = parser.parse_args()
    from fnstage.testing import free_port

    table: dict[str, Any] = {}
    for count in [int(c) for c in args.counts.split(",")]:
        with tempfile.TemporaryDirectory() as tmp:
            probe = f"/bulk/f{count - 1}" if args.fill == "bulk" else f"/fn/{count - 1}"
            url = published_store((args.store or Path(tmp)) / f"{count}-{args.fill}", count, args.fill)
            runs: dict[str, list[dict[str, Any]]] = (
                {"baseline": [], "this": []} if args.baseline else {"this": []}
            )
            for _ in range(args.repeat):
                for which in runs:
                    load = describe()["load_average"]
                    src = args.baseline if which == "baseline" else None
                    runs[which].append({**start_once(url, free_port(), count, probe, src=src), "load": load})
                    print(f"{count} ({which}): {runs[which][-1]}", file=sys.stderr, flush=True)
        if args.baseline:
            sides = {which: summary(r) for which, r in runs.items()}
            sides["this/baseline"] = {
                key: round(sides["this"][key] / sides["baseline"][key], 2)
                for key in (
                    "ready_s_median",
                    "first_health_answer_s_median",
                    "tree_cpu_s_median",
                    "cpu_supervisor_s_median",
                    "warm_s_median",
                )
                if sides["baseline"][key]
            }
            table[str(count)] = sides
        else:
            table[str(count)] = summary(runs["this"])
    goal = "ready < 2 s at 10,000 (issue 11), < 5 s at 100,000 in one cell (issue 17.3)"
    result = {"functions": table, "goal": goal, "machine": describe()}
    if args.baseline:
        result["baseline"] = args.baseline
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
