"""Least privilege per gateway on PostgreSQL: a runtime's credentials for gateway A read A's published
functions and nothing of gateway B, touch no control-plane table, and still run a runtime end to end."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from sqlalchemy import text

from fnstage.service import Actor, Services
from fnstage.store.credentials import legacy_runtime_role, runtime_credentials, runtime_role, runtime_role_of
from fnstage.store.feed import FeedReader
from fnstage.store.runtime_status import RuntimeIdentity, RuntimeReporter
from fnstage.store.store import Store
from fnstage.testing import RuntimeServer
from support.functions import hello_files
from support.pg import PgServer

pytestmark = [pytest.mark.postgres, pytest.mark.engine("postgres"), pytest.mark.timeout(120)]


@pytest.fixture
def two_gateways(store: Store, services: Services, actor: Actor) -> Iterator[tuple[str, str]]:
    for gw in ("alpha", "beta-2"):
        services.gateways.create(actor, gw)
        services.deployments.save(actor, gw, "dev/secret", hello_files(f"Hello from {gw}"))
    yield "alpha", "beta-2"
    # roles belong to the whole server, not the test's database (their names carry it): take them away
    with store.engine.connect() as conn, conn.begin():
        for gw in ("alpha", "beta-2"):
            role = runtime_role_of(conn, gw)
            if conn.scalar(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}):
                conn.execute(text(f"DROP OWNED BY {role}"))
                conn.execute(text(f"DROP ROLE {role}"))


def test_a_runtime_role_reads_only_its_own_gateway(store: Store, two_gateways: tuple[str, str]) -> None:
    url = runtime_credentials(store.engine, "alpha")
    assert url.startswith("postgresql://fnstage_rt_alpha_")
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("select gateway_id, name, source from published").fetchall()
        assert [(g, n) for g, n, _ in rows] == [("alpha", "dev/secret")]
        assert "beta-2" not in str(rows[0][2])
        assert conn.execute("select * from published where gateway_id = 'beta-2'").fetchall() == []
        assert conn.execute("select count(*) from publish_log where gateway_id = 'beta-2'").fetchone() == (0,)
        assert conn.execute("select id, publish_seq from gateways").fetchall() == [("alpha", 1)]
        for table in ("functions", "history", "blobs", "users", "tokens", "members"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f"select * from {table}")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("select dependencies from gateways")  # only id and publish_seq
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("update published set version = 99")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):  # row-level security: not its gateway
            conn.execute(
                "insert into runtimes values ('x', 'beta-2', 'h', 1, 'u', 'k', now(), now(), 'connected', now())"
            )

    # what the runtime itself reads and writes, through the store's own classes
    reader = FeedReader(url)
    try:
        functions, positions = reader.snapshot(None)
        assert [(f.gateway, f.name) for f in functions] == [("alpha", "dev/secret")]
        assert positions == {"alpha": 1}
        assert reader.snapshot("beta-2") == ([], {})
        assert reader.fetch("beta-2", ["dev/secret"]) == []
    finally:
        reader.close()
    reporter = RuntimeReporter(url, RuntimeIdentity.new("alpha", "http://x", 1))
    try:
        reporter.register()
        reporter.live("alpha", "dev/secret", 1)
        reporter.heartbeat("disconnected")
        with pytest.raises(Exception, match="row-level security"):
            reporter.live("beta-2", "dev/secret", 1)  # may not claim another gateway's functions
        reporter.deregister()
    finally:
        reporter.close()


def test_rotating_gives_a_new_password_and_the_old_one_stops_working(
    store: Store, two_gateways: tuple[str, str]
) -> None:
    first = runtime_credentials(store.engine, "beta-2")
    second = runtime_credentials(store.engine, "beta-2")
    assert first != second and runtime_role("beta-2", "db", "public") == "fnstage_rt_beta_2_8a027f0a"
    with psycopg.connect(second) as conn:
        assert conn.execute("select count(*) from published").fetchone() == (1,)
    local_trust = store.engine.url.host in ("127.0.0.1", "localhost")
    if not local_trust:  # a trust-auth test cluster accepts any password; real servers check it
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(first).close()


@pytest.mark.e2e
def test_a_runtime_with_its_gateways_credentials_serves_and_reports(
    store: Store, services: Services, actor: Actor, two_gateways: tuple[str, str], tmp_path: Path
) -> None:
    admin_url = store.engine.url.render_as_string(hide_password=False)
    result = subprocess.run(
        [sys.executable, "-m", "fnstage", "gateway", "credentials", "alpha", "--database-url", admin_url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    url = result.stdout.strip()
    assert url.startswith("postgresql://fnstage_rt_alpha_") and "fnstage runtime" in result.stderr
    with RuntimeServer(url, "alpha", tmp_path / "runtime.log") as runtime:
        r = httpx.get(f"{runtime.url}/dev/secret", params={"name": "Ada"}, timeout=5)
        assert r.json() == {"message": "Hello from alpha, Ada!"}, runtime.log()
        saved = services.deployments.save(actor, "alpha", "dev/secret", hello_files("Hi"))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            rollout = services.queries.rollout("alpha", "dev/secret", version=saved.function.version)
            if rollout.done:
                break
            time.sleep(0.02)
        assert rollout.summary == "live 1/1", runtime.log()
        assert httpx.get(f"{runtime.url}/dev/secret").json() == {"message": "Hi, world!"}
        assert "permission denied" not in runtime.log() and "row-level" not in runtime.log()


def _drop_role(engine_url: str, role: str) -> None:
    with psycopg.connect(engine_url.replace("+psycopg", ""), autocommit=True) as conn, conn.transaction():
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE {role}")


def test_two_databases_on_one_server_get_their_own_role_for_the_same_gateway(
    postgres: PgServer, postgres_template: str, store: Store, actor: Actor, two_gateways: tuple[str, str]
) -> None:
    """Roles belong to the server: issuing (or taking away) gateway alpha's login in another fnstage
    database must not touch this database's alpha login."""
    here = runtime_credentials(store.engine, "alpha")
    other_database = postgres.clone(postgres_template)
    other_store = Store.open(postgres.database_url(other_database))
    try:
        Services.create(other_store).gateways.create(actor, "alpha")
        there = runtime_credentials(other_store.engine, "alpha")
        with other_store.engine.connect() as conn:
            other_role = runtime_role_of(conn, "alpha")
        with store.engine.connect() as conn:
            assert runtime_role_of(conn, "alpha") != other_role
        assert here.split(":")[1] != there.split(":")[1]  # two users
        _drop_role(other_store.engine.url.render_as_string(hide_password=False), other_role)
    finally:
        other_store.close()
        postgres.drop_later(other_database)
    with psycopg.connect(here, autocommit=True) as conn:  # still reads its own database
        assert conn.execute("select name from published").fetchall() == [("dev/secret",)]


