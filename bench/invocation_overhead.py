"""Invocation overhead: a hello function through fnstage against a raw ASGI app returning the same JSON on
the same server (issue 17 item 4), and against Starlette and Google's functions-framework.

    .venv/bin/python bench/invocation_overhead.py [--before SRC] [--sides raw,cell,...] [--rounds 3]
        [--seconds 5] [--in-process 7] [--ff-venv /tmp/ffvenv] [--port PORT]

The sides (`--sides`, comma-separated; the default is every side there is):
- `raw`: a raw ASGI app answering `{"message":"Hello, world!"}` on granian's embedded server in a uvloop
  loop, exactly as a cell serves its app (`bench/cell_port.py raw`);
- `raw-rsgi`: the same answer from a raw RSGI app (granian's own interface, which cells speak since
  issue 17 item 4's branch `rsgi`) on the same server (`bench/cell_port.py raw-rsgi`);
- `cell`: fnstage's cell serving the function that returns the same JSON on its own port, its
  supervisor stood in for (`bench/cell_port.py cell`): every per-request feature on (metrics, shipped
  logs, watchdog, time limits, request ids, version headers), no front. Each cell side says its
  interface (`FNSTAGE_CELL_INTERFACE`): `cell` is RSGI, the default since branch rsgidefault (it was
  ASGI before, in the figures BENCHMARKS.md quotes up to then); `cell-rsgi` is the same side, its
  older name; `cell-asgi` is ASGI. `cell-before`, `cell-rsgi-before` (RSGI) and `cell-asgi-before`
  (ASGI) are the same with `--before SRC` (another checkout's `src`, e.g. `git worktree add
  /tmp/hotpath-before main`) first on PYTHONPATH;
- `runtime`: the real `fnstage runtime --gateway bench` process (supervisor, front and cell);
- `starlette`: Starlette's JSONResponse on granian configured as the runtime configured it before cells;
- `ff`, `ff-asgi`: functions-framework's default and `--asgi`, from `--ff-venv` (never a project
  dependency: `python -m venv /tmp/ffvenv && /tmp/ffvenv/bin/pip install functions-framework`); left
  out when that venv does not exist.

Every server runs pinned to CPU 0 (`taskset -c 0`); wrk runs pinned to CPU 1 (`wrk -t1 -c64
--latency`), so the load generator never competes with the server for a core. The sides are interleaved
`--rounds` times, each started afresh; medians. Next to req/s, the CPU time of the server's whole
process tree per request answered, which a busy machine disturbs far less than req/s.

`--instructions`: the same apps' instructions per request, counted by valgrind's callgrind (repeatable
on a loaded machine, where CPU time is not).

`--in-process N`: the CPU time per request of the apps alone (no server, no network; `time.process_time`,
which other processes do not change), N interleaved rounds: the raw app, the app as a cell builds it,
and with `--before` the same app from that checkout (run in a subprocess with its `src` on PYTHONPATH).
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

from cell_port import FUNCTION, RAW_BODY
from machine import describe
from processes import cpu_seconds, descendants

HERE = Path(__file__).resolve().parent
SRC = str(HERE.parent / "src")
ANSWER = json.loads(RAW_BODY)
FF_SOURCE = """
def hello(request):
    return {"message": "Hello, world!"}


async def hello_async(request):
    return {"message": "Hello, world!"}
