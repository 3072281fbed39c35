"""Least privilege per gateway on PostgreSQL: a runtime's credentials for gateway A read A's published
functions and nothing of gateway B, touch no control-plane table, and still run a runtime end to end."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from sqlalchemy import text

from fnstage.service import Actor, Services
from fnstage.store.credentials import runtime_credentials, runtime_role
from fnstage.store.feed import FeedReader
from fnstage.store.runtime_status import RuntimeIdentity, RuntimeReporter
from fnstage.store.store import Store
from fnstage.testing import RuntimeServer
from support.functions import hello_files

pytestmark = [pytest.mark.postgres, pytest.mark.engine("postgres"), pytest.mark.timeout(120)]


@pytest.fixture
def two_gateways(store: Store, services: Services, actor: Actor) -> Iterator[tuple[str, str]]:
    for gw in ("alpha", "beta-2"):
        services.gateways.create(actor, gw)
        services.deployments.save(actor, gw, "dev/secret", hello_files(f"Hello from {gw}"))
    yield "alpha", "beta-2"
    # roles belong to the whole server, not the test's database: take them away again
    with store.engine.connect() as conn, conn.begin():
        conn.execute(text("SELECT pg_advisory_xact_lock(42)"))  # tests running side by side
        for gw in ("alpha", "beta-2"):
            role = runtime_role(gw)
            if conn.scalar(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}):
                conn.execute(text(f"DROP OWNED BY {role}"))
                conn.execute(text(f"DROP ROLE {role}"))


def test_a_runtime_role_reads_only_its_own_gateway(store: Store, two_gateways: tuple[str, str]) -> None:
    url = runtime_credentials(store.engine, "alpha")
    assert url.startswith("postgresql://fnstage_rt_alpha:")
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
    assert first != second and runtime_role("beta-2") == "fnstage_rt_beta_2"
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
    assert url.startswith("postgresql://fnstage_rt_alpha:") and "fnstage runtime" in result.stderr
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
