"""The save path on PostgreSQL against SQLite, side by side in one run (issue 17, goal 1: within 1.2x).

    .venv/bin/python bench/pg_vs_sqlite.py [--saves 200] [--base-src /tmp/pg-before/src] [--server URL]
        [--first-port 43100]

Two real `fnstage up` of this checkout, one on SQLite (its data folder) and one on PostgreSQL (a
database of its own on `--server`, dropped afterwards); with `--base-src`, two more of another
build (e.g. a `git worktree` of main), so before and after are measured in the same run. Each round
saves a 3-file function (one file changed) to every one of them in turn, rotating the order, so a
burst of load hits all alike. Per save:

- `put`: the save request (HTTP, auth, build, commit), sent -> answered;
- `live`: sent -> the first response of the new version from that `up`'s runtime, polled from this
  process once the save is answered (a poll is one keep-alive request: the granularity is its round
  trip; no poller runs while a save is timed, so none takes a CPU from it);
- `cpu`: CPU time of the `up`'s whole process tree (API, runtime, cells) per save, polls included.

Ports: `--first-port` and up (two per `up`), so a run stays in the range it was given.
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import statistics
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from machine import describe, percentile
from pg_bench import DEFAULT_SERVER, scratch_database
from processes import cpu_seconds, descendants
from publish_to_live import files

from fnstage.testing import UpProcess

SAVE = "/api/v1/gateways/bench/functions/dev/user/me"
SERVED = "/bench/dev/user/me?name=Ada"


class Target:
    """One `fnstage up` under measure, with its API client and a keep-alive connection to its runtime."""

    def __init__(self, name: str, up: UpProcess) -> None:
        self.name = name
        self.up = up
        self.api = up.client()
        self.runtime = http.client.HTTPConnection("127.0.0.1", up.runtime_port, timeout=10)
        self.put_ms: list[float] = []
        self.live_ms: list[float] = []
        self.cpu_s = 0.0

    def served_version(self) -> int:
        self.runtime.request("GET", SERVED)
        response = self.runtime.getresponse()
        response.read()
        return int(response.headers.get("x-fnstage-version") or 0)

    def save(self, i: int, timed: bool) -> None:
        sent = time.perf_counter()
        response = self.api.put(SAVE, json={"files": files(i), "changelog": f"save {i}"})
        answered = time.perf_counter()
        response.raise_for_status()
        version = response.json()["function"]["version"]
        deadline = time.monotonic() + 10
        while self.up.with_runtime and self.served_version() < version:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: version {version} never served")
        live = time.perf_counter()
        if timed:
            self.put_ms.append((answered - sent) * 1000)
            self.live_ms.append((live - sent) * 1000)

    def tree_cpu(self) -> float:
        assert self.up.process is not None
        return cpu_seconds(descendants(self.up.process.pid))


def free_in_range(start: int) -> tuple[int, int]:
    """The first port from `start` nobody listens on (the `up`s already started hold some, and their
    cells take ports of their own), and where to look for the next one."""
    for port in range(start, start + 200):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:  # taken: try the next pair
                continue
        return port, port + 1
    raise RuntimeError(f"no free port in {start}..{start + 199}")


def summary(values: list[float]) -> dict[str, float]:
    return {"p50": round(statistics.median(values), 2), "p99": round(percentile(values, 0.99), 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--saves", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--base-src", help="another build's src folder, measured beside this one")
    parser.add_argument("--server", default=DEFAULT_SERVER)
    parser.add_argument("--first-port", type=int, default=43100)
    parser.add_argument(
        "--no-runtime",
        action="store_true",
        help="the control planes alone: the PUT without a runtime's reaction",
    )
    args = parser.parse_args()
    builds = {"this": None} if not args.base_src else {"base": args.base_src, "this": None}
    before = describe()
    with tempfile.TemporaryDirectory(prefix="pg-bench-") as tmp, ExitStack() as stack:
        targets: list[Target] = []
        port = args.first_port
        for build, src in builds.items():
            for engine in ("sqlite", "postgres"):
                url = stack.enter_context(scratch_database(args.server)) if engine == "postgres" else None
                env = {"PYTHONPATH": src} if src else None
                up = UpProcess(
                    Path(tmp) / f"{build}-{engine}",
                    extra_env=env,
                    database_url=url,
                    with_runtime=not args.no_runtime,
                )
                api_port, port = free_in_range(port)
                runtime_port, port = free_in_range(port)
                up.port, up.runtime_port = api_port, runtime_port
                up.url, up.runtime_url = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{runtime_port}"
                stack.enter_context(up.start(timeout=120))
                stack.callback(up.stop)
                target = Target(f"{build}/{engine}", up)
                target.api.post("/api/v1/gateways", json={"id": "bench"}).raise_for_status()
                targets.append(target)
        for i in range(args.warmup):
            for target in targets:
                target.save(i, timed=False)
        for target in targets:
            target.cpu_s = -target.tree_cpu()
        for i in range(args.warmup, args.warmup + args.saves):
            shift = i % len(targets)
            for target in targets[shift:] + targets[:shift]:
                target.save(i, timed=True)
                time.sleep(0.005)  # a breath between saves: the runtime's status report goes out
        for target in targets:
            target.cpu_s += target.tree_cpu()
            target.api.close()
            target.runtime.close()
    results: dict[str, object] = {
        t.name: {
            "put_ms": summary(t.put_ms),
            "live_ms": summary(t.live_ms),
            "cpu_ms_per_save": round(t.cpu_s * 1000 / args.saves, 2),
        }
        for t in targets
    }
    by_name = {t.name: t for t in targets}
    for build in builds:
        pg, lite = by_name[f"{build}/postgres"], by_name[f"{build}/sqlite"]
        results[f"{build}: postgres / sqlite"] = {
            "put_p50": round(statistics.median(pg.put_ms) / statistics.median(lite.put_ms), 3),
            "live_p50": round(statistics.median(pg.live_ms) / statistics.median(lite.live_ms), 3)
            if not args.no_runtime
            else None,
        }
    results["saves_each"] = args.saves
    results["goal"] = "postgres / sqlite <= 1.2 for put_p50 and live_p50"
    print(json.dumps({**results, "machine_before": before, "machine_after": describe()}, indent=2))


if __name__ == "__main__":
    main()
