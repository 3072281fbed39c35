"""Scheduled functions through real processes: `fnstage up` (its scheduler and runtime) and the CLI.

Time is injected: every `fnstage up` here reads the scheduler's clock from one file
(`FNSTAGE_TEST_CLOCK_FILE`), which the test rewrites to cross a tick, so nothing waits a minute.
What the issue asks, each seen as a user sees it (`fnstage trigger runs`, `fnstage logs`):
ticks fire once with two `fnstage up` on one PostgreSQL database; a restart across a tick runs it
once; a paused trigger does not fire; a failing run is recorded and the next tick still fires.
"Nothing ran twice" is seen after each scheduler has made more passes (`/api/v1/health` counts them),
never after a sleep.
"""

from __future__ import annotations

import contextlib
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from fnstage.testing import UpProcess
from support.cli import Cli, write

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.long,
    pytest.mark.timeout(600),
]  # restarts `fnstage up` on a shared machine

T0 = datetime(2030, 1, 1, 10, 59, 30, tzinfo=UTC)
REPORT = (
    "def main(ctx):\n"
    "    t = ctx.trigger\n"
    "    ctx.log('tick', t.name, t.schedule, t.tick.isoformat(), 'payload', ctx.json)\n"
    "    return {'ran': t.name}\n"
)
FLAKY = "def main(ctx):\n    raise ValueError('the report source is down')\n"


class FileClock:
    """The clock file every `fnstage up` of a test reads."""

    def __init__(self, path: Path, at: datetime = T0) -> None:
        self.path = path
        self.set(at)

    def set(self, at: datetime) -> None:
        self.at = at
        spare = self.path.with_suffix(".next")
        spare.write_text(at.isoformat())
        os.replace(spare, self.path)  # never a half-written time

    def move(self, **delta: float) -> None:
        self.set(self.at + timedelta(**delta))


def _env(clock: FileClock) -> dict[str, str]:
    return {"FNSTAGE_TEST_CLOCK_FILE": str(clock.path), "FNSTAGE_SCHEDULER_POLL_S": "0.1"}


def _runs(up: UpProcess, trigger: str, token: str | None = None) -> list[dict[str, Any]]:
    """Through `up`'s API, as the admin (of the first `up` on the database: `token`)."""
    env, name = trigger.split("/")
    headers = {"Authorization": f"Bearer {token or up.token}"}
    with httpx.Client(base_url=up.url, headers=headers, timeout=30) as api:
        answer = api.get(f"/api/v1/gateways/demo/triggers/{env}/{name}/runs", params={"limit": 100})
    answer.raise_for_status()
    runs: list[dict[str, Any]] = answer.json()["runs"]
    return runs


def _wait_for_runs(
    up: UpProcess, trigger: str, count: int, timeout: float = 60, token: str | None = None
) -> list[dict[str, Any]]:
    """Until `trigger` has `count` finished runs (newest first); fails if it gets more."""
    deadline = time.monotonic() + timeout
    while True:
        runs = _runs(up, trigger, token)
        done = [r for r in runs if r["status"] != "running"]
        assert len(runs) <= count, f"{trigger} ran more than {count} times: {runs}"
        if len(done) == count:
            return runs
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{trigger}: {len(done)} of {count} runs after {timeout} s: {runs}\n{up.log()}"
            )
        time.sleep(0.1)


def _passes(up: UpProcess) -> int:
    """How many passes `up`'s scheduler has made (`/api/v1/health`, open to all)."""
    answer = httpx.get(f"{up.url}/api/v1/health", timeout=30)
    answer.raise_for_status()
    passes: int = answer.json()["scheduler"]["passes"]
    return passes


def _wait_for_passes(ups: list[UpProcess], more: int, timeout: float = 60) -> None:
    """Until each of `ups`' schedulers has made `more` passes from now (at least 2: the first may have
    begun before now), so any tick due now has been read, and claimed if it ever will be."""
    assert more >= 2
    targets = [(up, _passes(up) + more) for up in ups]
    deadline = time.monotonic() + timeout
    for up, target in targets:
        while (passes := _passes(up)) < target:
            if time.monotonic() > deadline:
                raise AssertionError(f"{up.url}'s scheduler made {passes} of {target} passes\n{up.log()}")
            time.sleep(0.05)


