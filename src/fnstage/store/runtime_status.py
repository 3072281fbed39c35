"""Runtimes report back: which version of each function is live here, or why loading failed.

A runtime registers on start, heartbeats, and writes a row per function when a load succeeds or fails
(off the request path: the watcher's thread). The control plane reads these rows for "live 2/2",
"failed on 1: ..." and `--wait`; a runtime whose heartbeat stopped is shown as silent.
"""

from __future__ import annotations

import functools
import json
import secrets
import socket
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, Executable, bindparam, delete, insert, text, update
from sqlalchemy.dialects import sqlite

from fnstage.store import schema as t
from fnstage.store.engine import (
    _upsert_statement,
    is_postgres,
    make_engine,
    postgres_one_statement,
    upsert_many,
)
from fnstage.store.records import FunctionCounts
from fnstage.store.store import now

_WRITE_COUNTS = update(t.runtime_functions).where(
    t.runtime_functions.c.runtime_id == bindparam("rid"),
    t.runtime_functions.c.gateway_id == bindparam("gw"),
    t.runtime_functions.c.name == bindparam("fn"),
)

# `warmed`: a batch of (gateway, name, version) made live where still pending. SQLite: one statement per
# row, run by the driver's own executemany (SQLAlchemy's per-row processing was most of the cost);
# PostgreSQL: ONE statement per batch, the rows as three arrays.
_WARMED_SQLITE = (
    "UPDATE runtime_functions SET pending = 0"
    " WHERE runtime_id = ? AND gateway_id = ? AND name = ? AND version = ? AND pending"
)
_WARMED_POSTGRES = text(
    "UPDATE runtime_functions AS f SET pending = false"
    " FROM unnest(CAST(:gateways AS text[]), CAST(:names AS text[]), CAST(:versions AS integer[]))"
    " AS w(gateway_id, name, version)"
    " WHERE f.runtime_id = :rid AND f.gateway_id = w.gateway_id AND f.name = w.name"
    " AND f.version = w.version AND f.pending"
)

INSTALLING = "installing dependencies"  # a pending version's note while its lock installs


@dataclass(frozen=True)
class RuntimeIdentity:
    id: str
    gateway: str | None
    host: str
    pid: int
    url: str
    control_key: str
    environment: str | None = None  # a cell's environment; None: every environment

    @classmethod
    def new(
        cls,
        gateway: str | None,
        url: str,
        pid: int,
        control_key: str | None = None,
        environment: str | None = None,
    ) -> RuntimeIdentity:
        """`control_key`: the token that guards the runtime's `/_fnstage/` endpoints, which the
        control plane uses to read its logs; shared by the worker processes behind one port."""
        key = control_key or secrets.token_urlsafe(32)
        return cls(str(uuid.uuid4()), gateway, socket.gethostname(), pid, url, key, environment)


_LIVE_ORDER = (
    "runtime_id",
    "gateway_id",
    "name",
    "version",
    "bundle_hash",
    "loaded_at",
    "pending",
    "error",
)


@functools.cache
def _live_upsert_sqlite() -> str:
    """The SQL of `live_many`'s upsert on SQLite, its parameters in `_LIVE_ORDER` (compiled once)."""
    dialect = sqlite.dialect()
    stmt = _upsert_statement("sqlite", t.runtime_functions, _LIVE_ORDER, ("runtime_id", "gateway_id", "name"))
    compiled = stmt.compile(dialect=dialect, column_keys=list(_LIVE_ORDER))
    if tuple(compiled.positiontup or ()) != _LIVE_ORDER:
        raise RuntimeError(f"unexpected parameter order {compiled.positiontup}")
    return compiled.string


def _sqlite_datetime(engine: Engine) -> Any:
    """How SQLAlchemy writes a DateTime to SQLite (text), applied once per report, not per row."""
    process = t.runtime_functions.c.loaded_at.type.bind_processor(engine.dialect)
    return process if process is not None else (lambda value: value)


