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


PID = "import os\n\n\ndef main(ctx):\n    return {'pid': os.getpid(), 'term': ctx.headers.get('x-term')}\n"
USES_FNPKG_PID = (
    "import os\n\nimport fnpkg\n\n\ndef main(ctx):\n"
    "    return {'version': fnpkg.__version__, 'pid': os.getpid(), 'term': ctx.headers.get('x-term')}\n"
)


def listening_owners(port: int) -> set[int]:
    """The pids holding the socket that listens on 127.0.0.1:`port` (from /proc: no tool needed)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == f"0100007F:{port:04X}" and fields[3] == "0A":
            inodes.add(f"socket:[{fields[9]}]")
    assert inodes, f"nothing listens on 127.0.0.1:{port}"
    owners = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fds = list((proc / "fd").iterdir())
        except OSError:  # the process ended while we looked
            continue
        for fd in fds:
            try:
                if str(fd.readlink()) in inodes:
                    owners.add(int(proc.name))
                    break
            except OSError:  # the descriptor closed while we looked
                continue
    return owners


def test_an_env_runtime_serves_its_port_from_its_environment_cell_with_no_front(
    control_plane: UpProcess, postgres_url: str, tmp_path: Path
) -> None:
    """Issue 11's ">= 0.95x of a cell served directly": the environment's cell itself listens on the
    runtime's port (no front in the supervisor in between), and a function pinned to a lock is forwarded
    by it to that lock's cell."""
    cli = Cli(control_plane)
    cli.run("gateway", "create", "demo")
    plain = write(tmp_path / "plain", {"index.py": PID})
    cli.run("push", str(plain), "dev/plain")
    release(cli, "plain", "1.0.0")
    cli.run("deps", "set", "fnpkg==1.0")
    pinned = write(tmp_path / "pinned", {"index.py": USES_FNPKG_PID})
    cli.run("push", str(pinned), "dev/pinned")
    release(cli, "pinned", "1.0.0")

    runtime = RuntimeServer(
        postgres_url,
        "demo",
        tmp_path / "prod.log",
        env="prod",
        extra_env={**control_plane.env, "FNSTAGE_ENVIRONMENTS_DIR": str(tmp_path / "prod-host")},
    )
    with runtime.start(timeout=90):
        assert runtime.process is not None

        def get(name: str) -> dict[str, object]:
            r = httpx.get(f"{runtime.url}/{name}", headers={"Host": "demo.prod.localhost"}, timeout=15)
            assert r.status_code == 200, f"{name}: {r.status_code} {r.text}"
            body: dict[str, object] = r.json()
            return body

        eventually(lambda: get("pinned")["version"] == "1.0", 30)
        owners = listening_owners(runtime.port)
        assert runtime.process.pid not in owners, "the supervisor holds the port: a front is in between"
        served_by = get("plain")["pid"]
        assert owners == {served_by}, (owners, served_by)  # the environment's cell listens and answers
        public = httpx.get(f"{runtime.url}/_fnstage/status", timeout=10).json()
        assert public["pid"] == served_by and isinstance(public["sandbox"], dict)
        forwarded = get("pinned")
        assert forwarded["version"] == "1.0" and forwarded["pid"] != served_by  # its lock's own cell
        # a header value granian's RSGI cannot give reaches both: the environment's cell, with no front
        # before it, speaks ASGI unless told "rsgi"; its lock cell (RSGI, the default) reads it from the
        # carrier the environment's cell sends (`carried_headers`)
        for name in ("plain", "pinned"):
            r = httpx.get(
                f"{runtime.url}/{name}",
                headers={"Host": "demo.prod.localhost", "x-term": b"lev\xc3\xa9"},
                timeout=15,
            )
            assert r.status_code == 200 and r.json()["term"] == "lev\xc3\xa9", (name, r.status_code, r.text)
