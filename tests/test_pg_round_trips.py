"""PostgreSQL's write path in round trips: every round trip to the server is a wait, so the store spends
as few as it can (BENCHMARKS.md, "PostgreSQL at SQLite's speed").

- No ping per checkout for a Store transaction: BEGIN and a SELECT 1 go out together, and a connection
  the server dropped fails there and is replaced, before the caller ran anything.
- The caller's credentials are one statement, outside BEGIN/COMMIT, retried once on a fresh connection.
- A save is a fixed, small number of round trips whatever the gateway holds (counted from libpq's own
  trace of the protocol: one Sync per wait): its statements run in psycopg's pipeline mode, and those
  whose answer nobody reads go out with the next one that waits.
- A runtime woken by a NOTIFY reads the log after its positions and the rows to load in one round trip;
  what it reports back (live, failed, removed, heartbeat) is one round trip each.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from psycopg.pq import Trace
from sqlalchemy import event, func, select, update
from sqlalchemy.exc import IntegrityError

from fnstage.service import Actor, Services
from fnstage.service.identity import create_token, identify
from fnstage.store.feed import FeedReader
from fnstage.store.runtime_status import RuntimeReporter
from fnstage.store.store import Store
from support import pg
from support.consistency import check_consistent
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


def statements_of(store: Store, when: str = "before_cursor_execute") -> list[str]:
    """Record every statement the store's engine's listeners see from now on (`after_cursor_execute`:
    those SQLAlchemy executed itself)."""
    sent: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        sent.append(" ".join(statement.split()[:3]))

    event.listen(store.engine, when, record)
    return sent


def terminate(postgres: pg.PgServer, pid: int) -> None:
    """What a server restart or an idle timeout does to a pooled connection's backend."""
    with postgres.admin() as admin:
        admin.execute("select pg_terminate_backend(%s)", (pid,))
        deadline = time.monotonic() + 10
        while admin.execute("select 1 from pg_stat_activity where pid = %s", (pid,)).fetchone():
            assert time.monotonic() < deadline, "the backend did not end"
            time.sleep(0.02)


def backend_pid(store: Store) -> int:
    pid = store.read_one(lambda tx: tx.conn.scalar(select(func.pg_backend_pid())))
    assert isinstance(pid, int)
    return pid


def test_a_pooled_connection_the_server_closed_is_replaced(postgres: pg.PgServer, pg_store: Store) -> None:
    """A terminated backend is never used again: a transaction's first round trip finds it dropped and
    begins again on a fresh connection; the caller sees nothing."""
    first = backend_pid(pg_store)
    terminate(postgres, first)
    with pg_store.read() as tx:  # the same pooled connection would fail here; a fresh one is used
        second = tx.conn.scalar(select(func.pg_backend_pid()))
        assert tx.count_users() == 0
    assert second != first


def test_a_write_on_a_dropped_connection_begins_again_on_a_fresh_one(
    postgres: pg.PgServer, pg_store: Store, admin: Actor
) -> None:
    first = backend_pid(pg_store)
    terminate(postgres, first)
    with pg_store.write() as tx:  # its first round trip fails on the dropped one: begun again
        tx.create_user("grace", is_admin=False)
    assert pg_store.read_one(lambda tx: tx.count_users()) == 2
    assert backend_pid(pg_store) != first
    services = Services.create(pg_store)  # and a whole save, after another termination
    services.gateways.create(admin, "demo")
    second = backend_pid(pg_store)
    terminate(postgres, second)
    saved = services.deployments.save(admin, "demo", "dev/user/me", hello_files())
    assert saved.function.version == 1 and backend_pid(pg_store) not in (first, second)


def test_a_one_statement_read_on_a_dropped_connection_runs_again_on_a_fresh_one(
    postgres: pg.PgServer, pg_store: Store
) -> None:
    first = backend_pid(pg_store)
    terminate(postgres, first)
    assert backend_pid(pg_store) != first


class Traces:
    """libpq's own trace of the protocol of every connection a store opens from now on: one line per
    message. libpq buffers it, so `waits` stops tracing (which flushes) before it reads."""

    def __init__(self, store: Store | FeedReader | RuntimeReporter, folder: Path) -> None:
        store.engine.dispose()  # every connection from now on is a new one, traced from its first byte
        self.folder = folder
        self.traced: list[tuple[Any, Any, Path]] = []
        self.read: list[list[str]] = []
        event.listen(store.engine, "connect", self.trace)

    def trace(self, dbapi_connection: Any, _record: Any) -> None:
        path = self.folder / f"trace-{len(self.traced)}.txt"
        out = path.open("w")  # open while libpq writes to it: its FILE shares the descriptor
        dbapi_connection.pgconn.trace(out.fileno())
        dbapi_connection.pgconn.set_trace_flags(Trace.SUPPRESS_TIMESTAMPS | Trace.REGRESS_MODE)
        self.traced.append((dbapi_connection, out, path))

    def lines(self) -> list[list[str]]:
        """Every connection's trace (stopped at the first call; later calls answer the same)."""
        for dbapi_connection, out, path in self.traced:
            dbapi_connection.pgconn.untrace()
            out.close()
            self.read.append(path.read_text().splitlines())
        self.traced = []
        return self.read


