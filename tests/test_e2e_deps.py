"""Real dependencies end to end: the `fnstage` CLI against a real `fnstage up`, on both engines, with
packages from a folder of wheels built here (never the internet).

pin fnpkg==1.0 -> a function answers 1.0; pin 2.0 and save -> it answers 2.0 while another function
on the 1.0 lock still answers 1.0 (two cells); roll back to the 1.0 entry -> 1.0 again; no request
fails across it under load; an unresolvable requirement changes nothing; a version that cannot import
is refused at promotion; a restart reinstalls nothing.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fnstage.store.engine import sqlite_url
from fnstage.testing import RuntimeServer, UpProcess
from support.cli import Cli, write
from support.waiting import eventually
from support.wheels import USES_FNPKG, offline_env, wheelhouse

pytestmark = pytest.mark.e2e

CANNOT_IMPORT = "import fnpkg.missing\n\n\ndef main(ctx):\n    return 1\n"


@pytest.fixture(params=["sqlite", "postgres"])
def up(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpProcess]:
    root = tmp_path_factory.mktemp("deps-up")
    wheels = wheelhouse(root / "wheels")
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    with UpProcess(root, extra_env=offline_env(wheels, root), database_url=url).start(timeout=90) as process:
        yield process


class Load:
    """GETs of each function in a loop on two threads, counted by (function, answer)."""

    def __init__(self, up: UpProcess, names: list[str]) -> None:
        self.url, self.names = up.runtime_url, names
        self.counts: Counter[tuple[str, str]] = Counter()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(2)]

    def _run(self) -> None:
        with httpx.Client(timeout=15) as client:
            while not self._stop.is_set():
                for name in self.names:
                    try:
                        r = client.get(f"{self.url}/{name}", headers={"Host": "demo.dev.localhost"})
                        answer = r.json()["version"] if r.status_code == 200 else str(r.status_code)
                    except (httpx.HTTPError, ValueError, KeyError) as exc:
                        answer = type(exc).__name__
                    self.counts[(name, answer)] += 1

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def failures(self) -> dict[tuple[str, str], int]:
        return {key: n for key, n in self.counts.items() if key[1] not in ("1.0", "2.0")}


def answer(up: UpProcess, name: str) -> str:
    r = httpx.get(f"{up.runtime_url}/{name}", headers={"Host": "demo.dev.localhost"}, timeout=15)
    assert r.status_code == 200, r.text
    return str(r.json()["version"])


def test_each_version_runs_with_the_packages_of_its_lock(up: UpProcess, tmp_path: Path) -> None:
    cli = Cli(up)
    cli.run("gateway", "create", "demo")
    out = cli.run("deps", "set", "fnpkg==1.0").stdout
    assert "fnpkg==1.0" in out and "fnpkg 1.0" in out
    a = write(tmp_path / "a", {"index.py": USES_FNPKG % "a"})
    b = write(tmp_path / "b", {"index.py": USES_FNPKG % "b"})
    cli.run("push", str(a), "dev/a", "--wait")
    cli.run("push", str(b), "dev/b", "--wait")
    assert answer(up, "a") == "1.0" and answer(up, "b") == "1.0"

    # unresolvable: refused with the resolver's words, and nothing changes
    cli.refused("deps", "set", "fnpkg==9.9", says="fnpkg")
    assert cli.run("deps", "show").stdout.startswith("fnpkg==1.0\n")

    with Load(up, ["a", "b"]) as load:
        cli.run("deps", "set", "fnpkg==2.0")
        write(a, {"index.py": USES_FNPKG % "a" + "# 2.0\n"})
        cli.run("push", str(a), "dev/a", "--wait")
        eventually(lambda: answer(up, "a") == "2.0")
        assert answer(up, "b") == "1.0"  # still on the 1.0 lock: its own cell
        history = cli.json("history", "dev/a")
        assert isinstance(history, dict)
        first = history["entries"][-1]
        assert first["version"] == 1 and first["lock_hash"] != history["entries"][0]["lock_hash"]
        diff = cli.run("diff", f"#{first['id']}", "dev/a").stdout
        assert "lock: fnpkg 1.0 → 2.0" in diff
        cli.run("rollback", "dev/a", "--to", f"#{first['id']}", "--semver", "0.2.0", "-m", "back", "--wait")
        eventually(lambda: answer(up, "a") == "1.0")
        after = load.counts.total()  # and 20 more requests on the rolled-back lock, none failing
        eventually(lambda: load.counts.total() >= after + 20, timeout=60)
    assert load.failures() == {}, load.counts
    assert load.counts[("a", "2.0")] > 0 and load.counts[("b", "1.0")] > 0

    # a version that cannot import is refused at promotion, unless forced (and history says so)
    c = write(tmp_path / "c", {"index.py": CANNOT_IMPORT})
    cli.run("push", str(c), "dev/c")
    eventually(lambda: "failed" in cli.run("status", "c").stdout)
    refused = cli.refused(
        "promote", "dev/c", "--to", "staging", "--semver", "1.0.0", "-m", "qa", says="failed to load on 1/1"
    )
    assert "ModuleNotFoundError" in refused and "--force" in refused
    cli.run("promote", "dev/c", "--to", "staging", "--semver", "1.0.0", "-m", "qa", "--force")
    entries = cli.json("history", "staging/c")
    assert isinstance(entries, dict) and "forced past" in entries["entries"][0]["note"]

    # a restart finds every environment in place: nothing is installed again
    environments = Path(up.env["FNSTAGE_ENVIRONMENTS_DIR"])
    before = {p.name: p.stat().st_ino for p in environments.iterdir() if not p.name.startswith(".")}
    assert len(before) == 2
    up.stop()
    up.start(timeout=90)
    assert answer(up, "a") == "1.0" and answer(up, "b") == "1.0"
    after = {p.name: p.stat().st_ino for p in environments.iterdir() if not p.name.startswith(".")}
    assert after == before

    # another host (a runtime with environments of its own) installs each lock before serving it
    elsewhere = tmp_path / "host2"
    other = RuntimeServer(
        up.database_url or sqlite_url(up.data_dir),
        "demo",
        tmp_path / "host2.log",
        extra_env={**up.env, "FNSTAGE_ENVIRONMENTS_DIR": str(elsewhere)},
    )
    try:
        other.start(timeout=90)
        r = httpx.get(f"{other.url}/dev/a", timeout=15)
        assert r.status_code == 200 and r.json()["version"] == "1.0", r.text
        # dev/a and dev/b run the 1.0 lock, dev/c and staging/c the 2.0 one: both installed there
        assert {p.name for p in elsewhere.iterdir() if not p.name.startswith(".")} == set(before)
    finally:
        other.stop()
