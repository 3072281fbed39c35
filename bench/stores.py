"""Stores for benchmarks: the admin user the service-level benchmarks act as, and bulk copies of a
function for stores of 100,000 functions (saving them one by one takes a quarter of an hour)."""

from __future__ import annotations

from sqlalchemy import Connection, text

from fnstage.service import Actor
from fnstage.store import schema as t
from fnstage.store.store import Store


def bench_admin(store: Store) -> Actor:
    """Create the user `bench`, an admin, in a new store, and return it as an actor."""
    with store.write() as tx:
        user = tx.create_user("bench", is_admin=True)
    return Actor(user.id, user.name, True)


def bulk_copies(conn: Connection, gateway: str, count: int) -> None:
    """`count` copies of the gateway's one function, as if each had been created and saved once: its
    row, two history entries (the function's own ids far from the real ones), its published row and
    a log entry. A recursive CTE numbers them, on either engine."""
    numbers = "WITH RECURSIVE n(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM n WHERE g < :count) "
    name = "'bulk/f' || CAST(g AS VARCHAR(12))"

    def copy(table: str, columns: list[str], replace: dict[str, str], where: str) -> None:
        chosen = ", ".join(replace.get(c, f"{table}.{c}") for c in columns)
        into = f"INSERT INTO {table} ({', '.join(columns)})"
        statement = f"{numbers}{into} SELECT {chosen} FROM {table}, n WHERE {where}"
        conn.execute(text(statement), {"count": count, "gateway": gateway})

    history_columns = [c.name for c in t.history.c if c.name != "id"]
    for _ in range(2):  # a create and a save, as far as the indexes can tell
        copy(
            "history",
            history_columns,
            {"base": name, "function_id": "1000000 + g"},
            "history.gateway_id = :gateway AND history.id = (SELECT min(id) FROM history WHERE "
            "gateway_id = :gateway)",
        )
    copy(
        "functions",
        [c.name for c in t.functions.c if c.name != "id"],
        {"base": name, "history_id": "2000000 + g"},
        "functions.gateway_id = :gateway",
    )
    seq = "(SELECT publish_seq FROM gateways WHERE id = :gateway) + g"
    copy(
        "publish_log",
        [c.name for c in t.publish_log.c],
        {"name": f"'dev/' || {name}", "seq": seq},
        "publish_log.gateway_id = :gateway AND publish_log.seq = 1",
    )
    copy(
        "published",
        [c.name for c in t.published.c],
        {"name": f"'dev/' || {name}", "seq": seq},
        "published.gateway_id = :gateway",
    )
    conn.execute(
        text("UPDATE gateways SET publish_seq = publish_seq + :count WHERE id = :gateway"),
        {"count": count, "gateway": gateway},
    )
