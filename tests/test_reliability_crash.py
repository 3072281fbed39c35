"""Crash consistency: `fnstage up` is killed with SIGKILL at random moments during 200 saves,
promotions and rollbacks, on SQLite and on PostgreSQL. After each restart, every deployment the client
saw acknowledged is there with its history record, nothing is half-written, active == published for
every function, and the runtime converges. Prints the figures RELIABILITY.md quotes (run with -s).
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from fnstage.store.engine import sqlite_url
from fnstage.store.store import Store
from fnstage.testing import UpProcess
from support.consistency import check_consistent

pytestmark = [pytest.mark.e2e, pytest.mark.long]
ATTEMPTS = 200


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "postgres":
        yield request.getfixturevalue("postgres_url")
    else:
        yield sqlite_url(tmp_path / "up" / "data")


@dataclass
class Tally:
    attempted: int = 0
    acknowledged: list[tuple[str, int, int]] = field(default_factory=list)  # (name, version, history id)
    kills: int = 0
    restart_s: list[float] = field(default_factory=list)


def operation(i: int, prod_semvers: list[str]) -> tuple[str, str, dict[str, object]]:
    """The i-th deployment: mostly saves, with promotions, prod releases and rollbacks among them."""
    if i % 13 == 12:
        return (
            "POST",
            "/release",
            {
                "base": "user/me",
                "source_env": "staging",
                "target": "prod",
                "semver": f"1.{i}.0",
                "note": f"release {i}",
            },
        )
    if i % 7 == 6:
        return (
            "POST",
            "/promote",
            {"name": "dev/user/me", "target": "staging", "semver": f"1.{i}.0-rc.1", "note": f"qa {i}"},
        )
    if i % 17 == 16 and prod_semvers:
        return (
            "POST",
            "/rollback",
            {
                "name": "prod/user/me",
                "to_semver": prod_semvers[0],
                "semver": f"1.{i}.1",
                "note": f"rollback {i}",
            },
        )
    files = {"index.py": f"def main(ctx):\n    return {{'save': {i}}}\n"}
    return "PUT", "/functions/dev/user/me", {"files": files, "changelog": f"save {i}"}


def test_sigkill_during_deployments_loses_nothing_acknowledged(database_url: str, tmp_path: Path) -> None:
    rng = random.Random(7)
    up = UpProcess(tmp_path / "up", extra_env={"FNSTAGE_DATABASE_URL": database_url}).start()
    tally = Tally()
    prod_semvers: list[str] = []
    try:
        with up.client() as client:
            client.post("/api/v1/gateways", json={"id": "demo"}).raise_for_status()
            # Keep every entry, so "found after recovery" can be checked for every acknowledgement.
            client.patch("/api/v1/gateways/demo", json={"history_limit": 1000}).raise_for_status()
        for i in range(ATTEMPTS):
            method, path, body = operation(i, prod_semvers)
            if rng.random() < 0.08:  # kill it somewhere inside this request
                assert up.process is not None
                timer = threading.Timer(rng.uniform(0.0, 0.03), os.kill, (up.process.pid, signal.SIGKILL))
                timer.start()
            tally.attempted += 1
            try:
                with up.client() as client:
                    r = client.request(method, f"/api/v1/gateways/demo{path}", json=body, timeout=10)
                if r.status_code < 300:
                    deployed = r.json()
                    fn, entry = deployed["function"], deployed["history"]
                    tally.acknowledged.append((fn["name"], fn["version"], entry["id"]))
                    if fn["env"] == "prod":
                        prod_semvers.append(fn["semver"])
                else:
                    # A refusal is fine (e.g. a promotion whose source never committed); never a 5xx.
                    assert r.status_code < 500, r.text
            except httpx.TransportError:
                pass  # not acknowledged: it may or may not have committed, but never half-way
            assert up.process is not None
            if up.process.poll() is not None or _dead(up):
                tally.kills += 1
                up.stop()
                started = time.monotonic()
                up.start()
                tally.restart_s.append(time.monotonic() - started)

        assert tally.kills >= 8, "the test should have killed the server many times"
        with up.client() as client:
            for name, version, history_id in tally.acknowledged:
                entry = client.get(f"/api/v1/gateways/demo/history-entries/{history_id}").json()
                assert (entry.get("name"), entry.get("version")) == (name, version), (name, version, entry)
            found = sum(
                1
                for name, version, history_id in tally.acknowledged
                if client.get(f"/api/v1/gateways/demo/history-entries/{history_id}").status_code == 200
            )
            for env in ("dev", "staging", "prod"):
                current = client.get(f"/api/v1/gateways/demo/functions/{env}/user/me").json()
                _wait_live(client, env, current["version"])
        store = Store.open(database_url, run_migrations=False)
        try:
            check_consistent(store)  # active == published, exact blob refs, a gap-free change feed
        finally:
            store.close()
        engine = "postgres" if database_url.startswith("postgresql") else "sqlite"
        restarts = sorted(tally.restart_s)
        print(
            f"\nRELIABILITY crash/{engine}: attempted {tally.attempted}, acknowledged {len(tally.acknowledged)}, "
            f"found after recovery {found}, SIGKILLs {tally.kills}, "
            f"restart to ready p50 {restarts[len(restarts) // 2]:.2f} s"
        )
        assert found == len(tally.acknowledged)
    finally:
        up.stop()


def _dead(up: UpProcess) -> bool:
    try:
        return httpx.get(f"{up.url}/api/v1/health", timeout=2).status_code != 200
    except httpx.TransportError:
        return True


def _wait_live(client: httpx.Client, env: str, version: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = client.get(f"/api/v1/gateways/demo/rollout/{env}/user/me", params={"version": version}).json()
        if r.get("done") and not r.get("failed"):
            return
        time.sleep(0.05)
    raise AssertionError(f"{env}/user/me v{version} not live after {timeout} s: {r}")