def _push(cli: Cli, tmp_path: Path, name: str, code: str) -> None:
    src = write(tmp_path / name.replace("/", "-"), {"index.py": code})
    cli.run("push", str(src), name, "--wait")


@pytest.fixture
def clock(tmp_path: Path) -> FileClock:
    return FileClock(tmp_path / "clock")


def test_runs_are_recorded_a_paused_trigger_waits_and_a_restart_across_a_tick_runs_it_once(
    clock: FileClock, tmp_path: Path
) -> None:
    up = UpProcess(tmp_path / "up", extra_env=_env(clock))
    with contextlib.ExitStack() as stack:
        stack.callback(up.stop)
        up.start(timeout=90)
        cli = Cli(up)
        cli.run("gateway", "create", "demo")
        _push(cli, tmp_path, "dev/jobs/report", REPORT)
        _push(cli, tmp_path, "dev/jobs/flaky", FLAKY)
        out = cli.run(
            "trigger", "add", "dev/jobs/report", "--cron", "* * * * *", "--payload", '{"day": 1}'
        ).stdout
        assert (
            "added trigger dev/jobs-report runs dev/jobs/report" in out and "2030-01-01 11:00 UTC" in out
        ), out
        cli.run("trigger", "add", "dev/jobs/flaky", "--cron", "* * * * *")
        cli.run("trigger", "add", "dev/jobs/report", "--cron", "* * * * *", "--name", "held")
        assert "paused" in cli.run("trigger", "pause", "dev/held").stdout
        listed = cli.json("trigger", "ls", "dev")
        assert {t["name"]: t["paused"] for t in listed["triggers"]} == {
            "jobs-report": False,
            "jobs-flaky": False,
            "held": True,
        }
        refused = cli.refused(
            "trigger", "add", "dev/jobs/report", "--cron", "* * *", "--name", "x", says="cron"
        )
        assert "use five" in refused

        clock.set(datetime(2030, 1, 1, 11, 0, 0, 500_000, tzinfo=UTC))
        (first,) = _wait_for_runs(up, "dev/jobs-report", 1)
        assert first["status"] == "ok" and first["http_status"] == 200 and first["version"] == 1
        assert first["lines"] == ["tick jobs-report * * * * * 2030-01-01T11:00:00+00:00 payload {'day': 1}"]
        (failed,) = _wait_for_runs(up, "dev/jobs-flaky", 1)
        assert failed["status"] == "failed" and failed["http_status"] == 500
        assert failed["error"].startswith("ValueError at index.py:2: the report source is down")

        clock.move(minutes=1)  # 11:01:00.5: the failing trigger still fires
        runs = _wait_for_runs(up, "dev/jobs-flaky", 2)
        assert [r["tick"][11:16] for r in runs] == ["11:01", "11:00"] and {r["status"] for r in runs} == {
            "failed"
        }
        _wait_for_runs(up, "dev/jobs-report", 2)
        assert _runs(up, "dev/held") == []

        text = cli.run("trigger", "runs", "dev/jobs-flaky").stdout
        assert (
            "2030-01-01 11:01 UTC  failed 500" in text
            and "ValueError at index.py:2: the report source is down" in text
        )
        logs = cli.json("logs", "dev/jobs/report")["invocations"]
        assert [e["trigger"] for e in logs] == ["jobs-report", "jobs-report"]
        assert "trigger jobs-report" in cli.run("logs", "dev/jobs/report").stdout

        # everything stops just before 11:02 and comes back at 11:02:30: 11:02 runs, once
        clock.set(datetime(2030, 1, 1, 11, 1, 50, tzinfo=UTC))
        up.stop()
        clock.set(datetime(2030, 1, 1, 11, 2, 30, tzinfo=UTC))
        up.start(timeout=90)
        runs = _wait_for_runs(up, "dev/jobs-report", 3)
        assert runs[0]["tick"] == "2030-01-01T11:02:00+00:00" and runs[0]["status"] == "ok"
        up.stop()  # and once more, at once: 11:02 has run, nothing is due
        up.start(timeout=90)
        _wait_for_passes([up], 20)
        assert len(_runs(up, "dev/jobs-report")) == 3
        assert _runs(up, "dev/held") == []

        clock.set(datetime(2030, 1, 1, 11, 3, 0, 500_000, tzinfo=UTC))
        _wait_for_runs(up, "dev/jobs-report", 4)
        cli.run("trigger", "resume", "dev/held")
        clock.move(minutes=1)
        (held,) = _wait_for_runs(up, "dev/held", 1)
        assert held["tick"] == "2030-01-01T11:04:00+00:00"
        cli.run("trigger", "rm", "dev/held", "--yes")
        assert "held" not in cli.run("trigger", "ls").stdout