"""


# the servers ------------------------------------------------------------------------------------------
def starlette_app():
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def hello(request):
        return JSONResponse(ANSWER)

    return Starlette(routes=[Route("/dev/hello", hello)])


def serve_starlette(port: int) -> None:
    """granian with the settings `serve_runtime` uses, serving a Starlette hello."""
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


Side = tuple[list[str], str, dict[str, str]]  # command, path, extra environment


def sides(root: Path, ff_venv: Path, database_url: str, port: int, before: str | None) -> dict[str, Side]:
    py = sys.executable
    cell_port = str(HERE / "cell_port.py")
    ff = [str(ff_venv / "bin" / "functions-framework"), "--source", str(root / "ff_hello.py")]
    ff += ["--host", "127.0.0.1", "--port", str(port)]
    runtime = [py, "-m", "fnstage", "runtime", "--database-url", database_url, "--gateway", "bench"]
    runtime += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    found: dict[str, Side] = {
        "raw": ([py, cell_port, "raw", str(port)], "/prod/hello", {}),
        "raw-rsgi": ([py, cell_port, "raw-rsgi", str(port)], "/prod/hello", {}),
    }
    for name, src in (("cell", SRC), *((("cell-before", before),) if before else ())):
        for interface in ("", "-rsgi", "-asgi"):  # "" is the default's name: RSGI
            side = name.replace("cell", "cell" + interface, 1)
            env = {"PYTHONPATH": src, "FNSTAGE_CELL_INTERFACE": interface[1:] or "rsgi"}
            found[side] = ([py, cell_port, "cell", str(port)], "/prod/hello", env)
    found["runtime"] = (runtime, "/dev/hello", {})
    found["starlette"] = ([py, str(Path(__file__).resolve()), "serve-starlette", str(port)], "/dev/hello", {})
    if (ff_venv / "bin" / "functions-framework").exists():
        found["ff"] = ([*ff, "--target", "hello"], "/", {})
        found["ff-asgi"] = ([*ff, "--target", "hello_async", "--asgi"], "/", {})
    return found


LABELS = {
    "raw": "raw ASGI (granian embedded, as a cell)",
    "raw-rsgi": "raw RSGI (granian embedded, as a cell)",
    "cell": "fnstage cell (its own port), RSGI (the default)",
    "cell-rsgi": "fnstage cell (its own port), FNSTAGE_CELL_INTERFACE=rsgi",
    "cell-asgi": "fnstage cell (its own port), FNSTAGE_CELL_INTERFACE=asgi",
    "cell-before": "fnstage cell, before, RSGI",
    "cell-rsgi-before": "fnstage cell, before, FNSTAGE_CELL_INTERFACE=rsgi",
    "cell-asgi-before": "fnstage cell, before, FNSTAGE_CELL_INTERFACE=asgi",
    "runtime": "fnstage runtime (front -> cell)",
    "starlette": "Starlette (granian)",
    "ff": "functions-framework",
    "ff-asgi": "functions-framework --asgi",
}


# measuring ------------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            response = httpx.get(url, timeout=1)
            if response.status_code == 200 and response.json() == ANSWER:
                return
        except (httpx.TransportError, ValueError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer {ANSWER!r}")


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


def run_one(side: Side, port: int, seconds: int, connections: int) -> dict[str, float]:
    command, path, env = side
    proc = subprocess.Popen(
        ["taskset", "-c", "0", *command],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        cwd=HERE,
        env={**os.environ, **env},
    )
    try:
        url = f"http://127.0.0.1:{port}{path}"
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


# in process ----------------------------------------------------------------------------------------------
def cell_app() -> object:
    """The runtime app with what a cell gives it (`cell._serve`), serving FUNCTION at /prod/hello."""
    from fnstage.build import build
    from fnstage.runtime.app import RuntimeApp
    from fnstage.runtime.configuration import CellConfiguration
    from fnstage.runtime.invoker import InvocationLogs
    from fnstage.runtime.loader import load_function
    from fnstage.runtime.registry import Registry
    from fnstage.runtime.request_metrics import RequestMetrics
    from fnstage.runtime.router import Router

    bundle = build({"index.py": FUNCTION}, "index.py")
    registry = Registry()
    registry.apply(
        load_function("prod/hello", 1, "1.0.0", "index.py", bundle.compiled, bundle.files, gateway="bench")
    )
    return RuntimeApp(
        registry,
        Router(gateway="bench"),
        logs=InvocationLogs(outbox=20_000),
        internal_token="bench",
        configuration=CellConfiguration("prod"),
        metrics=RequestMetrics(),
    )


class _Proto:
    """An RSGI protocol that drops the answer. `response_bytes` is a C callable taking three arguments
    (`slice`), as granian's is C: a Python method here would count a frame the server does not cost."""

    response_bytes = staticmethod(slice)


def rsgi_cpu_per_request(app: object, requests: int) -> float:
    """CPU microseconds per request of an RSGI `app` called in process (GET /prod/hello, wrk's
    headers). The scope and its headers are C objects as granian's are (a namespace, a dict: `items`
    and `len` are what the app calls)."""
    import asyncio
    from types import SimpleNamespace

    headers = {"host": "127.0.0.1:8080"}
    scope = SimpleNamespace(proto="http", method="GET", path="/prod/hello", query_string="", headers=headers)
    proto = _Proto()
    call = app.__rsgi__

    async def run() -> float:
        for _ in range(500):
            await call(scope, proto)
        started = time.process_time()
        for _ in range(requests):
            await call(scope, proto)
        return (time.process_time() - started) / requests * 1e6

    return asyncio.run(run())


