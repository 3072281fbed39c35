"""The front (`fnstage.front`): what routing through it costs, against the cell served directly and
against Google's functions-framework `--asgi`.

    .venv/bin/python bench/front.py --ff-venv /tmp/ffvenv [--rounds 5] [--seconds 5] [--connections 64]

Side by side in one run, interleaved round by round, medians of the rounds:
  (a) cell direct      today's RuntimeApp serving one small function, on granian with one worker
                       (configured as `serve_runtime` configures it), wrk -> the cell's port;
  (b) front -> cell    the same cell on a Unix socket, behind the front (one process, uvloop);
      front -> cell tcp   and the same on a loopback port;
  (c) ff --asgi        functions-framework `--asgi` serving the same answer.
functions-framework is never a project dependency: install it into a throwaway venv first,
`python -m venv /tmp/ffvenv && /tmp/ffvenv/bin/pip install functions-framework`; without it (c) is left
out and said so.

Nothing is pinned: wrk (`-t1`), the front and the cell share the machine's two cores, as they do when
`fnstage up` runs beside its clients. Besides req/s, the servers' CPU time per request (front and cell
together) is reported: far less sensitive to a busy machine than req/s.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import describe
from processes import cpu_seconds, descendants

HERE = Path(__file__).resolve()
HELLO = "Hello, world!"
FUNCTION = f"async def main(ctx):\n    return {HELLO!r}\n"
FF_SOURCE = f"async def hello_async(request):\n    return {HELLO!r}\n"
PATH = "/demo/dev/hello"


# the servers (run as `bench/front.py serve-cell ...` / `serve-front ...`) ---------------------------------
# an ASGI app factory handed to granian by import path; granian gives it no types to check against
def cell_app():  # type: ignore[no-untyped-def]
    """Today's RuntimeApp with one function live, as a cell would hold it (no store, no watcher)."""
    from fnstage.build import build
    from fnstage.runtime.app import RuntimeApp
    from fnstage.runtime.loader import load_function
    from fnstage.runtime.registry import Registry

    registry = Registry()
    bundle = build({"index.py": FUNCTION}, "index.py")
    registry.apply(
        load_function("dev/hello", 1, "1.0.0", "index.py", bundle.compiled, bundle.files, gateway="demo")
    )
    return RuntimeApp(registry)


def serve_cell(where: str) -> None:
    """granian, one worker, the settings `fnstage.runtime.server.serve_runtime` uses."""
    from granian.constants import HTTPModes, Interfaces, Loops
    from granian.log import LogLevels
    from granian.server import Server

    address = {"uds": Path(where)} if where.startswith("/") else {"port": int(where)}
    server = Server(
        "bench-cell",
        address="127.0.0.1",
        interface=Interfaces.ASGI,
        workers=1,
        loop=Loops.auto,
        http=HTTPModes.http1,
        websockets=False,
        log_level=LogLevels("warning"),
        log_access=False,
        # host/port or uds: granian types each keyword apart
        **address,  # type: ignore[arg-type]
    )
    server.serve(target_loader=cell_app, wrap_loader=False)


def serve_front(port: int, upstream: str) -> None:
    from fnstage.front import RouteTable, serve_front

    routes = RouteTable()
    routes.set("demo", "dev", upstream)
    serve_front(routes, port=port)


# measuring ------------------------------------------------------------------------------------------------
def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, timeout: float = 30) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            response = httpx.get(url, timeout=1)
            if response.status_code == 200 and HELLO in response.text:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer {HELLO!r}")


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    assert match is not None, text
    return float(match.group(1)) * _UNITS[match.group(2)]


def wrk(url: str, seconds: int, connections: int) -> dict[str, float]:
    args = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout

    def find(pattern: str) -> str:
        match = re.search(pattern, out)
        assert match is not None, out
        return match.group(1)

    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "rps": float(find(r"Requests/sec:\s+([\d.]+)")),
        "requests": float(find(r"(\d+) requests in")),
        "p50_ms": _ms(find(r"\s50%\s+(\S+)")),
        "p99_ms": _ms(find(r"\s99%\s+(\S+)")),
        "non_2xx": float(bad.group(1)) if bad else 0.0,
        "socket_errors": float(sum(int(g) for g in errors.groups())) if errors else 0.0,
    }