def round_trips(store: Store | FeedReader, folder: Path) -> Traces:
    return Traces(store, folder)


def waits(traces: Traces) -> list[str]:
    """The round trips in these traces: each Sync (extended protocol) or simple Query the client sent
    ends a batch the client then waits for; named by the statements of the batch. A trace line is
    `F <tab> length <tab> Message <tab> details`, a Parse's details its name and its text, quoted."""
    found = []
    for lines in traces.lines():
        batch: list[str] = []
        for line in lines:
            fields = line.split("\t")
            if len(fields) < 3 or fields[0] != "F":
                continue
            quoted = re.findall(r'"((?:[^"\\]|\\.)*)"', fields[3]) if len(fields) > 3 else []
            if fields[2] == "Parse" and len(quoted) >= 2:
                batch.append(" ".join(quoted[1].split())[:40])
            elif fields[2] == "Query" and quoted:
                batch.append(" ".join(quoted[0].split())[:40])
            elif fields[2] == "Bind" and not batch:
                batch.append("(statement)")
            if fields[2] in ("Sync", "Query"):
                found.append(" + ".join(batch) or "(sync)")
                batch = []
    return found


def statements_per_wait(traces: Traces) -> list[list[str]]:
    """The statements the client sent in each round trip (however they were executed: through
    SQLAlchemy or at the driver level), each named by the first words of its text; a statement
    prepared earlier (no Parse) as "(prepared)"."""
    found: list[list[str]] = []
    for lines in traces.lines():
        batch: list[str] = []
        parsed: str | None = None
        for line in lines:
            fields = line.split("\t")
            if len(fields) < 3 or fields[0] != "F":
                continue
            if fields[2] == "Parse":
                text = fields[3].split('"', 3)[-1].split('"')[0] if len(fields) > 3 else ""
                parsed = " ".join(text.split()[:3]) or "(multi-line)"
            elif fields[2] == "Bind":
                batch.append(parsed or "(prepared)")
                parsed = None
            elif fields[2] in ("Sync", "Query"):
                found.append(batch)
                batch = []
    return found


def test_the_callers_credentials_are_one_statement_outside_a_transaction(
    pg_store: Store, admin: Actor, tmp_path: Path
) -> None:
    token = create_token(pg_store, admin, "ci")
    Services.create(pg_store).gateways.create(admin, "demo")
    traces = round_trips(pg_store, tmp_path)
    actor, record, role = pg_store.read_one(lambda tx: identify(tx, token, "demo"))
    assert (actor, record.name, role) == (admin, "ci", "owner")
    found = waits(traces)
    assert len(found) == 1, found


def test_a_save_is_two_round_trips(pg_store: Store, admin: Actor, tmp_path: Path) -> None:
    services = Services.create(pg_store)
    services.gateways.create(admin, "demo")
    services.gateways.update("demo", history_limit=2)
    for n in range(3):  # an existing function with history to prune; the gateway's pins known
        services.deployments.save(admin, "demo", "dev/user/me", hello_files(f"Hello {n}"))
    traces = round_trips(pg_store, tmp_path)
    sent = statements_of(pg_store)
    executed = statements_of(pg_store, "after_cursor_execute")
    services.deployments.save(admin, "demo", "dev/user/me", hello_files("Hi"))
    # BEGIN with the gateway's lock and the read of the gateway, the function, its latest version, its
    # canary's state, the blobs it has already and the new entry's id (a dropped connection fails
    # there, and it all begins again on a fresh one: no SELECT 1 of its own); then the new blobs, the
    # history entry, the webhooks' outbox, the function, the pruning of history with every reference
    # change it leads to, and the publish (log, row, NOTIFY) with COMMIT. It was 14, then 4.
    found = waits(traces)
    assert len(found) == 2, "\n".join(found)
    assert found[0].startswith("BEGIN") and found[-1].endswith("COMMIT"), found
    # its statements, each once, in the order the code runs them: BEGIN, the lock and the read; then
    # the blobs, the history entry, the outbox, the function, the pruning, the publish and COMMIT
    first, second = statements_per_wait(traces)
    assert len(first) == 3 and len(second) == 7, (first, second)
    assert first[0].startswith("BEGIN ISOLATION LEVEL"), first
    assert second[0].startswith("INSERT INTO blobs") and second[1].startswith("INSERT INTO history"), second
    assert second[2].startswith("INSERT INTO webhook_deliveries") and second[3].startswith("UPDATE functions")
    assert second[5].startswith("WITH next_seq AS") and second[6] == "COMMIT", second
    # of them, only the read goes through SQLAlchemy's execution: the others, whose answers nobody
    # reads, are sent at the driver level (`engine.send_no_wait`), where the engine's listeners still
    # see each (all but BEGIN), in order
    assert executed == ["SELECT gateways.id AS"], executed
    assert len(sent) == 8 and sent[1] == "SELECT gateways.id AS", sent
    assert sent[0].startswith("SELECT gateways.id") and sent[-1].startswith("WITH next_seq AS"), sent


