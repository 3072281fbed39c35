"""Canary releases (issue 14): what a split costs, and how soon a regression's traffic is back on stable.

    .venv/bin/python bench/canary.py [--rounds 5] [--seconds 5] [--regressions 3] [--starts 10]
    .venv/bin/python bench/canary.py --only-starts 10 [--postgres URL]

1. **The cost of a split**: wrk -t1 -c64 against one small async function in prod, served by a cell
   directly (`fnstage runtime --gateway bench --env prod`), rounds interleaved, each server started
   afresh: (a) no canary; (b) a canary of the same code running at 10% (the split, the choice per
   request, the canary's version beside the stable one, both sides counted). Goal: (b) >= 95% of (a).
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
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import httpx
from cells import free_port, start
from machine import describe
from processes import descendants, stop_tree

FUNCTION = "async def main(ctx):\n    return 'Hello, world!'\n"
BROKEN = "async def main(ctx):\n    raise RuntimeError('regression')\n"


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


def wrk(port: int, seconds: int) -> float:
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            "-c64",
            f"-d{seconds}s",
            "-H",
            "Host: bench.prod.localhost",
            f"http://127.0.0.1:{port}/hello",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk saw failures:\n{out}")
    return float(out.split("Requests/sec:")[1].split()[0])


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


def split_cost(rounds: int, seconds: int) -> dict[str, list[float]]:
    folders = {name: Path(tempfile.mkdtemp(prefix="fnstage-bench-canary-")) for name in ("a", "b")}
    urls = {"(a) no canary": publish(folders["a"], False), "(b) canary at 10%": publish(folders["b"], True)}
    results: dict[str, list[float]] = {name: [] for name in urls}
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
                wrk(port, 1)  # warm-up
                results[name].append(wrk(port, seconds))
            finally:
                stop_tree([process.pid, *descendants(process.pid)])
            print(f"round {round_ + 1} {name}: {results[name][-1]:,.0f} req/s", flush=True)
    return results


def in_process(rounds: int, requests: int = 20000) -> dict[str, list[float]]:
    """CPU microseconds of the runtime app's own work per request (no network, no server), with and without
    a 10% split: the split's cost without the noise of a shared machine's scheduler."""
    import asyncio

    from fnstage.build import build
    from fnstage.runtime.app import RuntimeApp
    from fnstage.runtime.loader import LiveVersion, load_function
    from fnstage.runtime.registry import Registry
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

    def app(split: bool) -> RuntimeApp:
        registry = Registry()
        registry.apply(live(1))
        made = RuntimeApp(registry, versions=ExtraVersions(fetch))
        if split:
            made.set_splits({("bench", "prod/hello"): Split(1, 2, 10)})
        return made

    scope = {
        "type": "http",
        "method": "GET",
        "path": "/hello",
        "query_string": b"",
        "headers": [(b"host", b"bench.prod.localhost"), (b"user-agent", b"bench")],
    }

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: object) -> None:
        return None

    async def run(target: RuntimeApp) -> float:
        for _ in range(200):
            await target(scope, receive, send)
        started = time.process_time()  # CPU time: what other processes on the machine do not change
        for _ in range(requests):
            await target(scope, receive, send)
        return (time.process_time() - started) / requests * 1e6

    results: dict[str, list[float]] = {"(a) no canary": [], "(b) canary at 10%": []}
    apps = {"(a) no canary": app(False), "(b) canary at 10%": app(True)}
    for _ in range(rounds):
        for name, target in apps.items():
            results[name].append(asyncio.run(run(target)))
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
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--regressions", type=int, default=3)
    parser.add_argument("--starts", type=int, default=10)
    parser.add_argument("--only-starts", type=int, default=0, help="measure only canary start -> split live")
    parser.add_argument("--postgres", default=None, help="the database of --only-starts (default SQLite)")
    args = parser.parse_args()
    print(describe(), flush=True)
    if args.only_starts:
        starts = split_starts(args.only_starts, args.postgres)
        print(f"median canary start -> split live: {statistics.median(starts) * 1000:.0f} ms", flush=True)
        return
    cpu = in_process(args.rounds)
    for name, values in cpu.items():
        print(f"in process, median {name}: {statistics.median(values):.1f} us per request", flush=True)
    ratio = statistics.median(cpu["(a) no canary"]) / statistics.median(cpu["(b) canary at 10%"])
    print(f"in process, split / no split (requests per CPU second): {ratio:.3f}", flush=True)
    costs = split_cost(args.rounds, args.seconds)
    medians = {name: statistics.median(values) for name, values in costs.items()}
    base, split = medians["(a) no canary"], medians["(b) canary at 10%"]
    for name, value in medians.items():
        print(f"median {name}: {value:,.0f} req/s", flush=True)
    print(f"split / no split: {split / base:.3f} (goal >= 0.95)", flush=True)
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