def start(command: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, cwd=HERE.parent
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass


def measure(commands: list[list[str]], url: str, seconds: int, connections: int) -> dict[str, float]:
    processes = [start(command) for command in commands]
    try:
        wait_ready(url)
        wrk(url, 1, 8)  # warm up
        tree = [pid for p in processes for pid in descendants(p.pid)]
        cpu_before = cpu_seconds(tree)
        result = wrk(url, seconds, connections)
        result["cpu_us_per_request"] = (cpu_seconds(tree) - cpu_before) / result["requests"] * 1e6
        return result
    finally:
        for process in reversed(processes):
            stop(process)


def cases(tmp: Path, ff_venv: Path | None) -> dict[str, tuple[list[list[str]], int]]:
    py = [sys.executable, str(HERE)]
    direct, front_port, front_tcp_port, cell_port, ff_port = (free_port() for _ in range(5))
    sock = str(tmp / "cell.sock")
    found: dict[str, tuple[list[list[str]], int]] = {
        "(a) cell direct": ([[*py, "serve-cell", str(direct)]], direct),
        "(b) front -> cell (unix socket)": (
            [[*py, "serve-cell", sock], [*py, "serve-front", str(front_port), sock]],
            front_port,
        ),
        "(b') front -> cell (loopback port)": (
            [
                [*py, "serve-cell", str(cell_port)],
                [*py, "serve-front", str(front_tcp_port), f"127.0.0.1:{cell_port}"],
            ],
            front_tcp_port,
        ),
    }
    if ff_venv is not None:
        ff = [str(ff_venv / "bin" / "functions-framework"), "--source", str(tmp / "ff_hello.py")]
        ff += ["--target", "hello_async", "--asgi", "--host", "127.0.0.1", "--port", str(ff_port)]
        found["(c) functions-framework --asgi"] = ([ff], ff_port)
    return found


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "serve-cell":
        serve_cell(sys.argv[2])
        return
    if len(sys.argv) == 4 and sys.argv[1] == "serve-front":
        serve_front(int(sys.argv[2]), sys.argv[3])
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--ff-venv", type=Path, default=Path("/tmp/ffvenv"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    ff_venv = args.ff_venv if (args.ff_venv / "bin" / "functions-framework").exists() else None
    if ff_venv is None:
        print(f"functions-framework not found in {args.ff_venv}: (c) is left out", file=sys.stderr)
    runs: dict[str, list[dict[str, float]]] = {}
    loads: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "ff_hello.py").write_text(FF_SOURCE)
        for round_ in range(args.rounds):
            for label, (commands, port) in cases(Path(tmp), ff_venv).items():
                loads.append(describe()["load_average"])
                path = PATH if "functions-framework" not in label else "/"
                result = measure(commands, f"http://127.0.0.1:{port}{path}", args.seconds, args.connections)
                runs.setdefault(label, []).append(result)
                print(
                    f"round {round_ + 1} {label:36} {result['rps']:9.0f} req/s"
                    f"  p99 {result['p99_ms']:7.2f} ms"
                    f"  cpu {result['cpu_us_per_request']:6.1f} us/req  (load {loads[-1]})",
                    file=sys.stderr,
                    flush=True,
                )
    medians = {
        label: {key: statistics.median(r[key] for r in results) for key in results[0]}
        for label, results in runs.items()
    }
    table = {
        label: {
            "rps": round(m["rps"]),
            "p50_ms": round(m["p50_ms"], 2),
            "p99_ms": round(m["p99_ms"], 2),
            "servers_cpu_us_per_request": round(m["cpu_us_per_request"], 1),
            "non_2xx": sum(r["non_2xx"] for r in runs[label]),
            "socket_errors": sum(r["socket_errors"] for r in runs[label]),
            "rounds_rps": [round(r["rps"]) for r in runs[label]],
        }
        for label, m in medians.items()
    }
    direct = medians["(a) cell direct"]["rps"]
    ratios: dict[str, float] = {}
    for label in ("(b) front -> cell (unix socket)", "(b') front -> cell (loopback port)"):
        ratios[f"{label} / (a) cell direct"] = round(medians[label]["rps"] / direct, 3)
        if "(c) functions-framework --asgi" in medians:
            ff = medians["(c) functions-framework --asgi"]["rps"]
            ratios[f"{label} / (c) functions-framework --asgi"] = round(medians[label]["rps"] / ff, 2)
    print(
        json.dumps(
            {
                "wrk": f"wrk -t1 -c{args.connections} -d{args.seconds}s --latency",
                "rounds": args.rounds,
                "medians": table,
                "ratios": ratios,
                "goal": "front >= 0.5x the cell direct, >= 2x functions-framework --asgi",
                "machine": describe(),
                "load_averages_during": loads,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
