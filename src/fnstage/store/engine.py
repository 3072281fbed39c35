"""Engine specifics, kept in one place: URLs, SQLite pragmas and write locking, upserts, migrations.

SQLite: WAL mode so runtimes read while the control plane writes; write transactions start with
`BEGIN IMMEDIATE` so two writers queue on the lock instead of failing on upgrade with SQLITE_BUSY.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, Insert, Table, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite

MIGRATIONS = Path(__file__).parent / "migrations"
SQLITE_FILENAME = "fnstage.db"


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{(data_dir / SQLITE_FILENAME).resolve()}"


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def make_engine(url: str, **kwargs: Any) -> Engine:
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    if url.startswith("sqlite"):
        # Pooled, not opened per transaction: closing the last connection to a WAL database
        # checkpoints it, which cost about 5 ms on every save when connections were not kept.
        engine = create_engine(
            url, connect_args={"timeout": 30, "check_same_thread": False}, pool_size=8, **kwargs
        )
        _configure_sqlite(engine)
        return engine
    return create_engine(url, pool_pre_ping=True, **kwargs)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
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


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest migration (run on every start; a no-op when current)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
