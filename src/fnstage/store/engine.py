"""Engine specifics, kept in one place: URLs, pools, isolation, write locking, upserts, migrations
and the change notification.

SQLite: WAL mode so runtimes read while the control plane writes; write transactions start with
`BEGIN IMMEDIATE` so two writers queue on the lock instead of failing on upgrade with SQLITE_BUSY.

PostgreSQL (psycopg 3): writes run in READ COMMITTED and take the gateway's row lock first
(`Tx.lock_gateway`), so deployments of one gateway queue on that lock and every later statement sees
what the previous deployment committed; no serialization failure can occur at that level, and since
every deploying transaction locks the one gateway row before any other row, none can deadlock either.
Reads run in REPEATABLE READ: several statements see one snapshot, as a SQLite read transaction does.
"""

from __future__ import annotations

import functools
import json
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Insert, Table, create_engine, event, func, select
from sqlalchemy.dialects import postgresql, sqlite

from fnstage.store.records import FeedEvent

MIGRATIONS = Path(__file__).parent / "migrations"
SQLITE_FILENAME = "fnstage.db"
FEED_CHANNEL = "fnstage_feed"  # LISTEN/NOTIFY channel of publish events (PostgreSQL)
MIGRATION_LOCK = 0x666E7374  # pg_advisory_xact_lock key held while migrating ("fnst")

# The control plane's pool (SQLAlchemy's QueuePool over psycopg 3): a handful of kept connections
# for the API's worker threads plus a bounded overflow for bursts, so one control-plane process
# holds at most 15 of the server's connections (100 by default). Pre-ping replaces a connection the
# server dropped (a restart) before it is used; recycling after 30 minutes lets a failover or a
# pooler rebalance; TCP keepalives notice a dead host within about a minute instead of hanging.
POSTGRES_POOL: dict[str, Any] = {
    "pool_size": 5,
    "max_overflow": 10,
    "pool_timeout": 30,
    "pool_pre_ping": True,
    "pool_recycle": 1800,
}
POSTGRES_CONNECT_ARGS: dict[str, Any] = {
    "connect_timeout": 10,
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{(data_dir / SQLITE_FILENAME).resolve()}"


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


def driver_url(url: str) -> str:
    """`postgresql://` and `postgres://` mean psycopg 3 (SQLAlchemy would pick psycopg2)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def make_engine(url: str, **kwargs: Any) -> Engine:
    url = driver_url(url)
    if url.startswith("sqlite"):
        # Pooled, not opened per transaction: closing the last connection to a WAL database
        # checkpoints it, which cost about 5 ms on every save when connections were not kept.
        engine = create_engine(
            url, connect_args={"timeout": 30, "check_same_thread": False}, pool_size=8, **kwargs
        )
        _configure_sqlite(engine)
        return engine
    return create_engine(url, connect_args=POSTGRES_CONNECT_ARGS, **{**POSTGRES_POOL, **kwargs})


def write_options(engine: Engine) -> dict[str, Any]:
    """Execution options of a write transaction: SQLite takes the write lock at BEGIN; PostgreSQL
    runs READ COMMITTED whatever the server's default (the gateway lock relies on it)."""
    if is_postgres(engine):
        return {"fnstage_write": True, "isolation_level": "READ COMMITTED"}
    return {"fnstage_write": True}


def read_options(engine: Engine) -> dict[str, Any]:
    """Execution options of a read transaction: one snapshot for all its statements. SQLite's
    deferred BEGIN gives that already; PostgreSQL's READ COMMITTED would not."""
    if is_postgres(engine):
        return {"isolation_level": "REPEATABLE READ"}
    return {}


def _enter_wal(cursor: Any, attempts: int = 200) -> None:
    """Switch to WAL mode. Only the first opening of a new database changes anything, and that change
    needs an exclusive lock which SQLite may refuse at once ("database is locked") instead of waiting,
    when several processes open the new file together: retry it for up to about 10 s."""
    for attempt in range(attempts):
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.05)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout=30000")
        _enter_wal(cursor)
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        write = conn.get_execution_options().get("fnstage_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def upsert(engine: Engine, table: Table, values: dict[str, Any], keys: list[str]) -> Insert:
    """INSERT ... ON CONFLICT (keys) DO UPDATE: replaces a row in place, never delete-then-insert."""
    if engine.dialect.name == "postgresql":
        pg = postgresql.insert(table).values(**values)
        return pg.on_conflict_do_update(
            index_elements=keys, set_={k: pg.excluded[k] for k in values if k not in keys}
        )
    lite = sqlite.insert(table).values(**values)
    return lite.on_conflict_do_update(
        index_elements=keys, set_={k: lite.excluded[k] for k in values if k not in keys}
    )


def upsert_many(engine: Engine, table: Table, columns: Iterable[str], keys: Iterable[str]) -> Insert:
    """The same upsert for many rows: execute it with a list of row dicts as parameters. Built once per
    dialect, table and columns, so SQLAlchemy reuses its compiled form (see `_upsert_statement`)."""
    return _upsert_statement(engine.dialect.name, table, tuple(columns), tuple(keys))


@functools.cache
def _upsert_statement(dialect: str, table: Table, columns: tuple[str, ...], keys: tuple[str, ...]) -> Insert:
    stmt = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
    return stmt.on_conflict_do_update(
        index_elements=list(keys), set_={c: stmt.excluded[c] for c in columns if c not in keys}
    )


def feed_payload(event: FeedEvent) -> str:
    """The NOTIFY payload: which log entry, never the code. Bounded by the column sizes to a few hundred
    bytes (under 1,500 even if every character of the names needed a \\u escape), far below 8,000."""
    return json.dumps(
        {
            "gateway": event.gateway,
            "seq": event.seq,
            "name": event.name,
            "version": event.version,
            "action": event.action,
        },
        separators=(",", ":"),
    )


def notify_feed(conn: Connection, event: FeedEvent) -> None:
    """PostgreSQL: tell listening runtimes about a publish log entry, inside the publishing
    transaction, so it is delivered at commit and never for a rollback; runtimes then read the code
    from `published`. SQLite: nothing to do, runtimes watch the database file."""
    if conn.dialect.name == "postgresql":
        conn.execute(select(func.pg_notify(FEED_CHANNEL, feed_payload(event))))


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest migration (run on every start; a no-op when current).

    Processes starting together (a server and its runtimes) migrate one at a time: SQLite under the
    write lock taken at BEGIN, PostgreSQL under an advisory lock held until commit."""
    from alembic import command  # imported here: runtimes never migrate, and alembic is slow to import
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.connect() as conn:
        conn.execution_options(**write_options(engine))
        with conn.begin():
            if is_postgres(engine):
                conn.execute(select(func.pg_advisory_xact_lock(MIGRATION_LOCK)))
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
