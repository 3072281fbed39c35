"""Bad releases (issue 7, part 4): a prod release that fails to load, or whose `main` raises on every
call, on ONE of three runtimes (`fnstage runtime --gateway demo`, each a host of its own, on one store).
The failure is host-specific: the function reads FNSTAGE_TEST_BAD_HOST at module level, and only the
first runtime has it set and passes it to its cells (`FNSTAGE_CELL_ENV`).

What must hold: the other two runtimes serve the new release without a failed request; the failing
runtime keeps the previous release live (load failure) or answers 500s (raising main); `fnstage
status` names the error ("failed on 1: ..."), `fnstage logs` the exception; one command, `fnstage
rollback ... --wait`, brings the previous code back live on 3/3.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fnstage.store.engine import sqlite_url
from fnstage.testing import RuntimeServer, UpProcess
from support.cli import Cli, write
from support.waiting import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.long, pytest.mark.timeout(300)]

GOOD = "def main(ctx):\n    return {'release': '%s'}\n"
FAILS_AT_LOAD = """import os

if os.environ.get("FNSTAGE_TEST_BAD_HOST"):
    raise RuntimeError("no settings file on this host")


def main(ctx):
    return {"release": "%s"}
"""
RAISES = """import os

BROKEN = bool(os.environ.get("FNSTAGE_TEST_BAD_HOST"))


def main(ctx):
    if BROKEN:
        raise RuntimeError("the payment key is missing on this host")
    return {"release": "%s"}
