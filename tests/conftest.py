"""Shared fixtures: a real store on each engine (SQLite in a temporary folder, PostgreSQL in a fresh
database of its own), the services over it, an actor.

Tests using `store` run once per engine. A test about one engine's own mechanics says so with
`@pytest.mark.engine("sqlite")` and is not collected for the other.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from fnstage.service import Actor, Services
from fnstage.store.engine import sqlite_url
from fnstage.store.store import Store
from fnstage.testing import wheelhouse
from support import pg

# No test resolves or installs dependencies from the internet: uv sees no index, only a folder of small
# wheels built for the session (`fnstage.testing.wheelhouse`: fnpkg 1.0 and 2.0, native-thing, ...),
# and environments go to a folder of this session's.
os.environ["FNSTAGE_NO_INDEX"] = "1"
os.environ.pop("FNSTAGE_INDEX_URL", None)
os.environ.pop("FNSTAGE_EXTRA_INDEX_URLS", None)
os.environ["FNSTAGE_FIND_LINKS"] = str(wheelhouse(Path(tempfile.mkdtemp(prefix="fnstage-test-wheels-"))))
os.environ["FNSTAGE_ENVIRONMENTS_DIR"] = tempfile.mkdtemp(prefix="fnstage-test-environments-")
# Nor does a test read or write the developer's own CLI credentials and contexts; and under pytest-xdist
# (./scripts/test runs several workers, each a session of its own) no two workers share them.
os.environ["XDG_CONFIG_HOME"] = tempfile.mkdtemp(prefix="fnstage-test-config-")
os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="fnstage-test-data-")

ENGINES = ["sqlite", "postgres"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "engine(name): only for that store engine (sqlite or postgres)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Drop the other engine's instance of an engine-specific test (not a skip: it does not apply)."""
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        marker = item.get_closest_marker("engine")
        params = getattr(item, "callspec", None)
        engine = params.params.get("store") if params else None
        if marker and engine and engine != marker.args[0]:
            dropped.append(item)
        else:
            keep.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist's, absent under `-p no:xdist`
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """`--dist loadgroup` (./scripts/test): a module's tests stay on one worker when they share a
    fixture it starts once (tests/support/scheduling.py)."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from support.scheduling import SharedFixtureScheduling  # imports xdist, present only with it

    return SharedFixtureScheduling(config, log)


@pytest.fixture(scope="session")
def postgres() -> Iterator[pg.PgServer]:
    with pg.server() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_template(postgres: pg.PgServer) -> Iterator[str]:
    """A database migrated once per session; every test's database is a clone of it."""
    name = postgres.create_database()
    Store.open(postgres.database_url(name)).close()
    yield name
    postgres.drop_later(name)


@pytest.fixture
def postgres_url(postgres: pg.PgServer, postgres_template: str) -> Iterator[str]:
    """A fresh database of this test's own, already migrated."""
    name = postgres.clone(postgres_template)
    yield postgres.database_url(name)
    postgres.drop_later(name)


@pytest.fixture(params=ENGINES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else sqlite_url(tmp_path)
    store = Store.open(url)
    yield store
    store.close()


@pytest.fixture
def services(store: Store) -> Services:
    return Services.create(store)


@pytest.fixture
def actor(store: Store) -> Actor:
    with store.write() as tx:
        user = tx.create_user("ada", is_admin=True)
    return Actor(user.id, user.name, True)


@pytest.fixture
def gateway(services: Services, actor: Actor) -> str:
    services.gateways.create(actor, "demo")
    return "demo"
