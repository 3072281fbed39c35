"""The runtime served for real: granian, worker processes, a SQLite store, publish -> live."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from fnstage.service.deployments import Deployments
from fnstage.service.gateways import Gateways
from fnstage.service.identity import Actor
from fnstage.store.engine import sqlite_url
from fnstage.store.store import Store

ADA = Actor(1, "ada", True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def deployments(tmp_path: Path) -> Iterator[tuple[str, Deployments]]:
    url = sqlite_url(tmp_path)
    store = Store.open(url)
    Gateways(store).create(ADA, "demo")
    Gateways(store).create(ADA, "other")
    deployments = Deployments(store)
    deployments.save(ADA, "demo", "dev/hello", {"index.py": "def main(ctx):\n    return {'v': 1}\n"})
    deployments.save(ADA, "other", "dev/hello", {"index.py": "def main(ctx):\n    return {'other': True}\n"})
    yield url, deployments
    store.close()


def start(url: str, port: int, workers: int, gateway: str | None) -> subprocess.Popen[bytes]:
    code = (
        "from fnstage.runtime.server import serve_runtime, store_feed, store_reporter\n"
        f"serve_runtime(store_feed({url!r}), port={port}, workers={workers}, gateway={gateway!r},\n"
        f"    log_level='warning', reporter_factory=store_reporter({url!r}, {gateway!r}, 'http://x:{port}'))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/_fnstage/health").status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.05)
    stop(proc)
    raise AssertionError("the runtime did not start")


def stop(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(10)


@pytest.mark.e2e
@pytest.mark.parametrize("workers", [1, 2])
def test_publish_becomes_live_in_every_worker(deployments: tuple[str, Deployments], workers: int) -> None:
    url, service = deployments
    port = free_port()
    proc = start(url, port, workers, None)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
            assert http.get("/demo/dev/hello").json() == {"v": 1}
            host = {"host": f"demo.dev.localhost:{port}"}
            assert http.get("/hello", headers=host).json() == {"v": 1}
            service.save(ADA, "demo", "dev/hello", {"index.py": "def main(ctx):\n    return {'v': 2}\n"})
            deadline = time.monotonic() + 5
            seen: list[int] = []
            while len(seen) < 20 and time.monotonic() < deadline:  # 20 answers in a row from v2,
                response = http.get("/demo/dev/hello", headers={"connection": "close"})  # any worker
                seen = [*seen, 2] if response.json() == {"v": 2} else []
            assert len(seen) == 20
            assert http.get("/demo/dev/hello").headers["x-fnstage-version"] == "2"
            deadline = time.monotonic() + 5
            reported: list[int] = []
            while reported.count(2) < workers and time.monotonic() < deadline:  # every worker reports v2
                with service.store.read() as tx:
                    rows = tx.conn.execute(
                        text("select version from runtime_functions where name = 'dev/hello'")
                    )
                    reported = [r[0] for r in rows]
            assert reported.count(2) == workers, reported
            service.delete(ADA, "demo", "dev/hello")
            deadline = time.monotonic() + 5
            gone = 0
            while gone < 20 and time.monotonic() < deadline:  # 20 answers in a row: 404 from any worker
                response = http.get("/demo/dev/hello", headers={"connection": "close"})
                gone = gone + 1 if response.status_code == 404 else 0
            assert gone == 20
    finally:
        stop(proc)


@pytest.mark.e2e
def test_a_gateway_runtime_serves_only_its_gateway(deployments: tuple[str, Deployments]) -> None:
    url, _ = deployments
    port = free_port()
    proc = start(url, port, 1, "demo")
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
            assert http.get("/dev/hello").json() == {"v": 1}
            assert http.get("/hello", headers={"host": "other.dev.localhost"}).status_code == 404
            status = http.get("/_fnstage/status").json()
            assert [(f["gateway"], f["name"]) for f in status["functions"]] == [("demo", "dev/hello")]
    finally:
        stop(proc)


def test_a_signal_arriving_inside_a_signal_handler_cannot_deadlock_the_server() -> None:
    """granian's handler sets a threading.Event, holding its lock; a second signal arriving just then
    runs the handler again in the same thread. It must return, not wait for that lock forever (a
    runtime in CI stayed up that way after its `fnstage up` was killed)."""
    from granian.constants import Interfaces

    from fnstage.runtime.server import granian_server

    server = granian_server()(
        "fnstage.runtime", address="127.0.0.1", port=free_port(), interface=Interfaces.ASGI
    )
    event = server.main_loop_interrupt
    plain_set = event.set

    def set_while_a_signal_arrives() -> None:
        with event._cond:  # the lock Event.set holds: a signal lands while it is held
            server.signal_handler_interrupt(signal.SIGTERM, None)
        plain_set()

    event.set = set_while_a_signal_arrives
    handler = threading.Thread(
        target=server.signal_handler_interrupt, args=(signal.SIGTERM, None), daemon=True
    )
    handler.start()
    handler.join(5)
    assert not handler.is_alive(), "the nested signal handler waits for a lock its own thread holds"
    assert event.is_set() and server.interrupt_signal


RUNTIME = [sys.executable, "-m", "fnstage", "runtime"]


def _ignores_sigterm(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:  # gone: it ignores nothing any more
        return False
    mask = next(line.split()[1] for line in status.splitlines() if line.startswith("SigIgn:"))
    return bool(int(mask, 16) & (1 << (signal.SIGTERM - 1)))


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:  # the thread ended since the listing: it has no children to read
            continue
    return found


@pytest.mark.e2e
def test_a_stop_signal_to_the_whole_group_stops_the_runtime_in_order(
    deployments: tuple[str, Deployments], tmp_path: Path
) -> None:
    """systemd (and a bench) send SIGTERM to every process of the runtime at once. The zygote and the
    log writer leave the stop to the supervisor: a zygote killed first could no longer say that a cell
    ended (the supervisor waited 10 s per cell), and a writer killed first was started again."""
    url, _ = deployments
    port = free_port()
    log = tmp_path / "runtime.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                *RUNTIME,
                "--database-url",
                url,
                "--gateway",
                "demo",
                "--port",
                str(port),
                "--log-level",
                "info",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 30
        writer: list[int] = []
        while time.monotonic() < deadline:
            writer = [
                pid
                for pid in _children(proc.pid)
                if b"log_process" in Path(f"/proc/{pid}/cmdline").read_bytes() and _ignores_sigterm(pid)
            ]
            try:
                healthy = httpx.get(f"http://127.0.0.1:{port}/_fnstage/health").status_code == 200
            except httpx.TransportError:
                healthy = False
            if healthy and writer:
                break
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    text = log.read_text()
    assert "starting it again" not in text
    assert "runtime: cell demo/dev stopped" in text and "runtime: stopped" in text


def test_the_runtime_starts_its_zygote_before_it_imports_the_supervisor(tmp_path: Path) -> None:
    """`fnstage runtime` spawns the zygote before importing the supervisor (SQLAlchemy, the front: about
    0.4 s of CPU), so the zygote's own imports run meanwhile on another core and a cold start's first
    cell does not wait for them."""
    probe = (
        "import sys\n"
        "from fnstage.runtime import zygote\n"
        "def start(self):\n"
        "    print('supervisor imported' if 'fnstage.runtime.supervisor' in sys.modules else 'zygote first')\n"
        "    raise SystemExit(0)\n"
        "zygote.Zygote.start = start\n"
        "from fnstage.runtime.server import run_runtime\n"
        f"run_runtime({'sqlite:///' + str(tmp_path / 'fnstage.db')!r})\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "zygote first"