"""


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[tuple[UpProcess, list[RuntimeServer]]]:
    up = UpProcess(tmp_path / "up", with_runtime=False)
    with contextlib.ExitStack() as stack:
        stack.enter_context(up)
        Cli(up).run("gateway", "create", "demo")
        # the bad host, which passes the variable to function code (cells get no other of the host's)
        bad = {"FNSTAGE_TEST_BAD_HOST": "1", "FNSTAGE_CELL_ENV": "FNSTAGE_TEST_BAD_HOST"}
        runtimes = [
            RuntimeServer(
                sqlite_url(up.data_dir),
                "demo",
                tmp_path / f"runtime{i}.log",
                extra_env=bad if i == 0 else None,
            )
            for i in range(3)
        ]
        for runtime in runtimes:
            stack.callback(runtime.stop)
            runtime.start(timeout=90)
        yield up, runtimes


class Traffic:
    """Round-robin GETs of prod/shop/pay on every runtime, counted per runtime and status."""

    def __init__(self, runtimes: list[RuntimeServer]) -> None:
        self.runtimes = runtimes
        self.counts: list[Counter[str]] = [Counter() for _ in runtimes]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=15) as client:
            while not self._stop.is_set():
                for i, runtime in enumerate(self.runtimes):
                    try:
                        r = client.get(f"{runtime.url}/prod/shop/pay")
                        key = (
                            f"{r.status_code} {r.json().get('release', '')}"
                            if r.status_code == 200
                            else str(r.status_code)
                        )
                    except (httpx.HTTPError, ValueError) as exc:
                        key = type(exc).__name__
                    self.counts[i][key] += 1
                time.sleep(0.02)

    def wait_for_rounds(self, rounds: int, timeout: float = 60) -> None:
        """Until every runtime has been asked `rounds` more times than now."""
        targets = [c.total() + rounds for c in self.counts]
        eventually(lambda: all(c.total() >= t for c, t in zip(self.counts, targets, strict=True)), timeout)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


def release(cli: Cli, src: Path, code: str, semver: str, *, ok: bool = True, force: bool = False) -> str:
    """dev -> staging -> prod, as a team releases; returns what the prod promotion printed. `force`:
    past the promotion gate (a version that failed to load on a runtime is refused without it)."""
    write(src, {"index.py": code % semver})
    cli.run("push", str(src), "dev/shop/pay", "--wait", ok=not force)
    forced = ["--force"] if force else []
    note = ["--note", "QA", *forced]
    cli.run(
        "promote", "dev/shop/pay", "--to", "staging", "--semver", f"{semver}-rc.1", *note, "--wait", ok=ok
    )
    result = cli.run(
        "promote",
        "staging/shop/pay",
        "--to",
        "prod",
        "--semver",
        semver,
        "--note",
        "ship",
        *forced,
        "--wait",
        ok=ok,
    )
    return result.stdout + result.stderr


def served(runtime: RuntimeServer) -> tuple[int, str]:
    r = httpx.get(f"{runtime.url}/prod/shop/pay", timeout=15)
    return r.status_code, r.json().get("release", r.text) if r.status_code == 200 else r.text


def test_a_release_failing_at_load_on_one_host_keeps_the_previous_release_there_and_rolls_back(
    fleet: tuple[UpProcess, list[RuntimeServer]], tmp_path: Path
) -> None:
    up, runtimes = fleet
    cli = Cli(up)
    src = tmp_path / "pay"
    assert "3/3" in release(cli, src, GOOD, "1.0.0")
    with Traffic(runtimes) as traffic:
        # the promotion gate refuses a version that failed to load on one host of three ...
        write(src, {"index.py": FAILS_AT_LOAD % "1.0.1"})
        cli.run("push", str(src), "dev/shop/pay", "--wait", ok=False)
        cli.refused(
            "promote",
            "dev/shop/pay",
            "--to",
            "staging",
            "--semver",
            "1.0.1-rc.1",
            "-m",
            "QA",
            says="dev/shop/pay v2 failed to load on 1/3: RuntimeError",
        )
        # ... and a team that forces it past the gate gets the bad release to prod
        out = release(cli, src, FAILS_AT_LOAD, "1.0.1", ok=False, force=True)
        assert "failed" in out and "no settings file on this host" in out, out
        assert served(runtimes[0]) == (200, "1.0.0")  # the bad host keeps the previous release
        assert all(served(r) == (200, "1.0.1") for r in runtimes[1:])
        status = cli.run("status", "shop/pay").stdout
        assert "live 2/3, failed on 1: RuntimeError at" in status, status
        assert "index.py:4: no settings file on this host" in status, status
        started = time.monotonic()
        back = cli.run(
            "rollback", "prod/shop/pay", "--to", "1.0.0", "--semver", "1.0.2", "-m", "1.0.1", "--wait"
        )
        took = time.monotonic() - started
        assert "live on 3/3" in back.stdout, back.stdout
        assert all(served(r) == (200, "1.0.0") for r in runtimes)  # 1.0.0's code, as 1.0.2
        traffic.wait_for_rounds(10)  # each runtime asked 10 more times after the rollback
    print(
        f"\nload failure on 1 of 3: traffic {[dict(c) for c in traffic.counts]}, rollback --wait {took:.1f} s"
    )
    for counts in traffic.counts:
        assert set(counts) <= {"200 1.0.0", "200 1.0.1"}, traffic.counts  # not one failed request
    assert "200 1.0.1" not in traffic.counts[0]
    assert "live 3/3" in cli.run("status", "shop/pay").stdout


def test_a_release_whose_main_raises_on_one_host_answers_500_there_only_and_rolls_back(
    fleet: tuple[UpProcess, list[RuntimeServer]], tmp_path: Path
) -> None:
    up, runtimes = fleet
    cli = Cli(up)
    src = tmp_path / "pay"
    assert "3/3" in release(cli, src, GOOD, "1.0.0")
    with Traffic(runtimes) as traffic:
        assert "3/3" in release(cli, src, RAISES, "1.1.0")  # it loads everywhere
        deadline = time.monotonic() + 10
        while traffic.counts[0]["500"] < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert served(runtimes[0])[0] == 500
        assert all(served(r) == (200, "1.1.0") for r in runtimes[1:])
        logs = cli.run("logs", "prod/shop/pay").stdout
        assert "RuntimeError: the payment key is missing on this host" in logs, logs
        deadline = time.monotonic() + 15  # runtimes report their counts with the heartbeat (3 s)
        while True:
            status = json.loads(cli.run("status", "shop/pay", "--json").stdout)["environments"]["prod"][
                "runtime"
            ]["summary"]
            if "requests failed: RuntimeError at index.py" in status:
                break
            assert time.monotonic() < deadline, status
        assert "live 3/3" in status  # it loaded everywhere; its requests fail on one host
        print(f"\nstatus while main raises on 1 of 3: {status}")
        back = cli.run(
            "rollback", "prod/shop/pay", "--to", "1.0.0", "--semver", "1.1.1", "-m", "500s", "--wait"
        )
        assert "live on 3/3" in back.stdout, back.stdout
        assert all(served(r) == (200, "1.0.0") for r in runtimes)
        before = Counter(traffic.counts[0])
        traffic.wait_for_rounds(20)  # each runtime asked 20 more times after the rollback
    print(f"\nraising main on 1 of 3: traffic {[dict(c) for c in traffic.counts]}")
    for counts in traffic.counts[1:]:
        assert set(counts) <= {"200 1.0.0", "200 1.1.0"}, traffic.counts  # the others never failed
    assert set(traffic.counts[0]) <= {"200 1.0.0", "500"}
    assert traffic.counts[0]["500"] == before["500"]  # no 500 after the rollback
