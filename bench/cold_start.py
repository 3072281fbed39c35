"""Cold start and memory: how long from starting `fnstage runtime` to every published function live, and
how much memory the runtime takes, with 1,000 and 10,000 published functions.

    /work/venv/bin/python bench/cold_start.py [--counts 1000,10000] [--repeat 3]

The functions (a 3-file function each, distinct names `dev/fn/N`, each with its own bundle) are
published through the service layer (`Services.deployments.save`, the code path of the API) into a
SQLite store in a temporary folder. Then `fnstage runtime --gateway bench --workers 1` starts; "ready"
is the first `/_fnstage/health` answer whose `live` equals the number published (polled every 5 ms).
RSS is that of the runtime's worker process (and of the whole tree: granian's supervisor + worker) once
ready. Each start is repeated `--repeat` times on the same store; the table shows medians.

`--baseline SRC` compares with another checkout of fnstage (e.g. `git worktree add /tmp/base <commit>`,
then `--baseline /tmp/base/src`): its runtime starts on the same store, alternately with this one
(baseline, this, baseline, this, ...), so both see the same machine; that run's `fnstage` comes first
on PYTHONPATH. `--store DIR` keeps the published stores in DIR/<count> and reuses them on the next run
(publishing 10,000 functions takes about 90 s).
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
from processes import descendants, rss_mib, stop_tree

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


def published_store(root: Path, count: int) -> str:
    """The store with `count` published functions in `root`, published now unless already there."""
    from fnstage.store.engine import sqlite_url

    if (root / "fnstage.db").exists() and (root / "complete").exists():
        return sqlite_url(root)
    if (root / "fnstage.db").exists():
        raise SystemExit(f"{root} holds an unfinished publish: remove it and run again")
    root.mkdir(parents=True, exist_ok=True)
    url = publish(root, count)
    (root / "complete").write_text(str(count))
    return url


def start_once(
    url: str, port: int, count: int, timeout: float = 300, src: str | None = None
) -> dict[str, float]:
    """One start of `fnstage runtime` (from the checkout `src`, or the installed one); seconds to ready."""
    args = [sys.executable, "-m", "fnstage", "runtime", "--database-url", url, "--gateway", "bench"]
    args += ["--workers", "1", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    health = f"http://127.0.0.1:{port}/_fnstage/health"
    started = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    first_answer = None
    try:
        deadline = started + timeout
        while time.perf_counter() < deadline:
            try:
                live = httpx.get(health, timeout=5).json()["live"]
                if first_answer is None:
                    first_answer = time.perf_counter() - started
                if live == count:
                    ready = time.perf_counter() - started
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.005)
        else:
            raise RuntimeError(f"not ready with {count} functions within {timeout} s")
        tree = descendants(proc.pid)
        worker = tree[-1]
        return {
            "ready_s": ready,
            "first_health_answer_s": first_answer or ready,
            "worker_rss_mib": rss_mib([worker]),
            "tree_rss_mib": rss_mib(tree),
        }
    finally:
        stop_tree(descendants(proc.pid))
        proc.wait(10)


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "ready_s_median": round(statistics.median(r["ready_s"] for r in runs), 3),
        "ready_s_runs": [round(r["ready_s"], 3) for r in runs],
        "first_health_answer_s_median": round(statistics.median(r["first_health_answer_s"] for r in runs), 3),
        "worker_rss_mib_median": round(statistics.median(r["worker_rss_mib"] for r in runs), 1),
        "tree_rss_mib_median": round(statistics.median(r["tree_rss_mib"] for r in runs), 1),
        "load_averages": [r["load"] for r in runs],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--counts", default="1000,10000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline", metavar="SRC", help="the src folder of another fnstage checkout")
    parser.add_argument("--store", metavar="DIR", type=Path, help="keep and reuse the published stores here")
    args = parser.parse_args()
    from fnstage.testing import free_port

    table: dict[str, Any] = {}
    for count in [int(c) for c in args.counts.split(",")]:
        with tempfile.TemporaryDirectory() as tmp:
            url = published_store((args.store or Path(tmp)) / str(count), count)
            runs: dict[str, list[dict[str, Any]]] = (
                {"baseline": [], "this": []} if args.baseline else {"this": []}
            )
            for _ in range(args.repeat):
                for which in runs:
                    load = describe()["load_average"]
                    src = args.baseline if which == "baseline" else None
                    runs[which].append({**start_once(url, free_port(), count, src=src), "load": load})
                    print(f"{count} ({which}): {runs[which][-1]}", file=sys.stderr, flush=True)
        if args.baseline:
            table[str(count)] = {which: summary(r) for which, r in runs.items()}
        else:
            table[str(count)] = summary(runs["this"])
    result = {"functions": table, "goal": "ready < 2 s at 10,000", "machine": describe()}
    if args.baseline:
        result["baseline"] = args.baseline
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
