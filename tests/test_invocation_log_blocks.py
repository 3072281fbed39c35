"""The durable invocation log stored in blocks (a row per function and write), on both engines:
filters, the follow cursor and paging across block boundaries, the count and age bounds by whole
blocks, request ids that need escaping, and the migration that moves rows into blocks."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, func, select, text

from fnstage.service import Actor, Services
from fnstage.store import invocation_log
from fnstage.store import schema as t
from fnstage.store.engine import MIGRATIONS, make_engine, sqlite_url
from fnstage.store.invocation_log import BLOCK_BITS, BLOCK_MAX, LogFilter, LogRecord
from fnstage.store.store import Store
from support.pg import PgServer

FN = "dev/user/me"


def record(n: int, *, name: str = FN, version: int = 1, status: int = 200, at: float = 0.0) -> LogRecord:
    return LogRecord(
        gateway="demo",
        name=name,
        version=version,
        request_id=f"req-{n}",
        started_us=round((at or 1_000_000.0 + n) * 1e6),
        status=status,
        duration_us=n * 250,
        lines=f'["line {n}"]',
        error=f"ValueError: {n}\nTraceback ..." if status >= 500 else None,
        trigger="nightly" if n % 7 == 0 else None,
    )


@pytest.fixture
def demo(services: Services, actor: Actor) -> str:
    services.gateways.create(actor, "demo")
    return "demo"


def blocks(engine: Engine, name: str = FN) -> int:
    with engine.connect() as conn:
        count = conn.scalar(select(func.count()).where(t.invocation_log_blocks.c.name == name))
    return int(count or 0)


def ids_of(store: Store, **wanted: Any) -> list[str]:
    found, _ = invocation_log.read(store.engine, "demo", FN, LogFilter(**wanted))
    return [e["request_id"] for e in found]


@pytest.fixture
def three_blocks(store: Store, demo: str) -> None:
    """Blocks of 4, 3 and 5 entries, another function's block between them; versions, statuses and
    times chosen so that every filter matches entries in more than one block."""
    written = [
        [record(1), record(2, status=500), record(3, version=2), record(4, status=404)],
        [record(5, version=2, status=500), record(6), record(7, version=2, status=201)],
        [record(8), record(9, version=3), record(10, status=503), record(11, version=2), record(12)],
    ]
    for n, block in enumerate(written):
        invocation_log.write(store.engine, block)
        invocation_log.write(store.engine, [record(100 + n, name="dev/other")])
    assert blocks(store.engine) == 3


@pytest.mark.usefixtures("three_blocks")
def test_filters_match_entries_across_blocks(store: Store) -> None:
    assert ids_of(store) == [f"req-{n}" for n in range(12, 0, -1)]
    assert ids_of(store, limit=6) == [f"req-{n}" for n in range(12, 6, -1)]  # the limit inside a block
    assert ids_of(store, version=2) == ["req-11", "req-7", "req-5", "req-3"]
    assert ids_of(store, version=3) == ["req-9"]
    assert ids_of(store, version=4) == []
    assert ids_of(store, status="error") == ["req-10", "req-5", "req-2"]
    assert ids_of(store, status=500) == ["req-5", "req-2"]
    assert ids_of(store, status="4xx") == ["req-4"]
    assert ids_of(store, status="2xx", version=2) == ["req-11", "req-7", "req-3"]  # 200 and 201
    assert ids_of(store, status="3xx") == []
    assert ids_of(store, status="ok", version=2) == ["req-11", "req-7", "req-3"]
    assert ids_of(store, since=1_000_004.0, until=1_000_009.0) == [
        "req-8",
        "req-7",
        "req-6",
        "req-5",
        "req-4",
    ]
    assert ids_of(store, request_id="req-6") == ["req-6"] and ids_of(store, request_id="req-") == []
    (entry,) = invocation_log.read(store.engine, "demo", FN, LogFilter(request_id="req-7"))[0]
    assert entry == {
        "id": entry["id"],
        "request_id": "req-7",
        "time": 1_000_007.0,
        "version": 2,
        "status": 201,
        "duration_ms": 1.75,
        "lines": ["line 7"],
        "error": None,
        "trigger": "nightly",
        "runtime": None,
    }
    (failed,) = invocation_log.read(store.engine, "demo", FN, LogFilter(request_id="req-10"))[0]
    assert failed["error"] == "ValueError: 10\nTraceback ..." and failed["trigger"] is None


@pytest.mark.usefixtures("three_blocks")
def test_the_cursor_follows_across_blocks_oldest_first(store: Store) -> None:
    everything, cursor = invocation_log.read(store.engine, "demo", FN, LogFilter(limit=100))
    ids = [e["id"] for e in reversed(everything)]
    assert ids == sorted(ids) and len(set(ids)) == 12 and cursor == ids[-1]
    after_2 = ids[1]  # inside the first block
    assert ids_of(store, after=after_2, limit=4) == ["req-3", "req-4", "req-5", "req-6"]
    assert ids_of(store, after=ids[3]) == [f"req-{n}" for n in range(5, 13)]  # the first block's last
    assert ids_of(store, after=after_2, status="error") == ["req-5", "req-10"]
    assert ids_of(store, after=cursor) == []
    invocation_log.write(store.engine, [record(13), record(14)])
    new, newer_cursor = invocation_log.read(store.engine, "demo", FN, LogFilter(after=cursor))
    assert [e["request_id"] for e in new] == ["req-13", "req-14"] and newer_cursor == new[-1]["id"]
    assert newer_cursor >> BLOCK_BITS > cursor >> BLOCK_BITS


def test_reads_page_through_many_blocks(store: Store, demo: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(invocation_log, "READ_PAGE", 2)
    for n in range(9):
        invocation_log.write(
            store.engine, [record(2 * n), record(2 * n + 1, status=500 if n in (0, 8) else 200)]
        )
    assert ids_of(store, limit=100) == [f"req-{n}" for n in range(17, -1, -1)]
    assert ids_of(store, status=500, limit=100) == ["req-17", "req-1"]
    assert ids_of(store, after=0, limit=5) == [f"req-{n}" for n in range(5)]
    assert ids_of(store, request_id="req-0") == ["req-0"]


def test_request_ids_are_matched_exactly_whatever_their_characters(store: Store, demo: str) -> None:
    odd = ['a"b', "c\\d", "e%f_", "ünï", "\ud800x", "req-1"]
    invocation_log.write(store.engine, [record(n)._replace(request_id=r) for n, r in enumerate(odd)])
    invocation_log.write(store.engine, [record(9)._replace(request_id="REQ-1")])
    for request_id in odd:
        assert ids_of(store, request_id=request_id) == [request_id]
    assert ids_of(store, request_id="e_f_") == [] and ids_of(store, request_id="b") == []


def test_a_write_larger_than_a_block_makes_several(store: Store, demo: str) -> None:
    invocation_log.write(store.engine, [record(n) for n in range(BLOCK_MAX + 3)])
    assert blocks(store.engine) == 2
    newest, cursor = invocation_log.read(store.engine, "demo", FN, LogFilter(limit=5))
    assert [e["request_id"] for e in newest] == [f"req-{n}" for n in range(BLOCK_MAX + 2, BLOCK_MAX - 3, -1)]
    assert cursor == newest[0]["id"] and newest[2]["id"] >> BLOCK_BITS != newest[3]["id"] >> BLOCK_BITS


def test_the_count_bound_drops_whole_blocks_and_keeps_at_least_keep(store: Store, demo: str) -> None:
    for b in range(4):
        invocation_log.write(store.engine, [record(3 * b + n) for n in range(3)])
    assert invocation_log.prune(store.engine, [("demo", FN)], keep=6, older_than=None) == 6
    assert ids_of(store, limit=100) == [f"req-{n}" for n in range(11, 5, -1)]
    # 4 newest lie in the newest two blocks: both stay (a block more than keep, at most)
    assert invocation_log.prune(store.engine, [("demo", FN)], keep=4, older_than=None) == 0
    assert invocation_log.prune(store.engine, [("demo", FN)], keep=3, older_than=None) == 3
    assert ids_of(store, limit=100) == ["req-11", "req-10", "req-9"]


def test_the_age_bound_drops_blocks_whose_every_entry_is_past_it(store: Store, demo: str) -> None:
    now = 2_000_000.0
    invocation_log.write(store.engine, [record(1, at=now - 900), record(2, at=now - 800)])
    invocation_log.write(store.engine, [record(3, at=now - 700), record(4, at=now - 10)])  # straddles
    invocation_log.write(store.engine, [record(5, at=now - 5)])
    assert invocation_log.prune(store.engine, [], keep=100, older_than=now - 500) == 2
    assert ids_of(store) == ["req-5", "req-4", "req-3"]


def test_samples_span_blocks_and_cut_inside_one(store: Store, demo: str) -> None:
    invocation_log.write(store.engine, [record(1, at=100.0), record(2, at=200.0, status=500)])
    invocation_log.write(store.engine, [record(3, at=300.0, version=2)])
    assert invocation_log.samples(store.engine, "demo", FN, 150.0) == [
        (200.0, 1, 500, 0.5),
        (300.0, 2, 200, 0.75),
    ]
    assert invocation_log.samples(store.engine, "demo", FN, 400.0) == []


def test_blocks_hold_integer_microseconds_and_read_the_floats_of_0017s_blocks(
    store: Store, demo: str
) -> None:
    """Start times and durations are stored as the cell measured them (encoding a float's text was
    most of a block's encoding); a block written by 0017's writer, in seconds and milliseconds, reads
    as it did."""
    invocation_log.write(store.engine, [record(1, at=1_764_000_000.123456), record(2, at=1_764_000_001.5)])
    columns = t.invocation_log_blocks.c
    with store.engine.begin() as conn:
        started, durations = conn.execute(select(columns.started_at, columns.durations_ms)).one()
        assert (started, durations) == ("[1764000000123456,1764000001500000]", "[250,500]")
        old = (1_764_000_000.123456, 1_764_000_001.5)
        conn.execute(  # the same two, as 0017 wrote them, for another function
            t.invocation_log_blocks.insert().values(
                gateway_id="demo",
                name="dev/old",
                entries=2,
                first_started=old[0],
                last_started=old[1],
                min_version=1,
                max_version=1,
                min_status=200,
                max_status=200,
                request_ids='["req-1","req-2"]',
                started_at=json.dumps(old),
                versions="[1,1]",
                statuses="[200,200]",
                durations_ms="[0.25,0.5]",
                lines='["[\\"line 1\\"]","[\\"line 2\\"]"]',
            )
        )
    for since, until in ((None, None), (1_764_000_000.2, None), (None, 1_764_000_000.2)):
        wanted = LogFilter(since=since, until=until)
        new_entries = invocation_log.read(store.engine, "demo", FN, wanted)[0]
        old_entries = invocation_log.read(store.engine, "demo", "dev/old", wanted)[0]
        assert (
            [e["time"] for e in new_entries]
            == [e["time"] for e in old_entries]
            == [t_ for t_ in reversed(old) if (since or 0) <= t_ < (until or 2e9)]
        )
        assert [(e["duration_ms"], e["lines"]) for e in new_entries] == [
            (e["duration_ms"], e["lines"]) for e in old_entries
        ]
    assert invocation_log.samples(store.engine, "demo", FN, 0) == [
        (old[0], 1, 200, 0.25),
        (old[1], 1, 200, 0.5),
    ]
    assert invocation_log.samples(store.engine, "demo", "dev/old", 0) == invocation_log.samples(
        store.engine, "demo", FN, 0
    )


# the migration ---------------------------------------------------------------------------------------

OLD_ROW = (
    "INSERT INTO invocation_logs (id, gateway_id, name, version, request_id, started_at, status,"
    ' duration_ms, lines, error, "trigger", runtime_id) VALUES (:id, :gw, :name, :version, :rid, :at,'
    " :status, :ms, :lines, :error, :trigger, :rt)"
)


@pytest.fixture
def empty_url(store: Store, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of the store's engine with nothing in it, not even the schema."""
    if store.engine.dialect.name == "sqlite":
        (tmp_path / "empty").mkdir()
        yield sqlite_url(tmp_path / "empty")
        return
    server: PgServer = request.getfixturevalue("postgres")
    name = server.create_database()
    yield server.database_url(name)
    server.drop_database(name)


def _migrate(engine: Engine, to: str, down: bool = False) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(config, to)


def _old_rows() -> list[dict[str, Any]]:
    rows = []
    for n in range(2_500):  # more than a moved block (1,000), in id order with another function between
        name = FN if n % 50 else "dev/other"
        rows.append(
            {
                "id": 7 * n + 3,
                "gw": "demo",
                "name": name,
                "version": 1 + n // 1000,
                "rid": f"old-{n}",
                "at": 1_000_000.0 + n / 8,
                "status": 500 if n % 97 == 0 else 200,
                "ms": n / 3,
                "lines": f'["old {n}"]' if n % 11 else "not json",
                "error": "KeyError\nTraceback" if n % 97 == 0 else None,
                "trigger": "hourly" if n % 13 == 0 else None,
                "rt": None if n < 1200 else f"rt-{n // 600}",
            }
        )
    return rows


def test_the_migration_moves_every_row_into_blocks(empty_url: str) -> None:
    engine = make_engine(empty_url)
    role = f"fnstage_rt_migr_{secrets.token_hex(4)}"
    password = secrets.token_hex(12)
    postgres = engine.dialect.name == "postgresql"
    try:
        _migrate(engine, "0016")
        rows = _old_rows()
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO gateways (id, allow_dev_to_prod, dependencies, publish_seq, created_at,"
                    " created_by) VALUES ('demo', false, '[]', 0, '2026-12-01 12:00:00', 'ada')"
                )
            )
            conn.execute(text(OLD_ROW), rows)
            if postgres:  # a runtime's role as `store.credentials` made it at 0016
                conn.execute(text(f"CREATE ROLE {role} LOGIN NOINHERIT PASSWORD '{password}'"))
                database = conn.scalar(text("SELECT current_database()"))
                conn.execute(text(f'GRANT CONNECT ON DATABASE "{database}" TO {role}'))
                conn.execute(text(f"GRANT USAGE ON SCHEMA public TO {role}"))
                conn.execute(text(f"GRANT SELECT (id, publish_seq) ON gateways TO {role}"))
                conn.execute(text(f"GRANT SELECT, INSERT, UPDATE, DELETE ON invocation_logs TO {role}"))
                conn.execute(text(f"GRANT USAGE ON SEQUENCE invocation_logs_id_seq TO {role}"))
                conn.execute(text("ALTER TABLE invocation_logs ENABLE ROW LEVEL SECURITY"))
                conn.execute(
                    text(
                        f"CREATE POLICY {role} ON invocation_logs FOR ALL TO {role}"
                        " USING (gateway_id = 'demo') WITH CHECK (gateway_id = 'demo')"
                    )
                )
        _migrate(engine, "head")

        for name in (FN, "dev/other"):
            old = [r for r in rows if r["name"] == name]
            moved, cursor = invocation_log.read(engine, "demo", name, LogFilter(limit=5_000))
            assert [e["request_id"] for e in moved] == [r["rid"] for r in reversed(old)]
            assert min(e["id"] for e in moved) > rows[-1]["id"]  # an old cursor skips nothing
            assert cursor == moved[0]["id"]
            for entry, row in zip(moved, reversed(old), strict=True):
                assert (entry["time"], entry["version"], entry["status"], entry["duration_ms"]) == (
                    row["at"],
                    row["version"],
                    row["status"],
                    row["ms"],
                )
                assert (entry["error"], entry["trigger"], entry["runtime"]) == (
                    row["error"],
                    row["trigger"],
                    row["rt"],
                )
                expected = (
                    ["(these lines could not be read: not JSON)"]
                    if row["lines"] == "not json"
                    else [row["lines"][2:-2]]
                )
                assert entry["lines"] == expected
        assert blocks(engine) == 3  # 2,450 entries in blocks of at most 1,000
        assert (
            invocation_log.read(engine, "demo", FN, LogFilter(request_id="old-1234"))[0][0]["status"] == 200
        )
        invocation_log.write(engine, [record(1)])
        newest = invocation_log.read(engine, "demo", FN, LogFilter(limit=2))[0]
        assert [e["request_id"] for e in newest] == ["req-1", "old-2499"] and newest[0]["id"] > newest[1][
            "id"
        ]

        if postgres:  # the runtime's role writes and reads blocks of its gateway, and only those
            role_engine = make_engine(
                engine.url.set(username=role, password=password).render_as_string(hide_password=False)
            )
            try:
                invocation_log.write(role_engine, [record(2)])
                assert ids_of_engine(role_engine, limit=1) == ["req-2"]
                with role_engine.begin() as conn, pytest.raises(Exception, match="row-level security"):
                    conn.execute(
                        t.invocation_log_blocks.insert().values(
                            gateway_id="other",
                            name=FN,
                            entries=0,
                            first_started=0,
                            last_started=0,
                            min_version=1,
                            max_version=1,
                            min_status=200,
                            max_status=200,
                            request_ids="[]",
                            started_at="[]",
                            versions="[]",
                            statuses="[]",
                            durations_ms="[]",
                            lines="[]",
                        )
                    )
            finally:
                role_engine.dispose()

        _migrate(engine, "0016", down=True)
        with engine.connect() as conn:
            back = conn.execute(text("SELECT request_id, name, lines FROM invocation_logs ORDER BY id")).all()
            new = conn.execute(
                text("SELECT started_at, duration_ms FROM invocation_logs WHERE request_id = 'req-1'")
            ).all()
        # a block written since holds integer microseconds: rows get seconds and milliseconds back
        assert new == [(1_000_001.0, 0.25)]
        assert len(back) == len(rows) + (2 if postgres else 1)
        assert {r[0] for r in back} >= {r["rid"] for r in rows} and ("old-11", FN, "not json") in back
    finally:
        if postgres:
            with engine.begin() as conn:
                if conn.scalar(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}):
                    conn.execute(text(f"DROP OWNED BY {role}"))
                    conn.execute(text(f"DROP ROLE {role}"))
        engine.dispose()


def ids_of_engine(engine: Engine, **wanted: Any) -> list[str]:
    return [e["request_id"] for e in invocation_log.read(engine, "demo", FN, LogFilter(**wanted))[0]]
