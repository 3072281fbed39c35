"""A runtime host's environment collection (`runtime.environment_collector`): what the store names or a
cell uses stays, everything else goes (after its minimum age)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from fnstage.deps.environments import Environments
from fnstage.runtime.environment_collector import CollectorSettings, EnvironmentCollector
from fnstage.service import Actor, Services
from fnstage.store.engine import sqlite_url
from fnstage.store.store import Store

NAMED, IN_A_CELL, UNUSED = "a" * 64, "b" * 64, "c" * 64


def host_with(root: Path, *hashes: str) -> Environments:
    for hash_ in hashes:
        (root / hash_ / "pkg").mkdir(parents=True)
    return Environments(root)


def installed(root: Path) -> set[str]:
    return {p.name for p in root.iterdir()}


@pytest.fixture
def database(tmp_path: Path) -> str:
    url = sqlite_url(tmp_path)
    store = Store.open(url)
    with store.write() as tx:
        user = tx.create_user("ada", is_admin=True)
    Services.create(store).gateways.create(Actor(user.id, user.name, True), "demo")
    with store.write() as tx:  # the gateway's current lock: what its next save runs with
        tx.put_lock(NAMED, "fnpkg==1.0 --hash=sha256:00\n")
        tx.update_gateway("demo", dependencies=["fnpkg==1.0"], deps_lock_hash=NAMED)
    store.close()
    return url


def test_keeps_what_the_store_names_and_the_cells_use_and_removes_the_rest(
    database: str, tmp_path: Path
) -> None:
    root = tmp_path / "environments"
    collector = EnvironmentCollector(
        database,
        host_with(root, NAMED, IN_A_CELL, UNUSED),
        in_use_here=lambda: {IN_A_CELL},  # a cell runs with it, though the store no longer names it
        settings=CollectorSettings(interval_s=0, min_age_s=0),
    )
    assert collector.collect() == [UNUSED]
    assert installed(root) == {NAMED, IN_A_CELL}


def test_an_environment_younger_than_the_minimum_age_stays(database: str, tmp_path: Path) -> None:
    root = tmp_path / "environments"
    environments = host_with(root, UNUSED)
    collector = EnvironmentCollector(
        database, environments, lambda: set(), CollectorSettings(interval_s=0, min_age_s=60)
    )
    assert collector.collect() == []  # installed just now: maybe for a `deps set` not yet committed
    an_hour_ago = time.time() - 3600
    os.utime(root / UNUSED, (an_hour_ago, an_hour_ago))
    assert collector.collect() == [UNUSED]


def test_collects_on_its_interval_until_stopped(database: str, tmp_path: Path) -> None:
    root = tmp_path / "environments"
    collector = EnvironmentCollector(
        database,
        host_with(root, NAMED, UNUSED),
        lambda: set(),
        CollectorSettings(interval_s=0.05, min_age_s=0),
    )
    collector.start()
    try:
        deadline = time.monotonic() + 5
        while UNUSED in installed(root) and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        collector.stop()
    assert installed(root) == {NAMED}


@pytest.mark.parametrize("given", ["soon", "-1", "nan"])
def test_a_bad_setting_is_refused_naming_it(given: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FNSTAGE_ENVIRONMENTS_COLLECT_S", given)
    with pytest.raises(SystemExit, match="FNSTAGE_ENVIRONMENTS_COLLECT_S must be a number of seconds"):
        CollectorSettings.from_env()