@pytest.mark.postgres
def test_two_control_planes_on_one_postgres_database_run_each_tick_once(
    clock: FileClock, postgres_url: str, tmp_path: Path
) -> None:
    ups = [UpProcess(tmp_path / f"up{i}", extra_env=_env(clock), database_url=postgres_url) for i in range(2)]
    with contextlib.ExitStack() as stack:
        for up in ups:
            stack.callback(up.stop)
            up.start(timeout=90)
        cli = Cli(ups[0])
        cli.run("gateway", "create", "demo")
        _push(cli, tmp_path, "dev/jobs/report", REPORT)
        _wait_until_live_on_every_runtime(ups[0], 2)
        cli.run("trigger", "add", "dev/jobs/report", "--cron", "* * * * *")
        for minute in range(3):
            clock.set(datetime(2030, 1, 1, 11, minute, 0, 200_000, tzinfo=UTC))
            _wait_for_runs(ups[1], "dev/jobs-report", minute + 1, token=ups[0].token)
        _wait_for_passes(ups, 10)  # ten more passes of each scheduler: nothing runs twice
        runs = _runs(ups[1], "dev/jobs-report", ups[0].token)
        assert [r["tick"][11:16] for r in runs] == ["11:02", "11:01", "11:00"]
        assert {r["status"] for r in runs} == {"ok"}
        second = Cli(ups[1])
        second.env["FNSTAGE_TOKEN"] = ups[0].token  # the admin was made by the first `up`
        logs = second.json("logs", "dev/jobs/report")
        assert logs["runtimes"] == {"asked": 2, "answered": 2}
        ticks = sorted(line.split()[7] for e in logs["invocations"] for line in e["lines"])  # after the cron
        assert ticks == [f"2030-01-01T11:0{m}:00+00:00" for m in range(3)]


def _wait_until_live_on_every_runtime(up: UpProcess, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with up.client() as api:
            rollout = api.get("/api/v1/gateways/demo/rollout/dev/jobs/report").json()
        if sum(1 for r in rollout["runtimes"] if r["state"] == "live") >= count:
            return
        time.sleep(0.1)
    raise AssertionError(f"not live on {count} runtimes: {rollout}")


def test_a_runtime_refuses_a_scheduled_run_from_anyone_but_its_control_plane(
    clock: FileClock, tmp_path: Path
) -> None:
    with UpProcess(tmp_path / "up", extra_env=_env(clock)).start(timeout=90) as up:
        cli = Cli(up)
        cli.run("gateway", "create", "demo")
        _push(cli, tmp_path, "dev/jobs/report", REPORT)
        order = {
            "gateway": "demo",
            "name": "dev/jobs/report",
            "trigger": {"name": "x", "schedule": "* * * * *", "timezone": "UTC", "tick": T0.isoformat()},
        }
        forged = httpx.post(f"{up.runtime_url}/_fnstage/invoke", json=order, timeout=5)
        assert forged.status_code == 401
        # the public route has no trigger: ctx.trigger is None, and REPORT fails reading it
        public = httpx.post(f"{up.runtime_url}/demo/dev/jobs/report", json=order, timeout=5)
        assert public.status_code == 500
        errors = [e["error"] for e in cli.json("logs", "dev/jobs/report")["invocations"]]
        assert len(errors) == 1 and errors[0].startswith("AttributeError at index.py:3")
        assert "'NoneType' object has no attribute 'name'" in errors[0]
