"""Many runtimes on one PostgreSQL database, as production runs them: `fnstage up --no-runtime` for the
control plane, three `fnstage runtime --gateway demo` on ports of their own. A push goes live on all
three; a runtime that dies is shown as silent, the other two keep the count."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fnstage.testing import RuntimeServer, UpProcess
from support.cli import Cli, write
from support.waiting import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.engine("postgres"), pytest.mark.timeout(240)]

# FNSTAGE_SILENT_AFTER_S for the API: a killed runtime is silent in 6 s, not 10 (runtimes heartbeat
# every 3 s, on a wake that comes at least every second: never more than 4 s apart)
SILENT_AFTER_S = 6.0


@pytest.fixture
def up(postgres_url: str, tmp_path: Path) -> Iterator[UpProcess]:
    process = UpProcess(
        tmp_path / "up",
        database_url=postgres_url,
        with_runtime=False,
        extra_env={"FNSTAGE_SILENT_AFTER_S": str(SILENT_AFTER_S)},
    )
    with process.start(timeout=90):
        Cli(process).run("gateway", "create", "demo")
        yield process


def test_three_runtimes_go_live_and_a_dead_one_is_shown_silent(
    up: UpProcess, postgres_url: str, tmp_path: Path
) -> None:
    cli = Cli(up)
    runtimes = [RuntimeServer(postgres_url, "demo", tmp_path / f"runtime{i}.log") for i in range(3)]
    with contextlib.ExitStack() as stack:
        for runtime in runtimes:
            stack.callback(runtime.stop)
            runtime.start(timeout=90)
        src = write(tmp_path / "fn", {"index.py": "def main(ctx):\n    return {'hello': 'world'}\n"})
        out = cli.run("push", str(src), "dev/hello", "--wait").stdout
        assert "live on 3/3 runtimes" in out, out
        for runtime in runtimes:
            r = httpx.get(f"{runtime.url}/dev/hello", timeout=5)
            assert r.json() == {"hello": "world"} and r.headers["x-fnstage-version"] == "1"

        gone = runtimes[0]
        gone.kill()  # a crashed host: no deregistration
        assert gone.process is not None
        statuses: list[str] = []

        def shown_silent() -> bool:
            statuses.append(cli.run("status", "hello").stdout)
            return "live 2/2, 1 silent" in statuses[-1]

        eventually(shown_silent, timeout=SILENT_AFTER_S + 15, every=0.5)  # silent after SILENT_AFTER_S
        assert f"pid {gone.process.pid} is silent (last heard" in statuses[-1], statuses[-1]

        # the two left still take a new version, and --wait counts only them
        write(src, {"index.py": "def main(ctx):\n    return {'hello': 'again'}\n"})
        out = cli.run("push", str(src), "dev/hello", "--wait").stdout
        assert "live on 2/2 runtimes" in out and "1 silent" in out, out
        for runtime in runtimes[1:]:
            assert httpx.get(f"{runtime.url}/dev/hello", timeout=5).json() == {"hello": "again"}


def test_status_names_silent_runtimes_and_disconnected_feeds() -> None:
    from datetime import UTC, datetime, timedelta

    from fnstage.cli.render import runtime_alerts

    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    ago = (now - timedelta(seconds=42)).isoformat()
    runtimes = [
        {"host": "a", "pid": 1, "state": "live", "feed_state": "connected", "heartbeat_at": ago},
        {"host": "b", "pid": 2, "state": "live", "feed_state": "disconnected", "feed_since": ago},
        {"host": "c", "pid": 3, "state": "silent", "feed_state": "connected", "heartbeat_at": ago},
    ]
    lines = [str(t) for t in runtime_alerts({"dev": {"runtime": {"runtimes": runtimes}}}, now)]
    assert lines == [
        "dev: runtime b pid 2: feed disconnected since 42 s ago, serving from memory",
        "dev: runtime c pid 3 is silent (last heard 42 s ago)",
    ]


def test_entering_a_started_process_does_not_start_another(tmp_path: Path) -> None:
    # `with UpProcess(...).start(timeout=90):` started a second `fnstage up` and left the first running
    up = UpProcess(tmp_path / "up")
    started = up.start(timeout=90)
    first = up.process
    try:
        with started as entered:
            assert entered is up and up.process is first
        assert first is not None and first.poll() is not None
    finally:
        if first is not None and first.poll() is None:
            first.kill()
