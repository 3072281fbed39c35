"""Canary releases end to end (issue 14): a real `fnstage up`, the CLI, load from several clients, on
both engines. A good canary completes; one that raises on 30% of its requests is rolled back by
itself, with no failure outside the canary's share; abort and promote by hand; history has every step."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fnstage.testing import UpProcess
from support.waiting import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

GOOD = "def main(ctx):\n    return {'code': %r}\n"
FLAKY = (
    "import itertools\n_calls = itertools.count()\n\n"
    "def main(ctx):\n    if next(_calls) %% 10 < 3:\n        raise RuntimeError('flaky: 3 in 10')\n"
    "    return {'code': %r}\n"
)


class Load:
    """Clients sending GETs to prod/user/me until stopped; every answer kept as (version, status)."""

    def __init__(self, up: UpProcess, clients: int = 4, key: bool = False) -> None:
        self.url = f"{up.runtime_url}/user/me"
        self.host = f"demo.prod.localhost:{up.runtime_port}"
        self.answers: list[tuple[int, int]] = []
        self.key = key
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(clients)]

    def _run(self, index: int) -> None:
        headers = {"host": self.host}
        with httpx.Client(timeout=30) as client:
            n = 0
            while not self._stop.is_set():
                n += 1
                if self.key:
                    headers["x-fnstage-key"] = f"client-{index}-{n % 50}"
                r = client.get(self.url, headers=headers)
                self.answers.append((int(r.headers.get("x-fnstage-version", 0)), r.status_code))

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def up(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[UpProcess]:
    database_url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    env = {"FNSTAGE_CANARY_POLL_S": "0.5"}
    with UpProcess(tmp_path / "up", extra_env=env, database_url=database_url).start(timeout=90) as process:
        yield process


def _cli(up: UpProcess, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**up.cli_env(), "FNSTAGE_GATEWAY": "demo", "COLUMNS": "250", "NO_COLOR": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "fnstage", *args], env=env, capture_output=True, text=True, timeout=60
    )
    if ok:
        assert done.returncode == 0, f"fnstage {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done


def _release_to_prod(up: UpProcess, src: Path, code: str, semver: str, *canary: str) -> str:
    (src / "index.py").write_text(code)
    _cli(up, "push", str(src), "dev/user/me", "--wait")
    _cli(up, "promote", "dev/user/me", "--to", "staging", "--semver", f"{semver}-rc.1", "--note", "qa")
    return _cli(
        up, "promote", "staging/user/me", "--to", "prod", "--semver", semver, "--note", f"ship {semver}",
        # a plain release waits until prod serves it: the version read right after it must be this one
        *(canary or ("--wait",)),
    ).stdout  # fmt: skip


def _status(up: UpProcess) -> dict[str, object]:
    return json.loads(_cli(up, "rollout", "status", "prod/user/me", "--json").stdout)  # type: ignore[no-any-return]


def _wait_state(up: UpProcess, state: str, timeout: float) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        status = _status(up)
        if status["state"] == state or time.monotonic() > deadline:
            return status
        time.sleep(0.5)


def _history(up: UpProcess) -> list[dict[str, object]]:
    return json.loads(_cli(up, "history", "prod/user/me", "--json").stdout)["entries"]  # type: ignore[no-any-return]


def _prod_version(up: UpProcess) -> int:
    r = httpx.get(f"{up.runtime_url}/user/me", headers={"host": f"demo.prod.localhost:{up.runtime_port}"})
    return int(r.headers["x-fnstage-version"])


def test_canaries_complete_roll_back_by_themselves_and_obey_a_hand(up: UpProcess, tmp_path: Path) -> None:
    _cli(up, "gateway", "create", "demo")
    src = tmp_path / "fn"
    src.mkdir()
    _release_to_prod(up, src, GOOD % "1.0", "1.0.0")
    stable = _prod_version(up)

    # a good canary, 30% then 60%, completes at the end of its bake under load. Its latency is not what
    # this part proves (`judge`'s p95 rule: tests/test_domain_canary.py): with 20 requests a side, p95 is about the
    # slowest one, and one request stalled by a loaded machine (a CI neighbour) rolled a good canary
    # back in about 1 run of 3; the error-rate rule still applies.
    with Load(up) as load:
        out = _release_to_prod(
            up,
            src,
            GOOD % "1.1",
            "1.1.0",
            *("--canary", "30,60", "--bake", "3s", "--min-requests", "20", "--max-p95-ratio", "100"),
        )
        assert "serves 30% of requests" in out
        status = _wait_state(up, "completed", timeout=60)
    assert status["state"] == "completed", status
    canary_version = status["canary"]["version"]  # type: ignore[index]
    versions = Counter(v for v, _ in load.answers)
    assert not [a for a in load.answers if a[1] != 200], "a good canary fails no request"
    assert versions[stable] > 0 and versions[canary_version] > 0, versions  # both sides served
    now_live = _prod_version(up)
    assert now_live > canary_version  # the canary's code, released as the environment's version
    assert httpx.get(f"{up.runtime_url}/demo/prod/user/me").json() == {"code": "1.1"}

    # a canary that raises on 3 of 10 of its requests is rolled back by itself, within its bake
    stable = now_live
    with Load(up, key=True) as load:
        started = time.monotonic()
        _release_to_prod(
            up, src, FLAKY % "1.2", "1.2.0", "--canary", "20%", "--bake", "120s", "--min-requests", "30"
        )
        status = _wait_state(up, "rolled_back", timeout=90)
        decided_in = time.monotonic() - started
        after = len(load.answers)  # then 100 more requests after the decision: all on stable again
        eventually(lambda: len(load.answers) >= after + 100, timeout=60)
    assert status["state"] == "rolled_back" and decided_in < 120, (status, decided_in)
    assert status["decided_by"] == "fnstage" and "error rate" in str(status["reason"])
    bad = status["canary"]["version"]  # type: ignore[index]
    failed = [v for v, code in load.answers if code != 200]
    assert failed and set(failed) == {bad}, Counter(failed)  # no failure beyond the canary's share
    card = _cli(up, "status", "user/me").stdout  # the environment's card says what happened and why
    assert "was rolled back" in card and "decided by fnstage: error rate" in card, card
    back = _prod_version(up)
    assert back > bad and httpx.get(f"{up.runtime_url}/demo/prod/user/me").json() == {"code": "1.1"}
    assert load.answers[-1] == (back, 200)

    # by hand: abort, then promote
    _release_to_prod(up, src, GOOD % "1.3", "1.3.0", "--canary", "50%", "--bake", "10m")
    assert "aborted" in _cli(up, "rollout", "abort", "prod/user/me").stdout
    assert httpx.get(f"{up.runtime_url}/demo/prod/user/me").json() == {"code": "1.1"}
    _release_to_prod(up, src, GOOD % "1.4", "1.4.0", "--canary", "10%", "--bake", "10m")
    refused = _cli(
        up, "promote", "staging/user/me", "--to", "prod", "--semver", "1.5.0", "--note", "x", ok=False
    )
    assert refused.returncode == 1 and "canary" in refused.stderr  # one at a time
    assert "took all traffic" in _cli(up, "rollout", "promote", "prod/user/me").stdout
    deadline = time.monotonic() + 15
    while httpx.get(f"{up.runtime_url}/demo/prod/user/me").json() != {"code": "1.4"}:
        assert time.monotonic() < deadline
        time.sleep(0.1)

    # history has every step, newest first
    steps = [(e["kind"], e["semver"], e["actor"]) for e in _history(up)]
    assert steps == [
        ("promote", "1.4.0", "admin"),  # promoted by hand
        ("canary", "1.4.0", "admin"),
        ("rollback", "1.1.0", "admin"),  # aborted by hand
        ("canary", "1.3.0", "admin"),
        ("rollback", "1.1.0", "fnstage"),  # rolled back by itself
        ("canary", "1.2.0", "admin"),
        ("promote", "1.1.0", "fnstage"),  # completed by itself
        ("canary", "1.1.0", "admin"),
        ("promote", "1.0.0", "admin"),
    ]
    rolled_back = _history(up)[4]
    assert "error rate" in str(rolled_back["note"])


@pytest.mark.postgres
def test_two_runtimes_split_alike_and_the_canary_is_rolled_back_once(
    postgres_url: str, tmp_path: Path
) -> None:
    """Two production runtimes of prod (`--env prod`) behind a control plane without a runtime of its
    own: both split, both report, the judge adds them up and rolls back once."""
    from fnstage.store import canaries as sql
    from fnstage.store.store import Store
    from fnstage.testing import RuntimeServer

    env = {"FNSTAGE_CANARY_POLL_S": "0.5"}
    with UpProcess(tmp_path / "up", extra_env=env, database_url=postgres_url, with_runtime=False).start(
        timeout=90
    ) as up:
        _cli(up, "gateway", "create", "demo")
        src = tmp_path / "fn"
        src.mkdir()
        (src / "index.py").write_text(GOOD % "1.0")
        _cli(up, "push", str(src), "dev/user/me")
        _cli(up, "promote", "dev/user/me", "--to", "staging", "--semver", "1.0.0-rc.1", "--note", "qa")
        _cli(up, "promote", "staging/user/me", "--to", "prod", "--semver", "1.0.0", "--note", "go")
        runtimes = [
            RuntimeServer(postgres_url, "demo", tmp_path / f"rt{i}.log", env="prod").start(timeout=60)
            for i in range(2)
        ]
        try:
            answers: list[tuple[int, int, int]] = []  # (runtime, version, status)
            unversioned: list[tuple[int, int, str]] = []  # a runtime's own answers: (runtime, status, body)
            stop = threading.Event()

            def load(index: int) -> None:
                with httpx.Client(timeout=30) as client:
                    while not stop.is_set():
                        r = client.get(
                            f"{runtimes[index].url}/user/me", headers={"host": "demo.prod.localhost"}
                        )
                        answers.append((index, int(r.headers.get("x-fnstage-version", 0)), r.status_code))
                        if "x-fnstage-version" not in r.headers:
                            unversioned.append((index, r.status_code, r.text))

            threads = [threading.Thread(target=load, args=(i % 2,)) for i in range(4)]
            for thread in threads:
                thread.start()
            try:
                (src / "index.py").write_text(FLAKY % "1.1")
                _cli(up, "push", str(src), "dev/user/me")
                _cli(
                    up, "promote", "dev/user/me", "--to", "staging", "--semver", "1.1.0-rc.1", "--note", "qa"
                )
                _cli(
                    up, "promote", "staging/user/me", "--to", "prod", "--semver", "1.1.0", "--note", "flaky",
                    "--canary", "25%", "--bake", "120s", "--min-requests", "30",
                )  # fmt: skip
                status = _wait_state(up, "rolled_back", timeout=90)
            finally:
                stop.set()
                for thread in threads:
                    thread.join(30)
            assert status["state"] == "rolled_back", status
            bad = status["canary"]["version"]  # type: ignore[index]
            on_canary = {index for index, version, _ in answers if version == bad}
            assert on_canary == {0, 1}, "both runtimes split"
            # a runtime started before its first sync answered 404 "no function is live" (its one cell
            # listened on the port already); its front now waits for the first sync, as `up`'s does
            assert not unversioned, unversioned
            assert {v for _, v, code in answers if code != 200} == {bad}
            store = Store.open(postgres_url, run_migrations=False)
            try:
                with store.read() as tx:
                    canary = sql.latest(tx, "demo", "prod", "user/me")
                    assert canary is not None
                    reporters = {
                        row.runtime_id
                        for row in tx.conn.execute(
                            sql.select(sql.t.canary_counts).where(
                                sql.t.canary_counts.c.canary_id == canary.id
                            )
                        )
                    }
                assert len(reporters) == 2, "each runtime reports its own counts"
            finally:
                store.close()
            kinds = [(e["kind"], e["actor"]) for e in _history(up)]
            assert kinds.count(("rollback", "fnstage")) == 1, kinds
        finally:
            for runtime in runtimes:
                runtime.stop()
