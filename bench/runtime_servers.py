"""Which ASGI server should the runtime use? Serve a hello app (and the real RuntimeApp with one
function) with granian and with uvicorn (uvloop + httptools), one worker each, and load them with wrk.

    /work/venv/bin/python bench/runtime_servers.py [--seconds 5] [--connections 64]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


async def hello(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"hello"})


def runtime_app():
    from fnstage.build import build
    from fnstage.runtime.app import RuntimeApp
    from fnstage.runtime.loader import load_function
    from fnstage.runtime.registry import Registry

    registry = Registry()
    bundle = build({"index.py": "async def main(ctx):\n    return {'hello': 'world'}\n"}, "index.py")
    registry.apply(
        load_function("dev/hello", 1, "0.1.0", "index.py", bundle.compiled, bundle.files, gateway="demo")
    )
    sync = build({"index.py": "def main(ctx):\n    return {'hello': 'world'}\n"}, "index.py")
    registry.apply(
        load_function("dev/sync", 1, "0.1.0", "index.py", sync.compiled, sync.files, gateway="demo")
    )
    return RuntimeApp(registry)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int) -> None:
    deadline = time.time() + 20
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"server on {port} did not start")


def server_command(server: str, target: str, port: int) -> list[str]:
    py = sys.executable
    if server == "granian":
        factory = ["--factory"] if target.endswith("runtime_app") else []
        return [
            py,
            "-m",
            "granian",
            "--interface",
            "asgi",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--no-ws",
            "--log-level",
            "warning",
            *factory,
            target,
        ]
    factory = ["--factory"] if target.endswith("runtime_app") else []
    return [
        py,
        "-m",
        "uvicorn",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--log-level",
        "warning",
        "--ws",
        "none",
        *factory,
        target,
    ]


def run(server: str, target: str, path: str, seconds: int, connections: int) -> float:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": HERE}
    proc = subprocess.Popen(server_command(server, target, port), env=env, start_new_session=True)
    try:
        wait_port(port)
        url = f"http://127.0.0.1:{port}{path}"
        subprocess.run(["wrk", "-t1", "-c8", "-d1s", url], capture_output=True, check=True)  # warm up
        out = subprocess.run(
            ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", url],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        match = re.search(r"Requests/sec:\s+([\d.]+)", out)
        errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        if errors:
            print(f"  {server} {target} {path}: {errors.group(1)} non-2xx responses!")
        return float(match.group(1)) if match else 0.0
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    cases = [
        ("hello ASGI", "runtime_servers:hello", "/"),
        ("RuntimeApp, async main", "runtime_servers:runtime_app", "/demo/dev/hello"),
        ("RuntimeApp, sync main", "runtime_servers:runtime_app", "/demo/dev/sync"),
    ]
    for label, target, path in cases:
        for server in ("granian", "uvicorn"):
            rps = run(server, target, path, args.seconds, args.connections)
            print(f"{label:24} {server:8} {rps:10.0f} req/s", flush=True)


if __name__ == "__main__":
    main()
