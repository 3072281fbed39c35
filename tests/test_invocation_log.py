"""The durable invocation log's pure parts and its store, on both engines: writes, bounds (count and
age), filters and the follow cursor; the supervisor's writer never blocks and counts what it drops."""

from __future__ import annotations

import itertools
import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import Engine, event

from fnstage.cli import log_filters
from fnstage.cli.client import CliError
from fnstage.domain.errors import InvalidInput
from fnstage.runtime.invoker import InvocationLog, InvocationLogs
from fnstage.runtime.log_process import records_of
from fnstage.runtime.log_writer import LogSettings, LogSettingsError, LogWriter
from fnstage.service import Actor, Services
from fnstage.store import invocation_log
from fnstage.store.invocation_log import LogFilter, LogRecord, columns_of_records
from fnstage.store.store import Store


def _count_transactions(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The invocations in each transaction the log writer makes from now on, in order."""
    from fnstage.runtime import log_writer

    transactions: list[int] = []
    real_write = invocation_log.write_columns

    def counted(engine: Engine, batch: Any, runtime_id: Any = None) -> None:
        transactions.append(sum(len(columns.request_ids) for columns in batch))
        real_write(engine, batch, runtime_id)

    monkeypatch.setattr(log_writer.invocation_log, "write_columns", counted)
    return transactions


def record(
    n: int, *, name: str = "dev/user/me", version: int = 1, status: int = 200, at: float = 0.0
) -> LogRecord:
    return LogRecord(
        gateway="demo",
        name=name,
        version=version,
        request_id=f"req-{n}",
        started_us=round((at or 1_000_000.0 + n) * 1e6),
        status=status,
        duration_us=1500,
        lines=f'["line {n}"]',
        error="ValueError: boom\nTraceback ..." if status == 500 else None,
    )


@pytest.fixture
def demo(services: Services, actor: Actor) -> str:
    services.gateways.create(actor, "demo")
    return "demo"


def test_written_entries_read_back_newest_first_with_filters(store: Store, demo: str) -> None:
    records = [record(1), record(2, status=500), record(3, version=2), record(4, version=2, status=404)]
    invocation_log.write(store.engine, records)
    entries, cursor = invocation_log.read(store.engine, "demo", "dev/user/me", LogFilter())
    assert [e["request_id"] for e in entries] == ["req-4", "req-3", "req-2", "req-1"]
    assert cursor == entries[0]["id"]
    assert entries[2]["error"].startswith("ValueError") and entries[3]["lines"] == ["line 1"]

    def ids(**wanted: Any) -> list[str]:
        found, _ = invocation_log.read(store.engine, "demo", "dev/user/me", LogFilter(**wanted))
        return [e["request_id"] for e in found]

    assert ids(version=2) == ["req-4", "req-3"]
    assert ids(status="error") == ["req-2"] and ids(status=500) == ["req-2"]
    assert ids(status="4xx") == ["req-4"] and ids(status="ok") == ["req-3", "req-1"]
    assert ids(status="2xx") == ["req-3", "req-1"] and ids(status="3xx") == []
    assert ids(since=1_000_002.0, until=1_000_004.0) == ["req-3", "req-2"]
    assert ids(request_id="req-3") == ["req-3"]
    assert ids(limit=2) == ["req-4", "req-3"]
    # following: what came after a cursor, oldest first
    first, _ = invocation_log.read(store.engine, "demo", "dev/user/me", LogFilter(request_id="req-2"))
    assert ids(after=first[0]["id"]) == ["req-3", "req-4"]
    assert ids(after=cursor) == []


def test_entries_of_an_unknown_gateway_are_skipped_not_failed(store: Store, demo: str) -> None:
    stray = LogRecord("gone", "dev/x", 1, "r", 1_000_000, 200, 1000, "[]")
    invocation_log.write(store.engine, [stray, record(1)])
    assert [
        e["request_id"] for e in invocation_log.read(store.engine, "demo", "dev/user/me", LogFilter())[0]
    ] == ["req-1"]


def test_a_write_that_fails_stores_nothing_and_leaves_no_transaction_open(
    store: Store, demo: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch whose INSERT fails at its second block is rolled back whole (the first block is not
    kept), and the connection goes back to the pool usable: the next batch is written (SQLite's is
    written on the driver's own connection)."""
    real_block_row = invocation_log.block_row

    def short_row(gateway: str, name: str, *args: Any) -> tuple[Any, ...]:
        row = real_block_row(gateway, name, *args)
        return row[:-1] if name == "dev/other" else row  # one value short of the INSERT's

    monkeypatch.setattr(invocation_log, "block_row", short_row)
    other = LogRecord("demo", "dev/other", 1, "o", 1_000_000, 200, 1000, "[]")
    with pytest.raises(Exception):  # noqa: B017 - the driver's own error class differs by engine
        invocation_log.write(store.engine, [record(1), other])
    monkeypatch.setattr(invocation_log, "block_row", real_block_row)
    invocation_log.write(store.engine, [record(2)])
    found, _ = invocation_log.read(store.engine, "demo", "dev/user/me", LogFilter())
    assert [e["request_id"] for e in found] == ["req-2"]


def test_a_records_runtime_wins_over_the_batchs_and_records_of_fills_it_in(store: Store, demo: str) -> None:
    """The writer's records carry its runtime id (`records_of`) and go to the driver as they are;
    records without one get the batch's."""
    shipped = records_of(
        [["demo", "dev/user/me", [["r1", 1_000_000, 1, 200, 1, [], None, None]]]], "demo", "dev", "rt-a"
    )
    assert shipped[0].runtime_id == "rt-a"
    invocation_log.write(store.engine, [*shipped, record(2), record(3)._replace(runtime_id="rt-c")], "rt-b")
    entries, _ = invocation_log.read(store.engine, "demo", "dev/user/me", LogFilter())
    assert {e["request_id"]: e["runtime"] for e in entries} == {
        "r1": "rt-a",
        "req-2": "rt-b",
        "req-3": "rt-c",
    }
    invocation_log.write(store.engine, [record(4)])
    assert (
        invocation_log.read(store.engine, "demo", "dev/user/me", LogFilter(limit=1))[0][0]["runtime"] is None
    )


def test_prune_keeps_each_functions_newest_and_drops_the_old(store: Store, demo: str) -> None:
    now = 2_000_000.0
    for n in range(10):  # a write each: blocks of one entry, so the bounds are exact
        invocation_log.write(store.engine, [record(n, at=now - 100 + n)])
    invocation_log.write(store.engine, [record(n, name="dev/other", at=now - 100 + n) for n in range(3)])
    invocation_log.write(store.engine, [record(99, name="dev/old", at=now - 10_000)])
    dropped = invocation_log.prune(store.engine, [("demo", "dev/user/me")], keep=4, older_than=now - 5_000)
    assert dropped == 6 + 1  # six beyond the count, one past the age
    kept = invocation_log.read(store.engine, "demo", "dev/user/me", LogFilter())[0]
    assert [e["request_id"] for e in kept] == ["req-9", "req-8", "req-7", "req-6"]
    assert len(invocation_log.read(store.engine, "demo", "dev/other", LogFilter())[0]) == 3  # not touched
    assert invocation_log.read(store.engine, "demo", "dev/old", LogFilter())[0] == []


def test_prune_deletes_in_short_transactions(store: Store, demo: str) -> None:
    """A prune of many blocks commits every `chunk` blocks: on SQLite a save waits on the write lock
    for one chunk, not for the whole prune (one 100,000-row DELETE held a save 120 ms)."""
    now = 2_000_000.0
    for n in range(50):  # a write each: blocks of one entry
        invocation_log.write(store.engine, [record(n, at=now - 100 + n)])
    for n in range(25):
        invocation_log.write(store.engine, [record(n, name="dev/old", at=now - 10_000)])
    deleted_per_statement: list[int] = []

    def count(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("DELETE"):
            deleted_per_statement.append(cursor.rowcount)

    event.listen(store.engine, "after_cursor_execute", count)
    try:
        dropped = invocation_log.prune(
            store.engine, [("demo", "dev/user/me")], keep=5, older_than=now - 5_000, chunk=10, pause_s=0
        )
    finally:
        event.remove(store.engine, "after_cursor_execute", count)
    assert dropped == 45 + 25
    assert sum(deleted_per_statement) == 70 and max(deleted_per_statement) <= 10
    kept = invocation_log.read(store.engine, "demo", "dev/user/me", LogFilter())[0]
    assert [e["request_id"] for e in kept] == [f"req-{n}" for n in range(49, 44, -1)]


def test_the_writer_writes_batches_and_prunes(store: Store, demo: str) -> None:
    """Four batches of five (a block each), a prune after each write (a clock 10 s on at every read)."""
    ticks = itertools.count()
    start = time.time()
    writer = LogWriter(lambda: store.engine, LogSettings(keep=5), clock=lambda: start + 10 * next(ticks))
    writer.start()
    for batch in range(4):
        writer.offer(columns_of_records([record(batch * 5 + n, at=start) for n in range(5)]))
        deadline = time.monotonic() + 10
        while writer.stats()["written"] < 5 * (batch + 1) and time.monotonic() < deadline:
            time.sleep(0.05)
    writer.stop()
    assert writer.stats()["written"] == 20 and writer.stats()["pruned"] == 15
    assert len(invocation_log.read(store.engine, "demo", "dev/user/me", LogFilter())[0]) == 5


def test_the_writer_writes_the_shipments_of_a_tick_in_one_transaction(
    store: Store, demo: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cell's shipment arrives as several messages (about 270 invocations each): the writer writes
    what a tick (FLUSH_INTERVAL_S) gathered together, not each message as it comes, since a
    transaction of a few hundred rows costs about twice as much a row as one of thousands."""
    from fnstage.runtime import log_writer

    transactions = _count_transactions(monkeypatch)
    monkeypatch.setattr(log_writer, "FLUSH_INTERVAL_S", 0.5)
    writer = LogWriter(lambda: store.engine, LogSettings())
    writer.start()
    for message in range(4):  # the messages of one shipment, a few milliseconds apart
        writer.offer(columns_of_records([record(message * 100 + n) for n in range(100)]))
        time.sleep(0.02)
    deadline = time.monotonic() + 10
    while writer.stats()["written"] < 400 and time.monotonic() < deadline:
        time.sleep(0.02)
    writer.stop()
    assert writer.stats()["written"] == 400 and transactions == [400]


def test_the_writer_does_not_wait_for_its_tick_when_a_batch_is_queued(store: Store, demo: str) -> None:
    from fnstage.runtime import log_writer

    writer = LogWriter(lambda: store.engine, LogSettings())
    monkey = pytest.MonkeyPatch()
    monkey.setattr(log_writer, "FLUSH_INTERVAL_S", 30.0)
    try:
        writer.start()
        writer.offer(columns_of_records([record(n) for n in range(log_writer.BATCH)]))
        deadline = time.monotonic() + 10
        while writer.stats()["written"] < log_writer.BATCH and time.monotonic() < deadline:
            time.sleep(0.02)
        assert writer.stats()["written"] == log_writer.BATCH
    finally:
        writer.stop()
        monkey.undo()


class _BrokenEngine:
    """An engine whose every connection fails, as a stopped PostgreSQL does."""

    dialect = SimpleNamespace(name="postgresql")  # `write_columns` asks which store it writes to

    def connect(self) -> Any:
        raise ConnectionRefusedError("connection refused")

    def dispose(self) -> None:
        pass


def test_a_stopped_store_drops_counts_and_never_blocks_the_caller() -> None:
    writer = LogWriter(lambda: _BrokenEngine(), LogSettings(queue=100))  # type: ignore[arg-type,return-value]
    writer.start()
    started = time.perf_counter()
    for n in range(50):
        writer.offer(
            columns_of_records([record(n * 10 + i) for i in range(10)]), dropped_by_cell=1 if n == 0 else 0
        )
    offered_in = time.perf_counter() - started
    deadline = time.monotonic() + 10
    while writer.stats()["waiting"] and time.monotonic() < deadline:
        time.sleep(0.05)
    writer.stop(timeout=3)
    stats = writer.stats()
    assert offered_in < 0.1  # 500 offers: queueing only
    dropped = stats["dropped"]
    assert dropped["store_failed"] + dropped["queue_full"] == 500 and dropped["queue_full"] >= 400
    assert dropped["cell_outbox_full"] == 1 and stats["written"] == 0
    assert "ConnectionRefusedError" in stats["last_error"]


def test_a_slow_store_fills_the_queue_and_the_rest_is_dropped(store: Store, demo: str) -> None:
    gate = threading.Event()
    connecting = threading.Event()  # the writer took the first record off its queue and waits on the store

    class SlowEngine:
        def __init__(self, engine: Engine) -> None:
            self.engine = engine

        def connect(self) -> Any:
            connecting.set()
            gate.wait(10)
            return self.engine.connect()

        def __getattr__(self, name: str) -> Any:
            return getattr(self.engine, name)

        def dispose(self) -> None:
            pass

    writer = LogWriter(lambda: SlowEngine(store.engine), LogSettings(queue=30))  # type: ignore[arg-type,return-value]
    writer.start()
    writer.offer(columns_of_records([record(0)]))
    assert connecting.wait(10)  # the writer now waits on the store with that one
    writer.offer(columns_of_records([record(n) for n in range(1, 51)]))
    assert writer.stats()["dropped"]["queue_full"] == 20
    gate.set()
    writer.stop()
    assert writer.stats()["written"] == 31


def test_log_settings_from_the_environment_and_their_errors() -> None:
    assert LogSettings.from_env({}) == LogSettings()
    s = LogSettings.from_env({"FNSTAGE_LOGS": "off", "FNSTAGE_LOG_KEEP": "20", "FNSTAGE_LOG_DAYS": "0.5"})
    assert (s.enabled, s.keep, s.max_age_s) == (False, 20, 43200.0)
    with pytest.raises(LogSettingsError, match="FNSTAGE_LOG_KEEP must be a number from 1 to"):
        LogSettings.from_env({"FNSTAGE_LOG_KEEP": "0"})
    with pytest.raises(LogSettingsError, match="FNSTAGE_LOG_DAYS must be a number"):
        LogSettings.from_env({"FNSTAGE_LOG_DAYS": "a week"})
    with pytest.raises(LogSettingsError, match="FNSTAGE_LOGS must be on or off"):
        LogSettings.from_env({"FNSTAGE_LOGS": "maybe"})


def test_the_outbox_is_bounded_and_counts_what_it_drops() -> None:
    logs = InvocationLogs(outbox=3)
    for n in range(5):
        logs.record("demo", "dev/a", InvocationLog(f"r{n}", 1.0, 1, 200, 1.0, []))
    (_, _, request_ids, *_), dropped = logs.take_outbox()
    assert request_ids == ["r0", "r1", "r2"] and dropped == 2
    assert logs.take_outbox() == (([],) * 10, 0)
    assert len(logs.recent("demo", "dev/a")) == 5  # the in-memory ring is as before
    off = InvocationLogs()
    off.record("demo", "dev/a", InvocationLog("r", 1.0, 1, 200, 1.0, []))
    assert off.take_outbox() == (([],) * 10, 0)


def test_a_cell_is_believed_only_for_its_own_gateway_and_environment(tmp_path: Any) -> None:
    def _log_records(groups: Any, spec: None) -> list[LogRecord]:
        return records_of(groups, "demo", "dev")

    spec = None
    row = ["r1", 5_000_000, 3, 200, 1500, ["a line"], None, None]
    (mine,) = _log_records([["demo", "dev/a", [row]]], spec)
    assert mine.lines == '["a line"]' and mine.version == 3
    assert (
        mine.started_us == 5_000_000 and mine.duration_us == 1500
    )  # integer microseconds, as cells send them
    (huge,) = _log_records([["demo", "dev/a", [[*row[:5], ["x" * 2_000_000], None, None]]]], spec)
    assert huge.lines == '["(cut: 2000004 characters of lines)"]'
    assert _log_records([["other", "dev/a", [row]], ["demo", "prod/a", [row]]], spec) == []
    with pytest.raises(TypeError):
        _log_records([["demo", "dev/a", [[*row[:5], '["text, not a list"]', None, None]]]], spec)
    with pytest.raises(ValueError):
        _log_records([["demo", "dev/a", [row[:5]]]], spec)
    with pytest.raises(ValueError):
        _log_records([["demo", "dev/a", [["r", "soon", *row[2:]]]]], spec)


def test_lines_a_cell_wrote_are_read_defensively() -> None:
    assert invocation_log.read_lines('["a", "b"]') == ["a", "b"]
    assert invocation_log.read_lines('["a", {"b": 1}]') == ["a", '{"b": 1}']
    assert invocation_log.read_lines("[1") == ["(these lines could not be read: not JSON)"]
    assert invocation_log.read_lines('{"a": 1}') == ["(these lines could not be read: not a list)"]


def test_since_and_status_as_typed() -> None:
    assert log_filters.moment("--since", "10m", now=1000.0) == 400.0
    assert log_filters.moment("--since", "1.5h", now=10_000.0) == 10_000.0 - 5400
    assert log_filters.moment("--since", "2026-11-30T18:00") == log_filters.moment(
        "--since", "2026-11-30T18:00Z"
    )
    with pytest.raises(CliError, match="neither a duration"):
        log_filters.moment("--since", "yesterday")
    assert log_filters.status("5XX") == "5xx" and log_filters.status("404") == "404"
    assert (
        tuple(invocation_log.STATUS_CLASSES) == log_filters.STATUS_CLASSES
    )  # the CLI keeps a copy of the names
    log_filters.check_window("2h", 100.0, "1h", 200.0)  # a window that ends after it starts
    with pytest.raises(CliError, match="--until '2h' is not later than --since '1h'"):
        log_filters.check_window("1h", 200.0, "2h", 100.0)
    with pytest.raises(CliError, match="not an HTTP status"):
        log_filters.status("700")


def test_charts_are_computed_per_version_and_bucket_with_releases(
    services: Services, actor: Actor, demo: str, store: Store
) -> None:
    from fnstage.service.invocation_stats import InvocationStats, percentile
    from support.functions import hello_files

    services.deployments.save(actor, demo, "dev/user/me", hello_files())
    services.deployments.save(actor, demo, "dev/user/me", hello_files("Hi"))
    now = time.time()
    start = (int(now // 60) + 1) * 60 - 3600  # the hour's first bucket
    records = [record(n, version=1, at=start + 5, status=200) for n in range(1, 11)]
    records = [r._replace(duration_us=1000 * n) for n, r in enumerate(records, 1)]  # 1..10 ms
    records += [record(20, version=2, at=start + 65, status=500), record(21, version=2, at=start + 70)]
    records += [record(30, version=2, at=start - 10)]  # before the window
    invocation_log.write(store.engine, records)
    chart = InvocationStats(store, services.queries, clock=lambda: now).chart("demo", "dev/user/me", "hour")
    assert chart["bucket_s"] == 60 and len(chart["times"]) == 60 and chart["times"][0] == start
    v1, v2 = chart["versions"]["1"], chart["versions"]["2"]
    assert v1["requests"][0] == 10 and sum(v1["requests"]) == 10 and v1["errors"][0] == 0
    assert (v1["p50_ms"][0], v1["p95_ms"][0]) == (5.0, 10.0) and v1["p50_ms"][1] is None
    assert v2["requests"][1] == 2 and v2["errors"][1] == 1 and sum(v2["requests"]) == 2
    assert [(r["version"], r["kind"]) for r in chart["releases"]] == [(1, "create"), (2, "save")]
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0 and percentile([7.0], 95) == 7.0
    with pytest.raises(InvalidInput, match="window 'week' is not one of: hour, day"):
        InvocationStats(store, services.queries).chart("demo", "dev/user/me", "week")


def test_the_writer_batches_whole_shipments_and_writes_every_invocation_in_order(
    store: Store, demo: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer queues a shipment's columns as they came; a batch takes whole shipments until it
    holds BATCH invocations (a cut shipment's columns lose the texts they came with), cutting only a
    shipment larger than a batch (the rest is first in the next), so a transaction stays bounded
    (under 2 * BATCH) and every invocation is written once, in order."""
    from fnstage.runtime import log_writer

    transactions = _count_transactions(monkeypatch)
    monkeypatch.setattr(log_writer, "BATCH", 1000)
    writer = LogWriter(lambda: store.engine, LogSettings(keep=10_000))
    now = time.time()  # within the age bound, which the writer's prune applies
    sizes = [700, 700, 700, 2500, 300]
    for shipment, size in enumerate(sizes):
        first = sum(sizes[:shipment])
        writer.offer(columns_of_records([record(first + n, at=now) for n in range(size)]))
    writer.start()
    writer.stop()
    assert transactions == [1400, 1000, 1000, 1000, 500] and writer.stats()["written"] == sum(sizes)
    found, _ = invocation_log.read(store.engine, "demo", "dev/user/me", LogFilter(limit=6000))
    assert [e["request_id"] for e in reversed(found)] == [f"req-{n}" for n in range(sum(sizes))]


@pytest.mark.parametrize(
    ("wanted", "matching"),
    [
        ("ok", [101, 200, 204, 299, 302, 399]),
        ("2xx", [200, 204, 299]),
        ("3xx", [302, 399]),
        ("4xx", [400, 404, 499]),
        ("5xx", [500, 503, 599]),
        ("error", [500, 503, 599]),
        (404, [404]),
    ],
)
def test_a_status_class_matches_its_statuses_only(wanted: int | str, matching: list[int]) -> None:
    """The durable log's blocks, its entries and a runtime's memory (`FNSTAGE_LOGS=off`) all use it."""
    statuses = [101, 200, 204, 299, 302, 399, 400, 404, 499, 500, 503, 599]
    assert [s for s in statuses if invocation_log.status_test(wanted)(s)] == matching