def test_a_deployment_on_a_dropped_connection_begins_again_with_its_lock(
    postgres: pg.PgServer, pg_store: Store, admin: Actor
) -> None:
    """The lock and reads a deployment begins with are its connection's check: on a connection the
    server dropped they fail, and run again, lock included, on a fresh one."""
    services = Services.create(pg_store)
    services.gateways.create(admin, "demo")
    services.deployments.save(admin, "demo", "dev/user/me", hello_files("Hello"))
    for n in range(2):  # every pooled connection gone, as after a restart
        first = backend_pid(pg_store)
        terminate(postgres, first)
        saved = services.deployments.save(admin, "demo", "dev/user/me", hello_files(f"Hi {n}"))
        assert saved.function.version == n + 2 and backend_pid(pg_store) != first
    check_consistent(pg_store)


def test_a_runtime_reads_what_changed_in_one_round_trip(
    pg_store: Store, postgres_url: str, admin: Actor, tmp_path: Path
) -> None:
    """After a NOTIFY, a runtime reads the log entries after its positions (with every gateway's head)
    in one statement, outside BEGIN/COMMIT: on the path of every save to live. It was 4."""
    services = Services.create(pg_store)
    services.gateways.create(admin, "demo")
    services.deployments.save(admin, "demo", "dev/user/me", hello_files("Hello"))
    reader = FeedReader(postgres_url)
    try:
        _, positions = reader.snapshot("demo")
        services.deployments.save(admin, "demo", "dev/user/me", hello_files("Hi"))
        traces = round_trips(reader, tmp_path)
        events = reader.events_after(positions, "demo")
        assert [(e.seq, e.version) for e in events or []] == [(2, 2)]
        found = waits(traces)
        assert len(found) == 1, found
    finally:
        reader.close()


def test_a_runtime_reads_what_changed_and_the_rows_to_load_in_one_round_trip(
    pg_store: Store, postgres_url: str, admin: Actor, tmp_path: Path
) -> None:
    """From a NOTIFY to loading, ONE round trip: the log entries after the runtime's positions and the
    published rows they upserted, in one statement and one snapshot. It was 2 (the log, then `fetch`)."""
    services = Services.create(pg_store)
    services.gateways.create(admin, "demo")
    for name in ("dev/user/me", "dev/user/gone", "dev/user/other"):
        services.deployments.save(admin, "demo", name, hello_files("Hello"))
    reader = FeedReader(postgres_url)
    try:
        _, positions = reader.snapshot("demo")
        services.deployments.save(admin, "demo", "dev/user/me", hello_files("Hi"))
        services.deployments.save(admin, "demo", "dev/user/me", hello_files("Hi again"))
        services.deployments.delete(admin, "demo", "dev/user/gone")
        services.deployments.save(admin, "demo", "dev/user/new", hello_files("New"))
        traces = round_trips(reader, tmp_path)
        read = reader.changes_after(positions, "demo")
        found = waits(traces)
        assert len(found) == 1, found
        assert read is not None
        events, rows = read
        assert [(e.name, e.version, e.action) for e in events] == [
            ("dev/user/me", 2, "upsert"),
            ("dev/user/me", 3, "upsert"),
            ("dev/user/gone", 2, "delete"),
            ("dev/user/new", 1, "upsert"),
        ]
        # each upserted name's row once, as published now (never the deleted one, nor an older version)
        assert sorted((r.name, r.version, r.seq) for r in rows) == [
            ("dev/user/me", 3, 5),
            ("dev/user/new", 1, 7),
        ]
        assert sorted(rows, key=lambda r: r.name) == reader.fetch("demo", ["dev/user/me", "dev/user/new"])
    finally:
        reader.close()