class RuntimeReporter:
    """Synchronous; call from the watcher's thread. Reporters of one process may share an `engine`
    (a supervisor reports for each of its cells)."""

    def __init__(self, database_url: str, identity: RuntimeIdentity, engine: Engine | None = None) -> None:
        self._owns_engine = engine is None
        self.engine = engine if engine is not None else make_engine(database_url)
        self.identity = identity

    def register(self) -> None:
        stamp = now()
        i = self.identity
        with self.engine.connect() as conn:
            conn.execution_options(fnstage_write=True)
            with conn.begin():
                conn.execute(
                    insert(t.runtimes).values(
                        id=i.id,
                        gateway_id=i.gateway,
                        host=i.host,
                        pid=i.pid,
                        url=i.url,
                        control_key=i.control_key,
                        environment=i.environment,
                        started_at=stamp,
                        heartbeat_at=stamp,
                        feed_state="connected",
                        feed_since=stamp,
                    )
                )

    def heartbeat(self, feed_state: str = "connected", feed_since: datetime | None = None) -> None:
        values: dict[str, object] = {"heartbeat_at": now(), "feed_state": feed_state}
        if feed_since is not None:
            values["feed_since"] = feed_since
        self._write_runtime(values)

    def sandbox(self, report: dict[str, Any]) -> None:
        """The cell's protections in force and missing, for status."""
        self._write_runtime({"sandbox": json.dumps(report)})

    def live(self, gateway: str, name: str, version: int, bundle_hash: str | None = None) -> None:
        """`version` is live here; an earlier failure of an older or equal version is resolved."""
        values: dict[str, object] = {
            "version": version,
            "bundle_hash": bundle_hash,
            "loaded_at": now(),
            "error": None,
            "pending": False,
        }
        self._write_function(gateway, name, values)

    def live_many(
        self, items: Sequence[tuple[str, str, int] | tuple[str, str, int, str]], *, pending: bool = False
    ) -> None:
        """`live` for a whole load batch in one transaction: a cold start of 10,000 functions is one
        write, not 10,000 (about 1 ms each). Items: (gateway, name, version[, bundle hash]). `pending`:
        the versions are held by their cells, not run yet (a cold start's); `warmed` says when they
        are loaded."""
        stamp = now()
        if self.engine.dialect.name == "sqlite":
            self._live_many_sqlite(items, stamp, pending)
            return
        rows = [
            {
                "runtime_id": self.identity.id,
                "gateway_id": item[0],
                "name": item[1],
                "version": item[2],
                "bundle_hash": item[3] if len(item) > 3 else None,
                "loaded_at": stamp,
                "error": None,
                "pending": pending,
            }
            for item in items
        ]
        stmt = upsert_many(
            self.engine, t.runtime_functions, list(rows[0]), ["runtime_id", "gateway_id", "name"]
        )
        if len(rows) == 1:  # a save's new version: one statement, one round trip on PostgreSQL
            self._write(stmt, rows[0])
            return
        with self.engine.connect() as conn:
            conn.execution_options(fnstage_write=True)
            with conn.begin():
                conn.execute(stmt, rows)

    def _live_many_sqlite(
        self,
        items: Sequence[tuple[str, str, int] | tuple[str, str, int, str]],
        stamp: datetime,
        pending: bool,
    ) -> None:
        """`live_many` on SQLite: the upsert compiled once, its rows handed to the driver as tuples.
        SQLAlchemy's per-row parameter processing was most of a cold start's report of 100,000
        functions: 1.2-1.5 s of the supervisor's CPU, beside its loads, against 0.5 s this way."""
        sql = _live_upsert_sqlite()
        rid, loaded_at = self.identity.id, _sqlite_datetime(self.engine)(stamp)
        rows = [
            (rid, item[0], item[1], item[2], item[3] if len(item) > 3 else None, loaded_at, pending, None)
            for item in items
        ]
        with self.engine.connect() as conn:
            conn.execution_options(fnstage_write=True)
            with conn.begin():
                # the driver's own executemany: even `exec_driver_sql` looks at every row (0.7 s)
                cursor = conn.connection.cursor()
                try:
                    cursor.executemany(sql, rows)
                finally:
                    cursor.close()

    def warmed(self, items: Sequence[tuple[str, str, int]]) -> None:
        """Versions reported pending (`live_many(..., pending=True)`) that their cells have now loaded:
        live, in one write per batch (a cold start's warm-up sends thousands at a time). A row whose
        version changed since, or that failed, is left as it is. Items: (gateway, name, version)."""
        if not items:
            return
        rid = self.identity.id
        with self.engine.connect() as conn:
            conn.execution_options(fnstage_write=True)
            with conn.begin():
                if self.engine.dialect.name == "sqlite":
                    cursor = conn.connection.cursor()
                    try:
                        cursor.executemany(_WARMED_SQLITE, [(rid, g, n, v) for g, n, v in items])
                    finally:
                        cursor.close()
                    return
                gateways, names, versions = (list(column) for column in zip(*items, strict=True))
                conn.execute(
                    _WARMED_POSTGRES, {"rid": rid, "gateways": gateways, "names": names, "versions": versions}
                )

    def installing(self, gateway: str, name: str) -> None:
        """This runtime is installing the dependency lock of `name`'s new version before loading it."""
        self._write_function(gateway, name, {"error": INSTALLING})

    def failed(self, gateway: str, name: str, version: int, error: str) -> None:
        self._write_function(
            gateway, name, {"failed_version": version, "error": error[:2000], "failed_at": now()}
        )

    def counts(self, items: list[FunctionCounts]) -> None:
        """Requests and failures of live versions here (with the heartbeat, only those that changed),
        in one write."""
        rows = [
            {
                "rid": self.identity.id,
                "gw": c.gateway,
                "fn": c.name,
                "counted_version": c.version,
                "requests": c.requests,
                "errors": c.errors,
                "last_error": c.last_error,
            }
            for c in items
        ]
        with self.engine.connect() as conn:
            conn.execution_options(fnstage_write=True)
            with conn.begin():
                conn.execute(_WRITE_COUNTS, rows)

    def removed(self, gateway: str, name: str) -> None:
        self._write(
            delete(t.runtime_functions).where(
                t.runtime_functions.c.runtime_id == self.identity.id,
                t.runtime_functions.c.gateway_id == gateway,
                t.runtime_functions.c.name == name,
            )
        )

    def deregister(self) -> None:
        self._write(delete(t.runtimes).where(t.runtimes.c.id == self.identity.id))

    def close(self) -> None:
        if self._owns_engine:
            self.engine.dispose()

    def _write_runtime(self, values: dict[str, object]) -> None:
        self._write(update(t.runtimes).where(t.runtimes.c.id == self.identity.id).values(**values))

    def _write_function(self, gateway: str, name: str, values: dict[str, object]) -> None:
        row = {"runtime_id": self.identity.id, "gateway_id": gateway, "name": name, **values}
        keys = ["runtime_id", "gateway_id", "name"]
        self._write(upsert_many(self.engine, t.runtime_functions, list(row), keys), row)

    def _write(self, statement: Executable, params: Mapping[str, Any] | None = None) -> None:
        """One statement, its own transaction. PostgreSQL: autocommit, ONE round trip (the pooled
        connection's ping, BEGIN, the statement and COMMIT were four, after every load, on the same
        server as the next save); run again on a fresh connection should the pooled one turn out
        dropped, which is safe: each of these writes sets values computed here (idempotent)."""

        def run(conn: Connection) -> None:
            conn.execute(statement, params)

        if is_postgres(self.engine):
            postgres_one_statement(self.engine, run)
            return
        with self.engine.connect() as conn:
            conn.execution_options(fnstage_write=True)
            with conn.begin():
                run(conn)
