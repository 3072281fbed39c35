"""Shared fixtures: a real SQLite store in a temporary folder, the services over it, an actor."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fnstage.service import Actor, Services
from fnstage.store.engine import sqlite_url
from fnstage.store.store import Store

INDEX = 'from utils import greet\n\n\nasync def main(ctx):\n    return {"message": greet(ctx.query.get("name", "world"))}\n'
UTILS = 'def greet(name):\n    return f"Hello, {name}!"\n'


def hello_files(greeting: str = "Hello") -> dict[str, str]:
    return {"index.py": INDEX, "utils.py": UTILS.replace("Hello", greeting)}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store.open(sqlite_url(tmp_path))
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