def test_a_runtimes_report_is_one_round_trip(
    pg_store: Store, postgres_url: str, admin: Actor, tmp_path: Path
) -> None:
    """What a runtime writes after every load (live, failed, removed) and with every heartbeat is one
    autocommit statement: one round trip where the ping, BEGIN, the statement and COMMIT were four."""
    from fnstage.store.runtime_status import RuntimeIdentity

    Services.create(pg_store).gateways.create(admin, "demo")
    reporter = RuntimeReporter(postgres_url, RuntimeIdentity.new("demo", "http://127.0.0.1:1", pid=1))
    try:
        reporter.register()
        traces = Traces(reporter, tmp_path)
        reporter.live_many([("demo", "dev/user/me", 3, "abc")])  # what the watcher sends after a load
        assert len(waits(traces)) == 1
        for n, report in enumerate(
            [
                lambda: reporter.live("demo", "dev/user/me", 4),
                lambda: reporter.failed("demo", "dev/user/me", 5, "SyntaxError"),
                reporter.heartbeat,
                lambda: reporter.removed("demo", "dev/user/me"),
            ]
        ):
            (tmp_path / str(n)).mkdir()
            traces = Traces(reporter, tmp_path / str(n))
            report()
            assert len(waits(traces)) == 1
    finally:
        reporter.close()
    rows = pg_store.read_one(lambda tx: tx.runtime_functions("demo"))
    assert rows == []  # removed, after live and failed were written


def test_an_error_in_a_statement_nobody_waits_for_still_fails_the_transaction(
    pg_store: Store, admin: Actor
) -> None:
    """A NO_WAIT statement's error arrives with the next statement's answer (or COMMIT's): the whole
    transaction fails, nothing of it is kept, and the pooled connection stays usable."""
    from fnstage.store import schema as t
    from fnstage.store.engine import NO_WAIT

    def rename_grace_to_ada() -> Any:  # a unique violation, in a statement nobody waits for
        return (
            update(t.users).where(t.users.c.name == "grace").values(name="ada").execution_options(**NO_WAIT)
        )

    with pytest.raises(IntegrityError) as raised, pg_store.write() as tx:
        tx.create_user("grace", is_admin=False)
        tx.conn.execute(rename_grace_to_ada())
        tx.conn.scalar(select(func.count()).select_from(t.users))  # waits, and meets the error
    assert "users_name_key" in str(raised.value) or "unique" in str(raised.value).lower()
    assert pg_store.read_one(lambda tx: tx.get_user_by_name("grace")) is None
    with pytest.raises(IntegrityError), pg_store.write() as tx:  # and at COMMIT: nothing waits after it
        tx.create_user("grace", is_admin=False)
        tx.conn.execute(rename_grace_to_ada())
    assert pg_store.read_one(lambda tx: tx.get_user_by_name("grace")) is None
    assert pg_store.read_one(lambda tx: tx.count_users()) == 1  # only `admin`


def test_an_error_in_a_statement_sent_at_the_driver_level_fails_the_transaction_as_before(
    pg_store: Store, admin: Actor
) -> None:
    """`send_no_wait` skips SQLAlchemy's execution of the statement, not its error handling: the error
    arrives wrapped (IntegrityError) with the next statement or COMMIT, nothing is kept, and the
    statements queued after the failing one never take effect."""
    from fnstage.store import schema as t
    from fnstage.store.engine import NO_WAIT, send_no_wait

    rename = update(t.users).where(t.users.c.name == "grace").values(name="ada").execution_options(**NO_WAIT)
    with pytest.raises(IntegrityError), pg_store.write() as tx:
        tx.create_user("grace", is_admin=False)
        send_no_wait(tx.conn, rename, {})
        tx.conn.scalar(select(func.count()).select_from(t.users))  # waits, and meets the error
    with pytest.raises(IntegrityError), pg_store.write() as tx:  # at COMMIT
        tx.create_user("grace", is_admin=False)
        send_no_wait(tx.conn, rename, {})
        send_no_wait(tx.conn, update(t.users).values(is_admin=False).execution_options(**NO_WAIT), {})
    assert pg_store.read_one(lambda tx: tx.get_user_by_name("grace")) is None
    kept = pg_store.read_one(lambda tx: tx.get_user(admin.user_id))
    assert kept is not None and kept.is_admin
    with pg_store.write() as tx:  # the pooled connection is fine, and a good one commits
        tx.create_user("grace", is_admin=False)
        send_no_wait(tx.conn, update(t.users).where(t.users.c.name == "grace").values(name="hopper"), {})
    assert pg_store.read_one(lambda tx: tx.get_user_by_name("hopper")) is not None


def test_a_statement_that_needs_more_than_its_sql_is_refused_at_the_driver_level(pg_store: Store) -> None:
    """What SQLAlchemy computes at execution (a column's Python-side default, here `is_admin`'s) would
    be lost at the driver level: refused, not sent without it."""
    from sqlalchemy import insert

    from fnstage.store import schema as t
    from fnstage.store.engine import send_no_wait

    with pytest.raises(ValueError, match="driver level"), pg_store.write() as tx:
        send_no_wait(tx.conn, insert(t.users), {"name": "grace", "created_at": datetime.now(UTC)})
