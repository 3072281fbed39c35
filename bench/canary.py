"""Canary releases (issue 14): what a split costs, and how soon a regression's traffic is back on stable.

    .venv/bin/python bench/canary.py [--rounds 5] [--seconds 5] [--regressions 3] [--starts 10]
    .venv/bin/python bench/canary.py --only-split [--before SRC] [--in-process-rounds 7] [--rounds 5]
    .venv/bin/python bench/canary.py --only-starts 10 [--postgres URL]

1. **The cost of a split**: first in process, the runtime app's own CPU time per request, built as a
   cell builds it (metrics on), each measurement in a fresh process, `--in-process-rounds` rounds with
   the sides in turn: (a) no canary, (b) a canary at 10%, (c) the same with every request carrying a
   client key; with `--before SRC` the same three from another checkout's `src`, in the same rounds.
   Then wrk -t1 -c64 (`cells.wrk`) against one small async function in prod, served by
   `fnstage runtime --gateway bench --env prod` (supervisor, front and cell), rounds interleaved, each
   server started afresh: (a) no canary; (b) a canary of the same code running at 10% (the split, the
   choice per request, the canary's version beside the stable one, both sides counted), req/s and the
   CPU time of the runtime's whole process tree per request. Goal: (b) >= 95% of (a).
2. **Regression -> traffic back on stable**: a real `fnstage up` (control plane judging every second,
   the default), 4 clients sending GETs to prod; a canary whose code raises on every request is released
   at 20% (min 50 requests a side, bake 10 minutes). Measured from the release's answer (the regression
   starts) to the decision (its `decided_at`) and to the last answer from the canary's version.
3. **Canary start -> split live**: a real `fnstage up` (SQLite, or PostgreSQL with `--postgres`), 4
   clients sending GETs to prod; a canary of working code released at 50%, then aborted, `--starts`
   times. Measured from the canary's commit (`started_at`) to the first answer from its version (the
   runtime heard of the canary and its cell splits; at 50% and hundreds of requests a second the first
   canary answer follows within a few ms).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import httpx
from cells import free_port, start, wrk
from machine import describe
from processes import cpu_seconds, descendants, stop_tree

FUNCTION = "async def main(ctx):\n    return 'Hello, world!'\n"
BROKEN = "async def main(ctx):\n    raise RuntimeError('regression')\n"
HOST = "bench.prod.localhost"


def publish(root: Path, with_canary: bool) -> str:
    from stores import bench_admin

    from fnstage.domain.canary import CanarySpec
    from fnstage.service import Services
    from fnstage.store.engine import sqlite_url
    from fnstage.store.store import Store

    url = sqlite_url(root)
    store = Store.open(url)
    services = Services.create(store)
    actor = bench_admin(store)
    services.gateways.create(actor, "bench", allow_dev_to_prod=True)
    services.deployments.save(actor, "bench", "dev/hello", {"index.py": FUNCTION})
    services.deployments.promote(actor, "bench", "dev/hello", "prod", "1.0.0", "stable")
    if with_canary:  # the same code again as 1.0.1, at 10%, baking longer than the benchmark runs
        services.deployments.save(actor, "bench", "dev/hello", {"index.py": FUNCTION + "\n"})
        spec = CanarySpec((10,), bake_s=7 * 24 * 3600)
        services.deployments.promote(actor, "bench", "dev/hello", "prod", "1.0.1", "canary", canary=spec)
    store.close()
    return url


def wait_for_split(port: int) -> None:
    """Until the canary's version answers some requests (the runtime has read the canary)."""
    deadline = time.monotonic() + 60
    with httpx.Client(headers={"Host": "bench.prod.localhost"}) as client:
        while time.monotonic() < deadline:
            versions = {
                client.get(f"http://127.0.0.1:{port}/hello").headers["x-fnstage-version"] for _ in range(50)
            }
            if len(versions) == 2:
                return
            time.sleep(0.2)
    raise RuntimeError("the canary never answered")