def cpu_per_request(app: object, requests: int, rsgi: bool = False) -> float:
    """CPU microseconds per request of `app` called in process (GET /prod/hello, wrk's headers); by
    RSGI with `rsgi`, else ASGI."""
    if rsgi:
        return rsgi_cpu_per_request(app, requests)
    import asyncio

    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/prod/hello",
        "raw_path": b"/prod/hello",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1:8080")],
    }

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: object) -> None:
        return None

    async def run() -> float:
        for _ in range(500):
            await app(scope, receive, send)
        started = time.process_time()
        for _ in range(requests):
            await app(scope, receive, send)
        return (time.process_time() - started) / requests * 1e6

    return asyncio.run(run())


def in_process_once(which: str, requests: int) -> float:
    if which == "raw":
        from cell_port import raw_app

        return cpu_per_request(raw_app, requests)
    if which == "raw-rsgi":
        from cell_port import RawRSGIApp

        return cpu_per_request(RawRSGIApp(), requests, rsgi=True)
    return cpu_per_request(cell_app(), requests, rsgi=which == "cell-rsgi")  # "cell-asgi": ASGI


def _which(side: str) -> str:
    """The app a side's in-process run builds: a raw app, or the cell's by ASGI or RSGI (`cell` and
    `cell-before` are RSGI, the default)."""
    if side.startswith("raw"):
        return side
    return "cell-asgi" if side.startswith("cell-asgi") else "cell-rsgi"


def in_process(rounds: int, before: str | None, requests: int = 20_000) -> dict[str, list[float]]:
    """Per app, per round: CPU microseconds per request. Each round runs each app in a fresh process
    (the before side with its checkout's `src`), in turn."""
    apps = {
        "raw": SRC,
        "raw-rsgi": SRC,
        "cell": SRC,  # RSGI: `cell-rsgi` is the same app
        "cell-asgi": SRC,
        **({"cell-before": before, "cell-asgi-before": before} if before else {}),
    }
    out: dict[str, list[float]] = {name: [] for name in apps}
    for _ in range(rounds):
        for name, src in apps.items():
            which = _which(name)
            done = subprocess.run(
                [sys.executable, str(Path(__file__).resolve()), "in-process", which, str(requests)],
                env={**os.environ, "PYTHONPATH": src},
                cwd=HERE,
                capture_output=True,
                text=True,
                check=True,
            )
            out[name].append(float(done.stdout.strip()))
        print("in process: " + ", ".join(f"{n} {v[-1]:.2f} us" for n, v in out.items()), file=sys.stderr)
    return out


