"""No step of a save grows with the number of functions in the gateway: in a gateway of 3,000 functions,
every statement a save runs reads only the rows it needs (EXPLAIN ANALYZE, rolled back: no scan, sequential or
through an index, that filters out rows by the hundred). bench/pg_bench.py scale measures the times:
10 vs 10,000 functions."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event

from fnstage.service import Actor, Services
from fnstage.store.store import Store
from support.functions import hello_files

pytestmark = [pytest.mark.postgres, pytest.mark.engine("postgres"), pytest.mark.timeout(120)]


def test_every_statement_of_a_save_uses_an_index(
    store: Store, services: Services, actor: Actor, gateway: str
) -> None:
    services.gateways.update(gateway, history_limit=2)
    for i in range(4):  # past the history limit: the save prunes
        services.deployments.save(actor, gateway, "dev/user/me", hello_files(f"Hello {i}"))
    with store.write() as tx:  # 3,000 more functions in the gateway, each some history entry's own
        tx.conn.exec_driver_sql(
            "INSERT INTO functions (gateway_id, env, base, entrypoint, files, bundle_hash, compiled,"
            " version, semver, methods, description, tags, config, timeout_s, history_id, created_at,"
            " created_by, updated_at, updated_by)"
            " SELECT gateway_id, env, 'bulk/f' || g, entrypoint, files, bundle_hash, compiled, version,"
            " semver, methods, description, tags, config, timeout_s, 1000000 + g, created_at, created_by,"
            " updated_at, updated_by FROM functions, generate_series(1, 3000) AS g"
        )
        tx.conn.exec_driver_sql("ANALYZE")
    statements: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, *rest: Any) -> None:
        # WITH: on PostgreSQL the history prune and the reference changes it leads to are one statement
        if statement.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE", "WITH")):
            statements.append((statement, parameters))

    event.listen(store.engine, "before_cursor_execute", capture)
    try:
        services.deployments.save(actor, gateway, "dev/user/me", hello_files("Yo"))
    finally:
        event.remove(store.engine, "before_cursor_execute", capture)
    assert any("DELETE FROM history" in s for s, _ in statements)

    scans = []
    with store.engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        assert raw is not None
        with raw.cursor() as cursor:
            for statement, parameters in statements:
                if "pg_" in statement:  # pg_notify, pg_advisory_xact_lock: no table
                    continue
                if isinstance(parameters, list | tuple):  # executemany: one row's parameters do
                    parameters = parameters[0]
                cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + statement, parameters)
                plan = cursor.fetchone()[0][0]["Plan"]
                if read_too_much(plan):
                    scans.append(f"{' '.join(statement.split())[:160]}\n{plan}")
        raw.rollback()
    assert scans == [], "\n\n".join(scans)


def read_too_much(node: dict[str, Any]) -> bool:
    wasted = node.get("Rows Removed by Filter", 0) + node.get("Rows Removed by Index Recheck", 0)
    if wasted > 50:  # a scan of the gateway's rows, sequential or through an index prefix
        return True
    return any(read_too_much(child) for child in node.get("Plans", []))