def split_cost(rounds: int, seconds: int) -> dict[str, list[tuple[float, float]]]:
    """Per server, per round: (requests per second, CPU microseconds per request of the runtime's
    whole process tree: supervisor, front and cell). The second is what a busy machine disturbs least."""
    folders = {name: Path(tempfile.mkdtemp(prefix="fnstage-bench-canary-")) for name in ("a", "b")}
    urls = {"(a) no canary": publish(folders["a"], False), "(b) canary at 10%": publish(folders["b"], True)}
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in urls}
    for round_ in range(rounds):
        for name, url in urls.items():
            port = free_port()
            process = start(
                ["--database-url", url, "--gateway", "bench", "--env", "prod"],
                port,
                None,
                "bench.prod.localhost",
            )
            try:
                if name.startswith("(b)"):
                    wait_for_split(port)
                wrk(port, 1, HOST)  # warm-up
                tree = descendants(process.pid)
                cpu_before = cpu_seconds(tree)
                rate, answered = wrk(port, seconds, HOST)
                cpu_us = (cpu_seconds(tree) - cpu_before) / answered * 1e6
                results[name].append((rate, cpu_us))
            finally:
                stop_tree([process.pid, *descendants(process.pid)])
            print(
                f"round {round_ + 1} {name}: {rate:,.0f} req/s, {cpu_us:.1f} CPU-us/request "
                f"(load {os.getloadavg()[0]:.1f})",
                flush=True,
            )
    return results


SIDES = {
    "(a) no canary": "a",
    "(b) canary at 10%": "b",
    "(c) canary at 10%, keyed clients": "c",
}


def in_process_once(side: str, requests: int) -> float:
    """CPU microseconds of the runtime app's own work per request (no network, no server): side "a" no
    split, "b" a 10% split, "c" the same split with each request carrying an `x-fnstage-key` (100
    clients in turn). The app is built as a cell builds it, metrics on."""
    import asyncio

    from fnstage.build import build
    from fnstage.runtime.app import RuntimeApp
    from fnstage.runtime.configuration import CellConfiguration
    from fnstage.runtime.invoker import InvocationLogs
    from fnstage.runtime.loader import LiveVersion, load_function
    from fnstage.runtime.registry import Registry
    from fnstage.runtime.request_metrics import RequestMetrics
    from fnstage.runtime.router import Router
    from fnstage.runtime.split import Split
    from fnstage.runtime.versions import ExtraVersions

    def live(version: int) -> LiveVersion:
        bundle = build({"index.py": FUNCTION}, "index.py")
        return load_function(
            "prod/hello", version, "1.0.0", "index.py", bundle.compiled, bundle.files, gateway="bench"
        )

    canary = live(2)

    async def fetch(gateway: str, name: str, version: int) -> LiveVersion:
        return canary

    registry = Registry()
    registry.apply(live(1))
    app = RuntimeApp(
        registry,
        Router(gateway="bench"),
        versions=ExtraVersions(fetch),
        logs=InvocationLogs(outbox=20_000),
        configuration=CellConfiguration("prod"),
        metrics=RequestMetrics(),
    )
    if side in ("b", "c"):
        app.set_splits({("bench", "prod/hello"): Split(1, 2, 10)})

    def scope(n: int) -> dict[str, object]:
        headers = [(b"host", HOST.encode()), (b"user-agent", b"bench"), (b"accept", b"*/*")]
        if side == "c":
            headers.append((b"x-fnstage-key", b"client-%d" % n))
        return {"type": "http", "method": "GET", "path": "/hello", "query_string": b"", "headers": headers}

    scopes = [scope(n) for n in range(100)]

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: object) -> None:
        return None

    async def run() -> float:
        for n in range(500):
            await app(scopes[n % 100], receive, send)
        started = time.process_time()  # CPU time: what other processes on the machine do not change
        for n in range(requests):
            await app(scopes[n % 100], receive, send)
        return (time.process_time() - started) / requests * 1e6

    return asyncio.run(run())


def in_process(rounds: int, before: str | None = None, requests: int = 20000) -> dict[str, list[float]]:
    """Per side, per round: CPU microseconds per request, each measured in a fresh process (with
    `before`, the same sides again with that checkout's `src`), the sides in turn in every round."""
    here = str(Path(__file__).resolve().parents[1] / "src")
    sources = {"": here, **({" before": before} if before else {})}
    results: dict[str, list[float]] = {name + suffix: [] for suffix in sources for name in SIDES}
    for _ in range(rounds):
        for name, side in SIDES.items():
            for suffix, src in sources.items():
                done = subprocess.run(
                    [sys.executable, str(Path(__file__).resolve()), "in-process-once", side, str(requests)],
                    env={**os.environ, "PYTHONPATH": src},
                    cwd=Path(__file__).resolve().parent,
                    capture_output=True,
                    text=True,
                    check=True,
                )
                results[name + suffix].append(float(done.stdout.strip()))
        print("in process: " + ", ".join(f"{n} {v[-1]:.2f}" for n, v in results.items()), flush=True)
    return results


