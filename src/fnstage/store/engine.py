"""Engine specifics, kept in one place: URLs, pools, isolation, write locking, upserts, migrations
and the change notification.

SQLite: WAL mode so runtimes read while the control plane writes; write transactions start with
`BEGIN IMMEDIATE` so two writers queue on the lock instead of failing on upgrade with SQLITE_BUSY.

PostgreSQL (psycopg 3): writes run in READ COMMITTED and take the gateway's row lock first
(`Tx.lock_gateway`), so deployments of one gateway queue on that lock and every later statement sees
what the previous deployment committed; no serialization failure can occur at that level, and since
every deploying transaction locks the one gateway row before any other row, none can deadlock either.
Reads run in REPEATABLE READ: several statements see one snapshot, as a SQLite read transaction does.
A `Store` transaction on PostgreSQL runs in psycopg's pipeline mode (`postgres_transaction`): BEGIN
goes out with the first statement, and a statement marked `NO_WAIT` with the next one that waits;
those of the save path skip SQLAlchemy's execution (`send_no_wait`: compiled once, sent by psycopg).
"""

from __future__ import annotations

import contextvars
import functools
import json
import os
import sqlite3
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import (
    ClauseElement,
    Connection,
    Engine,
    Executable,
    Insert,
    Table,
    create_engine,
    event,
    exc,
    func,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite

from fnstage.store.records import FeedEvent

T = TypeVar("T")
MIGRATIONS = Path(__file__).parent / "migrations"
SQLITE_FILENAME = "fnstage.db"
FEED_CHANNEL = "fnstage_feed"  # LISTEN/NOTIFY channel of publish events (PostgreSQL)
MIGRATION_LOCK = 0x666E7374  # pg_advisory_xact_lock key held while migrating ("fnst")

# The control plane's pool (SQLAlchemy's QueuePool over psycopg 3): a handful of kept connections
# for the API's worker threads plus a bounded overflow for bursts, so one control-plane process
# holds at most 15 of the server's connections (100 by default). A checkout pings the server first
# (`_ping_on_checkout`) and replaces a connection the server dropped (a restart), except for a
# `Store` transaction, whose first round trip (BEGIN and a SELECT 1 together) is that check and is
# retried on a fresh connection (`postgres_transaction`). Recycling after 30 minutes lets a failover
# or a pooler rebalance; TCP keepalives notice a dead host within about a minute instead of hanging.
POSTGRES_POOL: dict[str, Any] = {
    "pool_size": 5,
    "max_overflow": 10,
    "pool_timeout": 30,
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
    engine = create_engine(url, connect_args=POSTGRES_CONNECT_ARGS, **{**POSTGRES_POOL, **kwargs})
    _configure_postgres(engine)
    return engine


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


# PostgreSQL: pipelined transactions and the ping -------------------------------------------------------
NO_WAIT: dict[str, Any] = {"fnstage_no_wait": True}
"""Execution options of a statement whose answer nobody reads (no rows, no row count): on PostgreSQL
it goes out with the next statement that waits for its answer (or with COMMIT) instead of costing a
round trip of its own. An error it raises still fails the transaction, at that next statement."""

_PING = text("SELECT 1")
_SKIP_PING: contextvars.ContextVar[bool] = contextvars.ContextVar("fnstage_skip_ping", default=False)


def _connect_unpinged(engine: Engine) -> Connection:
    """Check out without the ping: the caller's first round trip checks the connection instead, and
    runs again on a fresh one if it fails."""
    token = _SKIP_PING.set(True)
    try:
        return engine.connect()
    finally:
        _SKIP_PING.reset(token)


def _configure_postgres(engine: Engine) -> None:
    dialect = engine.dialect
    # SQLAlchemy has no event in place of the DBAPI commit (as `do_execute` is for execute)
    dialect.do_commit = functools.partial(_commit, dialect)  # type: ignore[method-assign]  # see above
    event.listen(engine, "checkout", _ping_on_checkout)
    event.listen(engine, "do_execute", _execute)
    event.listen(engine, "do_execute_no_params", _execute_no_params)
    event.listen(engine, "do_executemany", _executemany)


def _ping_on_checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """What `pool_pre_ping` did, for every checkout but a `Store` transaction's (which checks with its
    first round trip instead): a connection the server dropped is refused, and the pool opens another."""
    if _SKIP_PING.get():
        return
    try:
        with dbapi_connection.cursor() as cursor:
            autocommit = dbapi_connection.autocommit
            dbapi_connection.autocommit = True
            cursor.execute("SELECT 1")
            dbapi_connection.autocommit = autocommit
    except Exception as error:  # psycopg's OperationalError, or any state that makes it unusable
        raise exc.DisconnectionError(f"the pooled connection is unusable: {error}") from error


def _wait(context: Any, pipeline: Any) -> None:
    """Wait for the statement's answer unless it is `NO_WAIT` and SQLAlchemy reads no rows of it
    (an INSERT of a table whose key the database makes returns that key: it waits)."""
    compiled = context.compiled
    returning = compiled is not None and bool(getattr(compiled, "effective_returning", None))
    if returning or not context.execution_options.get("fnstage_no_wait"):
        pipeline.sync()  # send what is queued, and read every answer up to this statement's


def _execute(cursor: Any, statement: str, parameters: Any, context: Any) -> bool:
    pipelined = _OPEN.get(cursor.connection)
    if pipelined is None:
        return False  # SQLAlchemy executes it as always
    pipelined.send_queued()
    cursor.execute(statement, parameters)
    _wait(context, pipelined.pipeline)
    return True


def _execute_no_params(cursor: Any, statement: str, context: Any) -> bool:
    pipelined = _OPEN.get(cursor.connection)
    if pipelined is None:
        return False
    pipelined.send_queued()
    cursor.execute(statement)
    _wait(context, pipelined.pipeline)
    return True


def _executemany(cursor: Any, statement: str, parameters: Any, context: Any) -> bool:
    pipelined = _OPEN.get(cursor.connection)
    if pipelined is None:
        return False
    pipelined.send_queued()
    cursor.executemany(statement, parameters)
    _wait(context, pipelined.pipeline)
    return True


class _DriverForm(NamedTuple):
    """A statement as psycopg takes it: its SQL, the values of the parameters it carries itself
    (literals), and the bind processors SQLAlchemy would apply (JSON wrapped as `Json`, ...)."""

    sql: str
    defaults: dict[str, Any]
    processors: tuple[tuple[str, Callable[[Any], Any]], ...]


# by statement (built once, at import: a statement built per call leaves with its last use), then by
# parameter names
_DRIVER_FORMS: weakref.WeakKeyDictionary[Executable, dict[tuple[str, ...], _DriverForm]] = (
    weakref.WeakKeyDictionary()
)


def _driver_form(conn: Connection, statement: Executable, keys: tuple[str, ...]) -> _DriverForm:
    """`statement` compiled once for these parameter names, as SQLAlchemy would compile it. Refused
    when executing it takes more than its SQL and processed parameters: defaults computed in Python,
    RETURNING, parameters expanded or rendered at execution, escaped names."""
    forms = _DRIVER_FORMS.setdefault(statement, {})
    form = forms.get(keys)
    if form is not None:
        return form
    assert isinstance(statement, ClauseElement)  # every statement is one
    dialect = conn.dialect
    compiled: Any = statement.compile(dialect=dialect, column_keys=list(keys))
    if (
        compiled.insert_prefetch
        or compiled.update_prefetch
        or compiled.effective_returning
        or compiled.literal_execute_params
        or compiled.post_compile_params
        or compiled.escaped_bind_names
    ):
        raise ValueError(f"not executable at the driver level: {compiled.string}")
    defaults, processors = {}, []
    for name, bind in compiled.binds.items():
        processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if name not in keys:
            if bind.required:
                raise ValueError(f"parameter {name!r} missing for: {compiled.string}")
            value = bind.effective_value
            defaults[name] = processor(value) if processor else value
        elif processor is not None:
            processors.append((name, processor))
    form = _DriverForm(compiled.string, defaults, tuple(processors))
    forms[keys] = form
    return form


def send_no_wait(conn: Connection, statement: Executable, parameters: Any) -> None:
    """Execute a statement whose answer nobody reads (a dict of parameters, or a list of them for
    several rows), for PostgreSQL's pipelined transactions at the driver level.

    There its SQL is compiled once (`_driver_form`) and the statement is queued on the transaction's
    pipeline, to go out just before its next statement that SQLAlchemy executes, or with COMMIT:
    inside SQLAlchemy's execution of that one, which raises and wraps an error of any of them as it
    did for a `NO_WAIT` statement. What this skips is SQLAlchemy's work per execution (its cache
    lookup, parameters, result, events: about two thirds of a statement's client CPU, measured).
    Elsewhere (SQLite, or PostgreSQL outside a pipelined transaction) `conn.execute` runs it."""
    pipelined = _BY_CONNECTION.get(conn)
    if pipelined is None:
        conn.execute(statement, parameters)
        return
    rows = parameters if isinstance(parameters, list) else [parameters]
    for row in rows:
        form = _driver_form(conn, statement, tuple(sorted(row)))
        values = {**form.defaults, **row}
        for name, processor in form.processors:
            values[name] = processor(values[name])
        # the engine's `before_cursor_execute` listeners (tests that inject a failure before the n-th
        # statement, or watch for pg_notify) still see every statement, in the order the code runs them
        for listener in conn.dispatch.before_cursor_execute:
            listener(conn, pipelined.cursor(), form.sql, values, None, False)
        pipelined.queued.append((form.sql, values))


@contextmanager
def postgres_transaction(
    engine: Engine, options: dict[str, Any], first: Callable[[Connection], T]
) -> Iterator[T]:
    """A transaction on a pooled connection in psycopg's pipeline mode, yielding what `first` answers.

    Its first round trip carries BEGIN and what `first(conn)` sends (at least one statement that waits:
    `check_connection` when the caller has nothing better): a connection the server dropped (restart,
    terminate, idle timeout) fails there, before the caller ran anything else, and `first` runs again
    on a fresh connection (so it must do nothing but send statements). That one round trip replaces
    both the ping before every checkout and BEGIN's own; a deployment's lock and reads ride in it
    (`Store.write_for_deploy`). Then every statement waits for its answer (as without a pipeline)
    except `NO_WAIT` ones, which ride with the next. COMMIT goes out with leaving pipeline mode
    (`_commit`): one round trip that also brings the answers still owed, so an error in any of them
    fails the commit."""
    conn, pipeline, answer = _begin(engine, options, first)
    try:
        yield answer
        conn.commit()
    finally:
        pipeline.abandon()  # out of pipeline mode before the pool has it back (no-op once committed)
        conn.close()


def check_connection(conn: Connection) -> Connection:
    """A transaction's first round trip when it has no statement of its own to send in it yet."""
    conn.execute(_PING).close()
    return conn


def postgres_one_statement(engine: Engine, work: Callable[[Connection], T]) -> T:
    """`work(conn)` for ONE statement, which sees one snapshot and commits by itself (autocommit): no
    BEGIN, no COMMIT, no ping first, so it is one round trip. Should the pooled connection turn out
    dropped by the server, `work` runs once more on a fresh one: it must be safe to run twice (a read,
    or a write of values computed beforehand)."""
    for attempt in (1, 2):
        conn = _connect_unpinged(engine)
        try:
            conn.execution_options(isolation_level="AUTOCOMMIT")
            return work(conn)
        except exc.DBAPIError as error:
            if attempt == 2 or not error.connection_invalidated:
                raise
        finally:
            conn.close()
    raise AssertionError("unreachable: the second attempt returns or raises")


class _Pipeline:
    """A pipelined transaction's psycopg pipeline, which the statement hooks and `_commit` find by
    their psycopg connection (`_OPEN`)."""

    def __init__(self, conn: Connection) -> None:
        raw: Any = conn.connection.dbapi_connection  # psycopg's, behind SQLAlchemy's untyped DBAPI
        self.raw = raw
        self.conn = conn
        self._context: AbstractContextManager[Any] | None = raw.pipeline()
        self.pipeline = self._context.__enter__()
        self.queued: list[tuple[str, dict[str, Any] | None]] = []  # `send_no_wait`'s, not sent yet
        self._cursor: Any = None  # theirs: nobody reads its results
        _OPEN[self.raw] = self
        _BY_CONNECTION[conn] = self

    def send_queued(self) -> None:
        """Hand the statements `send_no_wait` queued to the pipeline, in order (no wait: their
        answers come back with the next Sync)."""
        if not self.queued:
            return
        queued, self.queued = self.queued, []
        cursor = self.cursor()
        for sql, values in queued:
            cursor.execute(sql, values)

    def cursor(self) -> Any:
        """The psycopg cursor of `send_no_wait`'s statements (nobody reads its results)."""
        if self._cursor is None:
            self._cursor = self.raw.cursor()
        return self._cursor

    def leave(self) -> None:
        """Send what is queued with a Sync, read every answer (raising the first error among them),
        and leave pipeline mode."""
        context, self._context = self._context, None
        _OPEN.pop(self.raw, None)
        _BY_CONNECTION.pop(self.conn, None)
        self.queued.clear()
        if context is not None:
            context.__exit__(None, None, None)

    def abandon(self) -> None:
        """Leave, whatever state the connection is in, and roll back what the server still holds
        open (a failed COMMIT leaves an aborted transaction; idle, nothing is sent): the pool then
        gets the connection back as it lent it. A dropped one is discarded anyway."""
        with suppress(Exception):
            self.leave()
        with suppress(Exception):
            self.raw.rollback()


_OPEN: weakref.WeakKeyDictionary[Any, _Pipeline] = weakref.WeakKeyDictionary()  # by psycopg connection
_BY_CONNECTION: weakref.WeakKeyDictionary[Connection, _Pipeline] = weakref.WeakKeyDictionary()  # SQLAlchemy's


def _commit(dialect: Any, dbapi_connection: Any) -> None:
    """The dialect's `do_commit` (SQLAlchemy's commit, after its `commit` event): in a pipelined
    transaction, COMMIT is queued and goes out as pipeline mode ends, in one round trip with every
    answer still owed; an error among them fails the commit, raised and wrapped by SQLAlchemy as a
    statement's would be (a dropped connection invalidated)."""
    raw = getattr(dbapi_connection, "dbapi_connection", dbapi_connection)  # the pool's proxy, or psycopg's
    pipeline = _OPEN.get(raw)
    if pipeline is None:
        type(dialect).do_commit(dialect, dbapi_connection)
        return
    pipeline.send_queued()
    with raw.cursor() as cursor:
        cursor.execute("COMMIT", prepare=False)
    pipeline.leave()


def _begin(
    engine: Engine, options: dict[str, Any], first: Callable[[Connection], T]
) -> tuple[Connection, _Pipeline, T]:
    """A connection in a transaction begun by its first round trip (BEGIN and `first`), on a fresh
    connection if the pooled one turns out dropped. psycopg runs in autocommit mode and the
    transaction's BEGIN is ours: psycopg's own BEGIN would wait for its answer in a round trip of its
    own."""
    level = options.get("isolation_level", "READ COMMITTED")
    begin = f"BEGIN ISOLATION LEVEL {level}"
    for attempt in (1, 2):
        conn = _connect_unpinged(engine)
        pipeline: _Pipeline | None = None
        try:
            conn.execution_options(**{**options, "isolation_level": "AUTOCOMMIT"})
            pipeline = _Pipeline(conn)
            conn.begin()
            pipeline.queued.append((begin, None))  # goes out with `first`'s statements
            return conn, pipeline, first(conn)
        except BaseException as error:
            if pipeline is not None:
                pipeline.abandon()
            # SQLAlchemy saw the error: a dropped connection is invalidated, with every pooled one
            # older than it (a restart drops them all)
            dropped = isinstance(error, exc.DBAPIError) and error.connection_invalidated
            conn.close()
            if attempt == 2 or not dropped:
                raise
    raise AssertionError("unreachable: the second attempt returns or raises")


def upsert_many(engine: Engine, table: Table, columns: Iterable[str], keys: Iterable[str]) -> Insert:
    """INSERT ... ON CONFLICT (keys) DO UPDATE, which replaces a row in place (never delete-then-insert):
    execute it with a row dict, or a list of them, as parameters. Built once per dialect, table and
    columns, so SQLAlchemy reuses its compiled form (see `_upsert_statement`)."""
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


_DOORBELL_DUE = "fnstage_doorbell_due"  # in a SQLite connection's info: ring after this commit


def notify_feed(conn: Connection, event: FeedEvent) -> None:
    """PostgreSQL: tell listening runtimes about a publish log entry, inside the publishing
    transaction, so it is delivered at commit and never for a rollback; runtimes then read the code
    from `published`. SQLite: ring the doorbell once this transaction has committed (`after_commit`)."""
    if conn.dialect.name == "postgresql":
        conn.execute(select(func.pg_notify(FEED_CHANNEL, feed_payload(event))))
    else:
        conn.info[_DOORBELL_DUE] = True


def after_commit(conn: Connection) -> None:
    """SQLite's NOTIFY: after a transaction that appended to the publish log has committed, write the
    database's doorbell file (`doorbell_path`), which runtimes watch with the rest of its folder.

    Runtimes also wake on the WAL file's write, but that write comes a moment BEFORE the commit is
    visible (the wal-index, a shared memory map, is updated after it and makes no inotify event), so a
    wake can find nothing new; the watcher then looks again a few times, and a writer descheduled past
    its last look left the change to the 1 s poll (3 saves in 2,492; a delete missed for 5 s in a
    test at load 15). The doorbell is written only once the change is visible to every reader."""
    if not conn.info.pop(_DOORBELL_DUE, False):
        return
    database = conn.engine.url.database
    if not database or database == ":memory:":
        return
    with suppress(OSError):  # a read-only folder: runtimes still have the WAL's wake and the poll
        os.close(os.open(doorbell_path(Path(database)), os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))


def forget_doorbell(conn: Connection) -> None:
    """A transaction rolled back: nothing to ring for."""
    conn.info.pop(_DOORBELL_DUE, None)


def doorbell_path(database: Path) -> Path:
    return database.with_name(database.name + "-doorbell")


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