def _unique_gateway(services: Services, actor: Actor) -> str:
    """An unscoped role is server-wide: a name of this test's own keeps tests running side by side apart."""
    gateway = f"legacy-{uuid.uuid4().hex[:10]}"
    services.gateways.create(actor, gateway)
    return gateway


def test_rotating_retires_the_unscoped_role_of_earlier_releases(
    store: Store, services: Services, actor: Actor
) -> None:
    """Before roles carried their database, a gateway's login was `fnstage_rt_<gw>`: rotating takes its
    grants and policies here away (its old URL stops reading), and drops it when nothing else uses it."""
    from fnstage.store import credentials

    gateway = _unique_gateway(services, actor)
    legacy = legacy_runtime_role(gateway)
    with store.engine.connect() as conn, conn.begin():
        conn.execute(text(f"CREATE ROLE {legacy} LOGIN NOINHERIT PASSWORD 'old'"))
        credentials._grant(conn, legacy, gateway)  # what an earlier release granted it
    try:
        new_url = runtime_credentials(store.engine, gateway)
        with store.engine.connect() as conn:
            assert conn.scalar(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": legacy}) is None
            assert (
                conn.scalar(text("SELECT count(*) FROM pg_policies WHERE policyname = :r"), {"r": legacy})
                == 0
            )
    finally:
        _drop_role(store.engine.url.render_as_string(hide_password=False), legacy)
        _drop_role(
            store.engine.url.render_as_string(hide_password=False), new_url.split("//")[1].split(":")[0]
        )


def test_rotating_keeps_an_unscoped_role_another_database_still_grants(
    postgres: PgServer, postgres_template: str, store: Store, services: Services, actor: Actor
) -> None:
    """The legacy role may serve another installation on the same server: it loses this database,
    keeps that one."""
    from fnstage.store import credentials

    gateway = _unique_gateway(services, actor)
    legacy = legacy_runtime_role(gateway)
    other_database = postgres.clone(postgres_template)
    other_store = Store.open(postgres.database_url(other_database))
    new_url = ""
    other_url = other_store.engine.url.set(username=legacy, password="old").render_as_string(
        hide_password=False
    )
    try:
        Services.create(other_store).gateways.create(actor, gateway)
        for engine in (store.engine, other_store.engine):
            with engine.connect() as conn, conn.begin():
                conn.execute(text(f"SELECT pg_advisory_xact_lock({credentials.CREDENTIALS_LOCK})"))
                if not conn.scalar(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": legacy}):
                    conn.execute(text(f"CREATE ROLE {legacy} LOGIN NOINHERIT PASSWORD 'old'"))
                credentials._grant(conn, legacy, gateway)
        new_url = runtime_credentials(store.engine, gateway)
        with store.engine.connect() as conn:
            assert conn.scalar(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": legacy}) == 1
            assert (
                conn.scalar(text("SELECT count(*) FROM pg_policies WHERE policyname = :r"), {"r": legacy})
                == 0
            )
            assert not conn.scalar(
                text("SELECT has_table_privilege(:r, 'published', 'SELECT')"), {"r": legacy}
            )
        with psycopg.connect(other_url.replace("+psycopg", ""), autocommit=True) as conn:
            assert conn.execute("select count(*) from published").fetchone() == (0,)  # still granted there
    finally:
        other_admin = other_store.engine.url.render_as_string(hide_password=False)
        other_store.close()
        here_admin = store.engine.url.render_as_string(hide_password=False)
        _drop_role_everywhere(other_admin, here_admin, legacy)
        if new_url:
            _drop_role(here_admin, new_url.split("//")[1].split(":")[0])
        postgres.drop_later(other_database)


def _drop_role_everywhere(first_url: str, second_url: str, role: str) -> None:
    """DROP OWNED reaches one database: run it in each before the role can go."""
    for url in (first_url, second_url):
        with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
                conn.execute(f"DROP OWNED BY {role}")
    _drop_role(second_url, role)