def regressions(count: int) -> list[tuple[float, float, int, int]]:
    """(s to the decision, s to the last canary answer, canary answers, failed answers) per regression."""
    from fnstage.testing import UpProcess

    out = []
    with (
        tempfile.TemporaryDirectory(prefix="fnstage-bench-regression-") as folder,
        UpProcess(Path(folder)).start(timeout=120) as up,
    ):
        env = {**up.cli_env(), "FNSTAGE_GATEWAY": "bench"}

        def cli(*args: str) -> str:
            done = subprocess.run(
                [sys.executable, "-m", "fnstage", *args],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            return done.stdout

        src = Path(folder) / "fn"
        src.mkdir()
        cli("gateway", "create", "bench", "--allow-dev-to-prod")
        (src / "index.py").write_text(FUNCTION)
        cli("push", str(src), "dev/hello", "--wait")
        cli("promote", "dev/hello", "--to", "prod", "--semver", "1.0.0", "--note", "stable", "--wait")
        for i in range(count):
            (src / "index.py").write_text(BROKEN + f"\n# {i}\n")
            cli("push", str(src), "dev/hello", "--wait")
            answers: list[tuple[float, int, int]] = []
            stop = threading.Event()

            def load(stop: threading.Event = stop, answers: list[tuple[float, int, int]] = answers) -> None:
                with httpx.Client(headers={"Host": f"bench.prod.localhost:{up.runtime_port}"}) as client:
                    while not stop.is_set():
                        r = client.get(f"{up.runtime_url}/hello")
                        answers.append((time.time(), int(r.headers["x-fnstage-version"]), r.status_code))

            threads = [threading.Thread(target=load) for _ in range(4)]
            for t in threads:
                t.start()
            time.sleep(1)
            semver = f"1.{i + 1}.0"
            cli(
                "promote",
                "dev/hello",
                "--to",
                "prod",
                "--semver",
                semver,
                "--note",
                "bad",
                "--canary",
                "20%",
                "--bake",
                "10m",
            )
            began = time.time()
            while True:
                status = json.loads(cli("rollout", "status", "prod/hello", "--json"))
                if status["state"] != "running":
                    break
                time.sleep(0.2)
            time.sleep(3)
            stop.set()
            for t in threads:
                t.join()
            canary = status["canary"]["version"]
            decided = datetime.fromisoformat(status["decided_at"]).timestamp() - began
            on_canary = [at for at, version, _ in answers if version == canary]
            failed = sum(1 for _, _, code in answers if code != 200)
            last = max(on_canary) - began if on_canary else 0.0
            out.append((decided, last, len(on_canary), failed))
            print(
                f"regression {i + 1}: {status['state']} after {decided:.2f} s ({status['reason']}); "
                f"last canary answer at {last:.2f} s; {len(on_canary)} canary answers, {failed} failed",
                flush=True,
            )
    return out


def split_starts(count: int, database_url: str | None = None) -> list[float]:
    """Seconds from a canary's start (its commit) to the first answer from the canary's version."""
    from fnstage.testing import UpProcess

    out = []
    with (
        tempfile.TemporaryDirectory(prefix="fnstage-bench-canary-start-") as folder,
        UpProcess(Path(folder), database_url=database_url).start(timeout=120) as up,
    ):
        env = {**up.cli_env(), "FNSTAGE_GATEWAY": "bench"}

        def cli(*args: str) -> str:
            done = subprocess.run(
                [sys.executable, "-m", "fnstage", *args], env=env, capture_output=True, text=True, check=True
            )
            return done.stdout

        src = Path(folder) / "fn"
        src.mkdir()
        cli("gateway", "create", "bench", "--allow-dev-to-prod")
        (src / "index.py").write_text(FUNCTION)
        cli("push", str(src), "dev/hello", "--wait")
        cli("promote", "dev/hello", "--to", "prod", "--semver", "1.0.0", "--note", "stable", "--wait")
        answers: list[tuple[float, int]] = []
        stop = threading.Event()

        def load() -> None:
            with httpx.Client(headers={"Host": f"bench.prod.localhost:{up.runtime_port}"}) as client:
                while not stop.is_set():
                    r = client.get(f"{up.runtime_url}/hello")
                    answers.append((time.time(), int(r.headers["x-fnstage-version"])))

        threads = [threading.Thread(target=load) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            for i in range(count):
                (src / "index.py").write_text(FUNCTION + f"\n# {i}\n")
                cli("push", str(src), "dev/hello", "--wait")
                semver = f"1.{i + 1}.0"
                cli(
                    "promote",
                    "dev/hello",
                    "--to",
                    "prod",
                    "--semver",
                    semver,
                    "--note",
                    "try",
                    "--canary",
                    "50%",
                )
                status = json.loads(cli("rollout", "status", "prod/hello", "--json"))
                canary = status["canary"]["version"]
                # from the canary's commit (its `started_at`, a few ms before it): the CLI's own exit
                # comes later than the split, on a loaded machine by seconds
                began = datetime.fromisoformat(status["started_at"]).timestamp()
                deadline = time.monotonic() + 30
                first = None
                while first is None and time.monotonic() < deadline:
                    first = next((at for at, version in list(answers) if version == canary), None)
                    time.sleep(0.05)
                took = (first - began) if first is not None else float("nan")
                out.append(took)
                print(
                    f"canary start {i + 1}: first canary answer {took * 1000:.0f} ms after the release",
                    flush=True,
                )
                cli("rollout", "abort", "prod/hello")
                time.sleep(0.5)
        finally:
            stop.set()
            for t in threads:
                t.join()
    return out


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "in-process-once":
        print(in_process_once(sys.argv[2], int(sys.argv[3])))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--regressions", type=int, default=3)
    parser.add_argument("--starts", type=int, default=10)
    parser.add_argument("--only-starts", type=int, default=0, help="measure only canary start -> split live")
    parser.add_argument("--postgres", default=None, help="the database of --only-starts (default SQLite)")
    parser.add_argument("--only-split", action="store_true", help="measure only the cost of a split")
    parser.add_argument("--before", default=None, help="src of a checkout whose split to measure beside")
    parser.add_argument("--in-process-rounds", type=int, default=7)
    args = parser.parse_args()
    print(describe(), flush=True)
    if args.only_starts:
        starts = split_starts(args.only_starts, args.postgres)
        print(f"median canary start -> split live: {statistics.median(starts) * 1000:.0f} ms", flush=True)
        return
    cpu = in_process(args.in_process_rounds, args.before)
    for name, values in cpu.items():
        print(f"in process, median {name}: {statistics.median(values):.2f} us per request", flush=True)
    for suffix in ("", " before") if args.before else ("",):
        base = statistics.median(cpu["(a) no canary" + suffix])
        for name in list(SIDES)[1:]:
            ratio = base / statistics.median(cpu[name + suffix])
            print(f"in process{suffix}, {name} / no split (requests per CPU second): {ratio:.3f}", flush=True)
    if args.rounds:
        costs = split_cost(args.rounds, args.seconds)
        medians = {name: statistics.median(rate for rate, _ in values) for name, values in costs.items()}
        cpu_wrk = {name: statistics.median(us for _, us in values) for name, values in costs.items()}
        base, split = medians["(a) no canary"], medians["(b) canary at 10%"]
        for name, value in medians.items():
            print(f"median {name}: {value:,.0f} req/s, {cpu_wrk[name]:.1f} CPU-us/request", flush=True)
        print(
            f"split / no split: {split / base:.3f} in req/s, "
            f"{cpu_wrk['(a) no canary'] / cpu_wrk['(b) canary at 10%']:.3f} in requests per CPU-second "
            "(goal >= 0.95)",
            flush=True,
        )
    if args.only_split:
        print(describe(), flush=True)
        return
    found = regressions(args.regressions)
    print(f"median regression -> decision: {statistics.median(f[0] for f in found):.2f} s", flush=True)
    print(
        f"median regression -> last canary answer: {statistics.median(f[1] for f in found):.2f} s", flush=True
    )
    starts = split_starts(args.starts)
    print(f"median canary start -> split live: {statistics.median(starts) * 1000:.0f} ms", flush=True)
    print(describe(), flush=True)


if __name__ == "__main__":
    main()
