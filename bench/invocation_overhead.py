"""Invocation overhead: a hello function through the fnstage runtime vs a raw Starlette hello on the same
server (granian, same settings) and vs Google's functions-framework (its default and `--asgi`).

    /work/venv/bin/python bench/invocation_overhead.py --ff-venv /tmp/ffvenv [--rounds 3] [--seconds 5]

functions-framework is never a project dependency: install it into a throwaway venv first,
`python -m venv /tmp/ffvenv && /tmp/ffvenv/bin/pip install functions-framework`.

Every server runs one worker process pinned to CPU 0 (`taskset -c 0`); wrk runs pinned to CPU 1
(`wrk -t1 -c64 --latency`), so the load generator never competes with the server for a core. The runs
are interleaved (fnstage, starlette, ff, ff --asgi, then again) `--rounds` times; the table shows the
median of the rounds. The fnstage server is the real `fnstage runtime` process (granian, its watcher on
a SQLite store holding the published function); Starlette is served by granian configured exactly as
`fnstage.runtime.server.serve_runtime` configures it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import describe
from processes import cpu_seconds, descendants

HERE = Path(__file__).resolve().parent
HELLO = "Hello, world!"
FUNCTION = f"async def main(ctx):\n    return {HELLO!r}\n"
FF_SOURCE = f"""
def hello(request):
    return {HELLO!r}


async def hello_async(request):
    return {HELLO!r}
"""


# the servers ------------------------------------------------------------------------------------------
def starlette_app():
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def hello(request):
        return PlainTextResponse(HELLO)

    return Starlette(routes=[Route("/dev/hello", hello)])


def serve_starlette(port: int) -> None:
    """granian with the settings `serve_runtime` uses, serving a raw Starlette hello."""
    from granian.constants import HTTPModes, Interfaces, Loops
    from granian.log import LogLevels
    from granian.server import Server

    server = Server(
        "starlette-hello",
        address="127.0.0.1",
        port=port,
        interface=Interfaces.ASGI,
        workers=1,
        loop=Loops.auto,
        http=HTTPModes.http1,
        websockets=False,
        log_level=LogLevels("warning"),
        log_access=False,
    )
    server.serve(target_loader=starlette_app, wrap_loader=False)


def publish_hello(root: Path) -> str:
    from stores import bench_admin

    from fnstage.service import Services
    from fnstage.store.engine import sqlite_url
    from fnstage.store.store import Store

    url = sqlite_url(root)
    store = Store.open(url)
    services = Services.create(store)
    actor = bench_admin(store)
    services.gateways.create(actor, "bench")
    services.deployments.save(actor, "bench", "dev/hello", {"index.py": FUNCTION})
    store.close()
    return url


def commands(root: Path, ff_venv: Path, database_url: str, port: int) -> dict[str, list[str]]:
    py = sys.executable
    ff = [str(ff_venv / "bin" / "functions-framework"), "--source", str(root / "ff_hello.py")]
    ff += ["--host", "127.0.0.1", "--port", str(port)]
    return {
        "fnstage runtime": [
            py,
            "-m",
            "fnstage",
            "runtime",
            "--database-url",
            database_url,
            "--gateway",
            "bench",
            "--workers",
            "1",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        "raw Starlette (granian)": [py, str(Path(__file__).resolve()), "serve-starlette", str(port)],
        "functions-framework": [*ff, "--target", "hello"],
        "functions-framework --asgi": [*ff, "--target", "hello_async", "--asgi"],
    }


# measuring ------------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, timeout: float = 30) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            response = httpx.get(url, timeout=1)
            if response.status_code == 200 and response.text == HELLO:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer {HELLO!r}")


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * _UNITS[unit]


def wrk(url: str, seconds: int, connections: int) -> dict[str, float]:
    args = ["taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "rps": rps,
        "requests": float(requests),
        "p50_ms": p50,
        "p99_ms": p99,
        "non_2xx": float(bad.group(1)) if bad else 0.0,
        "socket_errors": float(sum(int(g) for g in errors.groups())) if errors else 0.0,
    }


def run_one(command: list[str], seconds: int, connections: int) -> dict[str, float]:
    port = int(command[command.index("--port") + 1]) if "--port" in command else int(command[-1])
    proc = subprocess.Popen(
        ["taskset", "-c", "0", *command],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        cwd=HERE,
    )
    try:
        url = f"http://127.0.0.1:{port}/dev/hello"
        wait_ready(url)
        wrk(url, 1, 8)  # warm up
        tree = descendants(proc.pid)
        cpu_before = cpu_seconds(tree)
        result = wrk(url, seconds, connections)
        # server CPU time per request: much less sensitive to a busy machine than req/s
        result["cpu_us_per_request"] = (cpu_seconds(tree) - cpu_before) / result["requests"] * 1e6
        return result
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "serve-starlette":
        serve_starlette(int(sys.argv[2]))
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--ff-venv", type=Path, default=Path("/tmp/ffvenv"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    runs: dict[str, list[dict[str, float]]] = {}
    loads: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "ff_hello.py").write_text(FF_SOURCE)
        database_url = publish_hello(root)
        for round_ in range(args.rounds):
            for label, command in commands(root, args.ff_venv, database_url, free_port()).items():
                loads.append(describe()["load_average"])
                result = run_one(command, args.seconds, args.connections)
                runs.setdefault(label, []).append(result)
                print(
                    f"round {round_ + 1} {label:28} {result['rps']:9.0f} req/s"
                    f"  p99 {result['p99_ms']:7.2f} ms  (load {loads[-1]})",
                    file=sys.stderr,
                    flush=True,
                )
    medians = {
        label: {key: statistics.median(r[key] for r in results) for key in results[0]}
        for label, results in runs.items()
    }
    base = medians["raw Starlette (granian)"]
    table = {
        label: {
            "rps": round(m["rps"]),
            "p50_ms": round(m["p50_ms"], 2),
            "p99_ms": round(m["p99_ms"], 2),
            "rps_vs_starlette": round(m["rps"] / base["rps"], 3),
            "p99_vs_starlette": round(m["p99_ms"] / base["p99_ms"], 3),
            "server_cpu_us_per_request": round(m["cpu_us_per_request"], 1),
            "non_2xx": sum(r["non_2xx"] for r in runs[label]),
            "socket_errors": sum(r["socket_errors"] for r in runs[label]),
            "rounds_rps": [round(r["rps"]) for r in runs[label]],
        }
        for label, m in medians.items()
    }
    fn = medians["fnstage runtime"]
    for label in ("functions-framework", "functions-framework --asgi"):
        table["fnstage runtime"][f"rps_vs_{label}"] = round(fn["rps"] / medians[label]["rps"], 2)
    print(
        json.dumps(
            {
                "wrk": f"taskset -c 1 wrk -t1 -c{args.connections} -d{args.seconds}s --latency",
                "servers": "one worker each, taskset -c 0",
                "rounds": args.rounds,
                "medians": table,
                "goal": "fnstage >= 0.85x raw Starlette req/s, p99 <= 1.2x",
                "machine": describe(),
                "load_averages_during": loads,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
