"""Real dependencies in the production layout: one `fnstage runtime --gateway demo --env prod` on its own
host (its own environments folder) behind a control plane without a runtime, on PostgreSQL.

A function pinned to fnpkg 1.0 and another pinned to 2.0 answer their versions from that one runtime
(a cell per lock behind its front, each lock installed on the host before it is routed to), and a
promotion that changes a function's lock moves it to the other cell with no failed request. The
runtime collects its host's environments that nothing names.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fnstage.testing import RuntimeServer, UpProcess
from support.cli import Cli, write
from support.waiting import eventually
from support.wheels import USES_FNPKG, offline_env, wheelhouse

pytestmark = pytest.mark.e2e


@pytest.fixture
def control_plane(postgres_url: str, tmp_path: Path) -> Iterator[UpProcess]:
    wheels = wheelhouse(tmp_path / "wheels")
    env = offline_env(wheels, tmp_path)
    with UpProcess(tmp_path / "up", extra_env=env, database_url=postgres_url, with_runtime=False).start(
        timeout=90
    ) as up:
        yield up


def release(cli: Cli, name: str, semver: str) -> None:
    """dev -> staging -> prod, as the release policy asks."""
    cli.run("promote", f"dev/{name}", "--to", "staging", "--semver", f"{semver}-rc.1", "-m", "qa")
    cli.run("promote", f"staging/{name}", "--to", "prod", "--semver", semver, "-m", "go")


def answer(runtime: RuntimeServer, name: str) -> str:
    r = httpx.get(f"{runtime.url}/{name}", headers={"Host": "demo.prod.localhost"}, timeout=15)
    assert r.status_code == 200, f"{name}: {r.status_code} {r.text}"
    return str(r.json()["version"])


def test_one_prod_runtime_serves_each_lock_from_its_own_cell(
    control_plane: UpProcess, postgres_url: str, tmp_path: Path
) -> None:
    cli = Cli(control_plane)
    cli.run("gateway", "create", "demo")
    cli.run("deps", "set", "fnpkg==1.0")
    one = write(tmp_path / "one", {"index.py": USES_FNPKG % "one"})
    two = write(tmp_path / "two", {"index.py": USES_FNPKG % "two"})
    cli.run("push", str(one), "dev/one")
    cli.run("push", str(two), "dev/two")
    release(cli, "one", "1.0.0")
    cli.run("deps", "set", "fnpkg==2.0")
    write(two, {"index.py": USES_FNPKG % "two" + "# 2.0\n"})
    cli.run("push", str(two), "dev/two")
    release(cli, "two", "1.0.0")

    host = tmp_path / "prod-host"  # another machine: none of the locks is installed there yet
    stray = host / ("d" * 64)  # an environment nothing names any more (its lock long gone)
    (stray / "oldpkg").mkdir(parents=True)
    runtime = RuntimeServer(
        postgres_url,
        "demo",
        tmp_path / "prod.log",
        env="prod",
        extra_env={
            **control_plane.env,
            "FNSTAGE_ENVIRONMENTS_DIR": str(host),
            "FNSTAGE_ENVIRONMENTS_COLLECT_S": "0.5",
            "FNSTAGE_ENVIRONMENTS_MIN_AGE_S": "0",
        },
    )
    with runtime.start(timeout=90):
        eventually(lambda: answer(runtime, "one") == "1.0" and answer(runtime, "two") == "2.0", 30)
        # both locks installed on this host before routing; the stray one collected by the runtime
        eventually(lambda: not stray.exists(), 10)
        installed = {p.name for p in host.iterdir() if not p.name.startswith(".")}
        assert len(installed) == 2, installed

        counts: Counter[tuple[str, str]] = Counter()
        stop = threading.Event()

        def load() -> None:
            with httpx.Client(timeout=15) as client:
                while not stop.is_set():
                    for name in ("one", "two"):
                        try:
                            r = client.get(f"{runtime.url}/{name}", headers={"Host": "demo.prod.localhost"})
                            said = r.json()["version"] if r.status_code == 200 else str(r.status_code)
                        except (httpx.HTTPError, ValueError, KeyError) as exc:
                            said = type(exc).__name__
                        counts[(name, said)] += 1

        threads = [threading.Thread(target=load, daemon=True) for _ in range(2)]
        for thread in threads:
            thread.start()
        try:
            # one moves to the 2.0 lock: loaded in the 2.0 cell, routed there, then left its old cell
            write(one, {"index.py": USES_FNPKG % "one" + "# 2.0\n"})
            cli.run("push", str(one), "dev/one")
            release(cli, "one", "1.1.0")
            eventually(lambda: answer(runtime, "one") == "2.0", 30)
            stop.wait(2.5)  # past the old cell's grace: its requests drained, it stops (no function left)
        finally:
            stop.set()
            for thread in threads:
                thread.join(30)
        failed = {key: n for key, n in counts.items() if key[1] not in ("1.0", "2.0")}
        assert failed == {}, counts
        assert counts[("one", "1.0")] > 0 and counts[("one", "2.0")] > 0 and counts[("two", "2.0")] > 0
        assert answer(runtime, "two") == "2.0"
        # the 1.0 lock, no longer live anywhere, stays: prod/one's kept history entry names it
        assert {p.name for p in host.iterdir() if not p.name.startswith(".")} == installed
