"""PostgreSQL's write path in round trips: every statement of a save is a round trip to another
process, so the store spends as few as it can (BENCHMARKS.md, "PostgreSQL at SQLite's speed").

- No ping per checkout: a pooled connection the server closed is noticed from its socket and replaced.
- The caller's credentials are one statement, outside BEGIN/COMMIT.
- A save is a fixed, small number of statements whatever the gateway holds (10; it was 14 and a
  ping); it reads its target in one statement after the lock, and publishes in one.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event, func, select

from fnstage.service import Actor, Services
from fnstage.service.identity import create_token, identify
from fnstage.store.store import Store
from support import pg
from support.functions import hello_files

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_store(postgres_url: str) -> Iterator[Store]:
    store = Store.open(postgres_url, run_migrations=False)
    yield store
    store.close()


@pytest.fixture
def admin(pg_store: Store) -> Actor:
    with pg_store.write() as tx:
        user = tx.create_user("ada", is_admin=True)
    return Actor(user.id, user.name, True)


def statements_of(store: Store) -> list[str]:
    """Record every statement the store's engine sends from now on (one round trip each)."""
    sent: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        sent.append(" ".join(statement.split()[:3]))

    event.listen(store.engine, "before_cursor_execute", record)
    return sent


def test_a_pooled_connection_the_server_closed_is_replaced(postgres: pg.PgServer, pg_store: Store) -> None:
    """A terminated backend is never used again. (Noticing it from its socket instead of a ping per
    checkout raced with the termination under load, and was taken back: issue 17 keeps the ping.)"""
    with pg_store.read_one() as tx:
        first = tx.conn.scalar(select(func.pg_backend_pid()))
    with postgres.admin() as admin:  # what a server restart or an idle timeout does to it
        admin.execute("select pg_terminate_backend(%s)", (first,))
        deadline = time.monotonic() + 10
        while admin.execute("select 1 from pg_stat_activity where pid = %s", (first,)).fetchone():
            assert time.monotonic() < deadline, "the backend did not end"
            time.sleep(0.02)
    with pg_store.read() as tx:  # the same pooled connection would fail here; a fresh one is used
        second = tx.conn.scalar(select(func.pg_backend_pid()))
        assert tx.count_users() == 0
    assert second != first


def test_the_callers_credentials_are_one_statement_outside_a_transaction(
    pg_store: Store, admin: Actor
) -> None:
    token = create_token(pg_store, admin, "ci")
    Services.create(pg_store).gateways.create(admin, "demo")
    sent = statements_of(pg_store)
    with pg_store.read_one() as tx:
        actor, record, role = identify(tx, token, "demo")
        # psycopg's connection, behind SQLAlchemy's untyped DBAPI wrapper
        assert tx.conn.connection.dbapi_connection.autocommit  # type: ignore[union-attr]
    assert (actor, record.name, role) == (admin, "ci", "owner")
    assert len(sent) == 1, sent


def test_a_save_is_ten_statements_and_its_publish_one(pg_store: Store, admin: Actor) -> None:
    services = Services.create(pg_store)
    services.gateways.create(admin, "demo")
    for n in range(3):  # an existing function with history; the gateway's pins known
        services.deployments.save(admin, "demo", "dev/user/me", hello_files(f"Hello {n}"))
    sent = statements_of(pg_store)
    services.deployments.save(admin, "demo", "dev/user/me", hello_files("Hi"))
    # lock the gateway, then read it with the function and its latest version, known blobs, new
    # blobs, history, the function, pruned history, references, unreferenced blobs, and publish (log,
    # row, NOTIFY)
    assert len(sent) == 10, sent
    assert sent[0].startswith("SELECT gateways.id") and sent[1] == "SELECT gateways.id AS"
    assert sent[-1].startswith("WITH next_seq AS")