def instructions(before: str | None, few: int = 1000, many: int = 6000) -> dict[str, int]:
    """Per app, the instructions one request costs in process, counted by callgrind (the same under any
    load): the difference between runs of `many` and `few` requests, over `many - few`, so that start-up
    and imports cancel out."""
    apps = {
        "raw": SRC,
        "raw-rsgi": SRC,
        "cell": SRC,  # RSGI: `cell-rsgi` is the same app
        "cell-asgi": SRC,
        **({"cell-before": before, "cell-asgi-before": before} if before else {}),
    }
    out = {}
    for name, src in apps.items():
        counted = []
        for requests in (few, many):
            which = _which(name)
            valgrind = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
            script = str(Path(__file__).resolve())
            done = subprocess.run(
                [*valgrind, sys.executable, script, "in-process", which, str(requests)],
                env={**os.environ, "PYTHONPATH": src},
                cwd=HERE,
                capture_output=True,
                text=True,
                check=True,
            )
            counted.append(int(re.search(r"Collected : (\d+)", done.stderr).group(1)))
        out[name] = round((counted[1] - counted[0]) / (many - few))
        print(f"instructions per request in process: {name} {out[name]:,}", file=sys.stderr, flush=True)
    return out


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "serve-starlette":
        serve_starlette(int(sys.argv[2]))
        return
    if len(sys.argv) == 4 and sys.argv[1] == "in-process":
        print(in_process_once(sys.argv[2], int(sys.argv[3])))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ff-venv", type=Path, default=Path("/tmp/ffvenv"))
    parser.add_argument("--before", default=None, help="src folder of a checkout to compare the cell with")
    parser.add_argument("--sides", default=None, help="comma-separated sides to load (default: all)")
    parser.add_argument("--rounds", type=int, default=3, help="wrk rounds (0: none)")
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--port", type=int, default=None, help="the servers' port (default: a free one)")
    parser.add_argument("--in-process", type=int, default=0, help="in-process rounds (0: none)")
    parser.add_argument(
        "--instructions", action="store_true", help="count each app's instructions per request (callgrind)"
    )
    args = parser.parse_args()
    report: dict[str, object] = {"machine_before": describe()}
    if args.instructions:
        counted = instructions(args.before)
        report["in_process_instructions_per_request"] = {
            name: {"instructions": n, "vs_before": round(n / counted[f"{name}-before"], 3)}
            if f"{name}-before" in counted
            else {"instructions": n}
            for name, n in counted.items()
        }
    if args.in_process:
        cpu = in_process(args.in_process, args.before)
        medians = {name: statistics.median(values) for name, values in cpu.items()}
        report["in_process_cpu_us_per_request"] = {
            name: {"median": round(m, 2), "rounds": [round(v, 2) for v in cpu[name]]}
            for name, m in medians.items()
        }
        report["in_process_app_cost_us"] = {
            name: round(m - medians["raw"], 2) for name, m in medians.items() if name != "raw"
        }
    runs: dict[str, list[dict[str, float]]] = {}
    loads: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "ff_hello.py").write_text(FF_SOURCE)
        database_url = publish_hello(root)
        wanted = args.sides.split(",") if args.sides else None
        for round_ in range(args.rounds):
            port = args.port or free_port()
            found = sides(root, args.ff_venv, database_url, port, args.before)
            for name, side in found.items():
                if wanted is not None and name not in wanted:
                    continue
                loads.append(describe()["load_average"])
                result = run_one(side, port, args.seconds, args.connections)
                runs.setdefault(name, []).append(result)
                print(
                    f"round {round_ + 1} {LABELS[name]:40} {result['rps']:9.0f} req/s"
                    f"  {result['cpu_us_per_request']:6.1f} CPU-us/request  p99 {result['p99_ms']:7.2f} ms"
                    f"  (load {loads[-1]})",
                    file=sys.stderr,
                    flush=True,
                )
    if runs:
        medians = {
            name: {key: statistics.median(r[key] for r in results) for key in results[0]}
            for name, results in runs.items()
        }
        base = medians.get("raw")
        base_rsgi = medians.get("raw-rsgi")
        table: dict[str, dict[str, object]] = {}
        for name, m in medians.items():
            row: dict[str, object] = {
                "label": LABELS[name],
                "rps": round(m["rps"]),
                "cpu_us_per_request": round(m["cpu_us_per_request"], 1),
                "p50_ms": round(m["p50_ms"], 2),
                "p99_ms": round(m["p99_ms"], 2),
                "non_2xx": sum(r["non_2xx"] for r in runs[name]),
                "socket_errors": sum(r["socket_errors"] for r in runs[name]),
                "rounds_rps": [round(r["rps"]) for r in runs[name]],
                "rounds_cpu_us": [round(r["cpu_us_per_request"], 1) for r in runs[name]],
            }
            if base is not None:
                row["rps_vs_raw"] = round(m["rps"] / base["rps"], 3)
                row["requests_per_cpu_s_vs_raw"] = round(
                    base["cpu_us_per_request"] / m["cpu_us_per_request"], 3
                )
            if base_rsgi is not None:  # the goal is stated against raw ASGI; this one is told too
                row["rps_vs_raw_rsgi"] = round(m["rps"] / base_rsgi["rps"], 3)
                row["requests_per_cpu_s_vs_raw_rsgi"] = round(
                    base_rsgi["cpu_us_per_request"] / m["cpu_us_per_request"], 3
                )
            table[name] = row
        report["wrk"] = f"taskset -c 1 wrk -t1 -c{args.connections} -d{args.seconds}s --latency"
        report["servers"] = "taskset -c 0"
        report["rounds"] = args.rounds
        report["medians"] = table
        report["load_averages_during"] = loads
    report["goal"] = "fnstage cell >= 0.85x the raw ASGI app (issue 17 item 4)"
    report["machine_after"] = describe()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
