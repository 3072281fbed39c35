"""Cells write their log shipments straight to the log writer process, each over a socket of its own
(`runtime.log_process`): the writer believes a shipment only for the gateway and environment the
supervisor wired that socket to, whatever the shipment says; a writer killed mid-run is started again
and wired to every cell's socket again."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fnstage.runtime.log_process import LogProcess, read_shipment, records_of
from fnstage.runtime.log_writer import LogSettings
from fnstage.service import Actor, Services
from fnstage.store import invocation_log
from fnstage.store.engine import sqlite_url
from fnstage.store.invocation_log import LogFilter
from fnstage.store.store import Store

pytestmark = pytest.mark.timeout(60)


def _messages(sock: socket.socket) -> list[Any]:
    """Every message waiting on `sock`, decoded (the cell's shipments, as the writer reads them)."""
    sock.setblocking(False)
    messages = []
    with pytest.raises(BlockingIOError):
        while True:
            messages.append(read_shipment(sock.recv(1 << 22)))
    return messages


def open_store(tmp_path: Path) -> Store:
    """A SQLite store with gateways `demo` and `other` (rows of an unknown gateway are not kept)."""
    store = Store.open(sqlite_url(tmp_path))
    with store.write() as tx:
        user = tx.create_user("ada", is_admin=True)
    services = Services.create(store)
    for gateway in ("demo", "other"):
        services.gateways.create(Actor(user.id, user.name, True), gateway)
    return store


def shipment(gateway: str, name: str, *request_ids: str) -> bytes:
    rows = [[rid, int(time.time() * 1e6), 1, 200, 1500, ["a line"], None, None] for rid in request_ids]
    return json.dumps({"n": len(rows), "groups": [[gateway, name, rows]], "dropped": 0}).encode()


def request_ids(store: Store, gateway: str, name: str) -> set[str]:
    entries, _ = invocation_log.read(store.engine, gateway, name, LogFilter())
    return {e["request_id"] for e in entries}


def eventually(check: Any, timeout: float = 30.0) -> bool:  # a writer starts slowly under load
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def test_a_shipment_is_believed_only_for_the_socket_it_came_from(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    writer = LogProcess(sqlite_url(tmp_path), LogSettings())
    writer.start()
    try:
        demo, other = writer.pipe("demo", "dev"), writer.pipe("other", "dev")
        # the demo cell writes rows of another gateway, and of its own gateway's prod, into its socket
        demo.cell_end.send(shipment("other", "dev/a", "forged-other"))
        demo.cell_end.send(shipment("demo", "prod/a", "forged-prod"))
        demo.cell_end.send(shipment("demo", "dev/a", "demo-own"))
        other.cell_end.send(shipment("other", "dev/a", "other-own"))
        assert eventually(lambda: writer.stats().get("written") == 2), writer.stats()
        assert request_ids(store, "demo", "dev/a") == {"demo-own"}
        assert request_ids(store, "other", "dev/a") == {"other-own"}
        assert request_ids(store, "demo", "prod/a") == set()
        # what a socket's owner does not fit is ignored, and the socket is still read after it
        demo.cell_end.send(b"not json")
        demo.cell_end.send(shipment("demo", "dev/a", "after"))
        assert eventually(lambda: "after" in request_ids(store, "demo", "dev/a"))
    finally:
        writer.stop()
        store.close()


def _writer_pid(writer: LogProcess) -> int:
    process = writer._process
    assert process is not None
    return process.pid


def test_a_killed_writer_is_started_again_and_rewired_to_every_cell(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    writer = LogProcess(sqlite_url(tmp_path), LogSettings())
    writer.start()
    try:
        demo = writer.pipe("demo", "dev")
        demo.cell_end.send(shipment("demo", "dev/a", "before"))
        assert eventually(lambda: writer.stats().get("written") == 1)
        first = _writer_pid(writer)
        os.kill(first, signal.SIGKILL)
        # sent while no writer runs: it waits in the socket, which the next writer reads
        demo.cell_end.send(shipment("demo", "dev/a", "meanwhile"))
        assert eventually(lambda: _writer_pid(writer) != first)
        demo.cell_end.send(shipment("demo", "dev/a", "after"))
        assert eventually(lambda: request_ids(store, "demo", "dev/a") == {"before", "meanwhile", "after"})
        # the counts go on from the dead writer's: nothing written is forgotten in status
        assert eventually(lambda: writer.stats().get("written") == 3), writer.stats()
        assert writer.stats()["restarts"] == 1
        # a cell that ends: its socket is closed, the writer forgets it
        demo.close()
        assert demo.cell_end.fileno() == -1
    finally:
        writer.stop()
        store.close()


def test_a_cell_socket_that_is_full_drops_and_the_cell_counts_it() -> None:
    """The cell's end never blocks a request: its sends time out and what was not sent is counted."""
    from fnstage.runtime.cell import LogSender

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sender = LogSender(theirs, timeout_s=0.05)
    big = [["demo", "dev/a", [["r", 1_000_000, 1, 200, 1000, ["x" * 10_000], None, None]]]]
    sent = failed = 0
    while failed < 3:  # nobody reads `ours`: the socket fills, and sends give up after their time-out
        if sender.send(big, 1, 0):
            sent += 1
        else:
            failed += 1
        assert sent < 10_000
    assert sender.unsent == 3
    message = json.loads(ours.recv(1 << 20))
    assert message["n"] == 1 and message["unsent"] == 0
    while True:  # room again: the next shipment says how many were not sent
        try:
            ours.setblocking(False)
            ours.recv(1 << 20)
        except BlockingIOError:
            break
    assert sender.send(big, 1, 0)
    ours.setblocking(True)
    assert json.loads(ours.recv(1 << 20))["unsent"] == 3 and sender.unsent == 0


def test_a_cells_rows_reach_the_writer_as_they_were_served_in_small_messages() -> None:
    """`SupervisorLink._ship`'s rows (integer microseconds, lines as a list) read back by `records_of`
    as the invocations were; a shipment is cut into messages of about LOG_MESSAGE_BYTES, and lines too
    long for a message are cut."""
    from fnstage.runtime.cell import LOG_MESSAGE_BYTES, LOG_ROW_LINES_CHARS, LogSender, SupervisorLink
    from fnstage.runtime.invoker import InvocationLog
    from fnstage.runtime.log_process import records_of

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    link = SupervisorLink.__new__(SupervisorLink)  # only its shipping: no channel, no registry
    link.log_sender = LogSender(theirs)
    served = [
        ("demo", "dev/a", InvocationLog(f"r{n}", 1_764_000_000.123456, 3, 200, 12.345, [f"line {n}"]))
        for n in range(2000)
    ]
    long_lines = ["y" * 4000] * (LOG_ROW_LINES_CHARS // 4000 + 1)
    served.append(("demo", "dev/a", InvocationLog("long", 1.0, 3, 500, 1.0, long_lines, "ValueError: x")))
    link._ship(served, 7)
    ours.setblocking(False)
    messages = []
    with pytest.raises(BlockingIOError):
        while True:
            messages.append(ours.recv(1 << 22))
    assert len(messages) > 2 and max(map(len, messages)) < 2 * LOG_MESSAGE_BYTES
    shipped = [read_shipment(m) for m in messages]
    assert sum(m["dropped"] for m in shipped) == 7 and sum(m["n"] for m in shipped) == 2001
    records = [r for m in shipped for r in records_of(m["groups"], "demo", "dev")]
    assert [r.request_id for r in records] == [f"r{n}" for n in range(2000)] + ["long"]
    first = records[0]
    assert (
        abs(first.started_us / 1e6 - 1_764_000_000.123456) < 2e-6
        and abs(first.duration_us / 1000 - 12.345) < 2e-3
    )
    assert first.lines == '["line 0"]' and first.version == 3 and first.error is None
    assert records[-1].lines.startswith('["(cut: ') and records[-1].error == "ValueError: x"


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.text(),  # every character, quotes, backslashes, controls and lone surrogates among them
            st.text(alphabet='ab "\\\n\x00\x1f\x7f\u00e9\ud800'),
            st.integers(),
            st.none(),
            st.lists(st.text(max_size=3), max_size=2),
        ),
        max_size=5,
    )
)
def test_the_writers_text_of_a_rows_lines_is_the_json_encoders_whatever_the_cell_sent(
    lines: list[Any],
) -> None:
    """`records_of` keeps `lines` as the JSON encoder wrote it (readers parse it back); its shortcut for
    strings that need no escape must give the very same text for anything a cell could send."""
    from fnstage.runtime.log_process import records_of

    expected = json.dumps(lines, ensure_ascii=False, separators=(",", ":"))
    (record,) = records_of([["demo", "dev/a", [["r", 1, 1, 200, 1, lines, None, None]]]], "demo", "dev")
    assert record.lines == expected
    assert json.loads(record.lines) == lines


def test_the_writer_imports_the_same_fnstage_as_its_runtime(tmp_path: Path, monkeypatch: Any) -> None:
    """A runtime started with PYTHONPATH (another checkout's src) starts its writer with it too: without
    it the writer imported whichever fnstage the interpreter had installed (its protocol may differ)."""
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[1] / "src"))
    writer = LogProcess(sqlite_url(tmp_path), LogSettings())
    writer.start()
    try:
        wanted = f"PYTHONPATH={os.environ['PYTHONPATH']}".encode()

        def environ() -> list[bytes]:  # read empty once under load (cause not found): read again
            try:
                return Path(f"/proc/{_writer_pid(writer)}/environ").read_bytes().split(b"\0")
            except OSError:  # that pid ended between the two reads
                return []

        assert eventually(lambda: wanted in environ(), 10), (environ(), writer.restarts)
    finally:
        writer.stop()


def test_a_shipment_carries_only_the_newest_keep_of_each_function_and_counts_the_rest() -> None:
    """What the count bound would prune before anyone could read it is never encoded nor written: a
    cell ships the newest `log_keep` invocations of each function of a shipment, and the writer counts
    the others as pruned."""
    from fnstage.runtime.cell import LogSender, SupervisorLink
    from fnstage.runtime.invoker import InvocationLog
    from fnstage.runtime.log_process import columns_of, records_of
    from fnstage.runtime.log_writer import LogWriter

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    link = SupervisorLink.__new__(SupervisorLink)  # only its shipping: no channel, no registry
    link.log_sender = LogSender(theirs)
    link.log_keep = 1000
    served = []
    for n in range(2500):  # oldest first, as the outbox holds them; another function in between
        served.append(("demo", "dev/a", InvocationLog(f"a{n}", 1.0, 1, 200, 1.0, [])))
        if n % 250 == 0:
            served.append(("demo", "dev/b", InvocationLog(f"b{n}", 1.0, 1, 200, 1.0, [])))
    link._ship(served, 0)
    shipped = _messages(ours)
    records = [r for m in shipped for r in records_of(m["groups"], "demo", "dev")]
    assert [r.request_id for r in records if r.name == "dev/a"] == [f"a{n}" for n in range(1500, 2500)]
    assert [r.request_id for r in records if r.name == "dev/b"] == [f"b{n}" for n in range(0, 2500, 250)]
    assert sum(m.get("pruned", 0) for m in shipped) == 1500
    writer = LogWriter(lambda: pytest.fail("never started: no engine"), LogSettings(keep=1000))
    for message in shipped:
        writer.offer(columns_of(message["groups"], "demo", "dev"), 0, 0, message.get("pruned", 0))
    assert writer.stats()["pruned"] == 1500 and writer.stats()["waiting"] == 1010


def test_quiet_invocations_go_as_columns_in_the_messages_rows_would_make() -> None:
    """Runs of invocations that logged nothing, failed not and ran for no trigger go as columns
    (`SupervisorLink._ship`, without a Python step each); the writer reads back the same invocations,
    in the same messages, as the row-by-row rule makes: in the order served, a message sent once its
    rows count LOG_MESSAGE_BYTES (LOG_ROW_BYTES a row, plus its lines and error), a large row alone."""
    from fnstage.runtime.cell import LOG_MESSAGE_BYTES, LOG_ROW_BYTES, LogSender, SupervisorLink
    from fnstage.runtime.invoker import NO_LINES
    from fnstage.runtime.log_process import records_of

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    link = SupervisorLink.__new__(SupervisorLink)  # only its shipping: no channel, no registry
    link.log_sender = LogSender(theirs)
    link.log_keep = 0
    served: list[tuple[str, str, tuple[Any, ...]]] = []
    for n in range(1500):
        name = "dev/a" if (n // 200) % 3 else "dev/b"  # runs of one function, then of another
        # runs 0-199, 800-1199 and 1400-1499 go (partly) row by row; the others are quiet
        lines: Any = [f"line {n}"] if n in (5, 1000) else (NO_LINES if n % 2 else [])
        error = "ValueError: x" if n == 7 else None
        big = ["z" * 3000] * 12 if n == 900 else None  # a row larger than a message: it goes alone
        trigger = "nightly" if n == 1450 else None
        version = 3 if n < 700 else 4  # one message's column has both
        status = 500 if error else (404 if n % 97 == 0 else 200)
        row = (f"r{n}", 1_764_000_000 + n / 7, version, status, n / 3, big or lines, error, trigger)
        served.append(("demo", name, row))
    link._ship(served, 4)
    got = _messages(ours)
    assert any(type(g[2]) is dict for m in got for g in m["groups"])  # columns were sent
    assert any(type(g[2]) is list for m in got for g in m["groups"])  # and rows

    expected: list[tuple[int, list[str]]] = []  # each message: (count, request ids in order)
    ids: list[str] = []
    size, dropped = 0, 4
    for _, _, e in served:
        row_size = LOG_ROW_BYTES + sum(len(line) + 4 for line in e[5]) + len(e[6] or "")
        if row_size > LOG_MESSAGE_BYTES and ids:
            expected.append((dropped, ids))
            ids, size, dropped = [], 0, 0
        ids.append(e[0])
        size += row_size
        if size >= LOG_MESSAGE_BYTES:
            expected.append((dropped, ids))
            ids, size, dropped = [], 0, 0
    if ids:
        expected.append((dropped, ids))
    assert len(expected) > 5
    records = [records_of(m["groups"], "demo", "dev") for m in got]
    assert [(m["dropped"], m["n"]) for m in got] == [(d, len(i)) for d, i in expected]
    by_function = [(r.name, r.request_id) for message in records for r in message]
    assert [(name, e[0]) for _, name, e in served] == sorted(by_function, key=lambda f: int(f[1][1:]))
    for name in ("dev/a", "dev/b"):  # each function's in the order served
        assert [i for n, i in by_function if n == name] == [e[0] for _, f, e in served if f == name]
    in_order = sorted((r for message in records for r in message), key=lambda r: int(r.request_id[1:]))
    for record, (_, name, e) in zip(in_order, served, strict=True):
        kept = (record.name, record.version, record.status, record.error, record.trigger)
        assert kept == (name, e[2], e[3], e[6], e[7])
        assert abs(record.started_us / 1e6 - e[1]) < 2e-6 and abs(record.duration_us / 1000 - e[4]) < 2e-3
        assert record.lines == json.dumps(list(e[5]), separators=(",", ":"))


@pytest.mark.parametrize("lines_of", [lambda n: [f"line {n} " * (n % 9)], lambda n: ["a", f"{n}" * (n % 5)]])
def test_rows_that_each_logged_as_many_lines_go_as_columns_in_the_messages_rows_would_make(
    lines_of: Any,
) -> None:
    """A run whose rows each logged one line (`cell._Ends`: the overhead added when asked for), or as
    many: columns only, cut into the messages the row rule makes (LOG_ROW_BYTES a row, its lines'
    characters, 4 a line), each row's lines read back as logged."""
    from fnstage.runtime.cell import LOG_MESSAGE_BYTES, LOG_ROW_BYTES, LogSender, SupervisorLink
    from fnstage.runtime.log_process import records_of

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    link = SupervisorLink.__new__(SupervisorLink)  # only its shipping: no channel, no registry
    link.log_sender = LogSender(theirs)
    link.log_keep = 0
    served = [
        ("demo", "dev/a", (f"r{n}", 1_764_000_000 + n / 7, 1, 200, n / 3, lines_of(n), None, None))
        for n in range(3000)
    ]
    link._ship(served, 0)
    got = _messages(ours)
    assert all(type(g[2]) is dict for m in got for g in m["groups"])  # columns only
    expected, size, count = [], 0, 0
    for _, _, e in served:
        size += LOG_ROW_BYTES + sum(len(line) + 4 for line in e[5])
        count += 1
        if size >= LOG_MESSAGE_BYTES:
            expected.append(count)
            size, count = 0, 0
    expected.append(count)
    assert len(expected) > 5 and [m["n"] for m in got] == expected
    records = [r for m in got for r in records_of(m["groups"], "demo", "dev")]
    assert [r.request_id for r in records] == [e[0] for _, _, e in served]
    assert [r.lines for r in records] == [json.dumps(e[5], separators=(",", ":")) for _, _, e in served]


def test_columns_that_do_not_fit_are_ignored_like_a_wrong_row() -> None:
    from fnstage.runtime.log_process import records_of

    good = {"id": ["a", "b"], "t": [1_000_000, 2_000_000], "d": [1000, 2000], "v": 3, "s": [200, 404]}
    [a, b] = records_of([["demo", "dev/x", good]], "demo", "dev")
    assert (a.request_id, a.started_us, a.duration_us, a.version, a.status) == ("a", 1_000_000, 1000, 3, 200)
    assert a.lines == "[]" and a.error is None and a.trigger is None
    assert (b.request_id, b.status, b.version) == ("b", 404, 3)
    for wrong in ({**good, "t": [1]}, {**good, "s": [200]}, {**good, "v": "3"}, {**good, "id": "ab"}):
        with pytest.raises((TypeError, ValueError)):
            records_of([["demo", "dev/x", wrong]], "demo", "dev")
    assert records_of([["other", "dev/x", good]], "demo", "dev") == []  # another gateway's: dropped
    # the writing runtime's id goes into quiet records as into rows (the store writes them as they are)
    rows = [["r", 1, 3, 200, 1, [], None, None]]
    both = records_of([["demo", "dev/x", good], ["demo", "dev/y", rows]], "demo", "dev", "rt-1")
    assert [r.runtime_id for r in both] == ["rt-1", "rt-1", "rt-1"]
    assert all(type(r) is type(both[-1]) and len(r) == len(both[-1]) for r in both)


def test_a_time_no_float_holds_is_ignored_like_a_wrong_row() -> None:
    """Records keep a cell's integer microseconds; one past any float would otherwise reach the store
    and fail the write of the whole batch it is in (a block's first and last start are floats)."""
    from fnstage.runtime.log_process import records_of

    huge = 10**400
    for wrong in (
        [["demo", "dev/x", [["r", huge, 1, 200, 1, [], None, None]]]],
        [["demo", "dev/x", [["r", 1, 1, 200, -huge, [], None, None]]]],
        [["demo", "dev/x", {"id": ["a"], "t": [huge], "d": [1], "v": 1, "s": 200}]],
    ):
        with pytest.raises(OverflowError):
            records_of(wrong, "demo", "dev")


_FIELD = st.one_of(st.none(), st.integers(-5, 5), st.text(max_size=70))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            _FIELD,
            st.lists(st.one_of(st.text(max_size=3), st.integers(0, 9)), max_size=3),
            _FIELD,
            _FIELD,
        ),
        min_size=1,
        max_size=6,
    )
)
def test_a_groups_rows_become_the_records_each_row_alone_would(rows: list[Any]) -> None:
    """`records_of` converts a group column by column, with shortcuts for the common columns; each
    record must still be what its row alone gives: fields as text cut to their sizes, None kept for
    an error or trigger, lines as the JSON encoder writes them."""
    from fnstage.runtime.log_process import records_of

    shipped = [
        [rid, 10 + i, 2, 200 + i, 5 * i, lines, error, trigger]
        for i, (rid, lines, error, trigger) in enumerate(rows)
    ]
    records = records_of([["demo", "dev/a", shipped]], "demo", "dev", "rt")
    assert [tuple(r) for r in records] == [
        (
            "demo",
            "dev/a",
            2,
            str(rid)[:64],
            10 + i,
            200 + i,
            5 * i,
            json.dumps(lines, ensure_ascii=False, separators=(",", ":")),
            None if error is None else str(error)[:20_000],
            None if trigger is None else str(trigger)[:64],
            "rt",
        )
        for i, (rid, lines, error, trigger) in enumerate(rows)
    ]
    assert [r.lines for r in records] == [
        r.lines for row in shipped for r in records_of([["demo", "dev/a", [row]]], "demo", "dev")
    ]


def test_a_wrong_row_makes_its_shipment_ignored_wherever_it_is_in_its_group() -> None:
    """Rows are converted column by column: a wrong one among good ones still raises (the reader then
    ignores the shipment), and an empty group is nothing."""
    from fnstage.runtime.log_process import records_of

    good = ["r", 1, 1, 200, 1, ["x"], None, None]
    for wrong in (
        ["r", 1, 1, 200, 1, ["x"], None],  # another length
        "rowrowro",  # not a row (eight characters)
        7,
        ["r", 1, 1, 200, 1, "x", None, None],  # lines not a list
        ["r", 1, "one", 200, 1, ["x"], None, None],
        ["r", 1, 1, None, 1, ["x"], None, None],
        ["r", 1.5j, 1, 200, 1, ["x"], None, None],
    ):
        with pytest.raises((TypeError, ValueError)):
            records_of([["demo", "dev/x", [good, wrong, good]]], "demo", "dev")
    assert records_of([["demo", "dev/x", []], ["demo", "dev/y", [good]]], "demo", "dev")[0].name == "dev/y"
    for not_rows in (7, None):
        with pytest.raises(TypeError):
            records_of([["demo", "dev/x", not_rows]], "demo", "dev")


def test_the_writers_engine_comes_with_everything_before_it_frozen(tmp_path: Path) -> None:
    """Full collections in the writer process skip what lives as long as it (imports, the engine)."""
    import gc

    from fnstage.runtime.log_process import frozen_after
    from fnstage.store.engine import make_engine, sqlite_url

    gc.unfreeze()
    try:
        engine = frozen_after(make_engine(sqlite_url(tmp_path)))
        assert gc.get_freeze_count() > 1000
        engine.dispose()
    finally:
        gc.unfreeze()


def test_invocations_that_logged_lines_go_as_columns_and_read_back_as_they_were_logged() -> None:
    """A run that logged lines (and failed not, ran for no trigger) goes as columns too, its lines a
    column of lists: no Python step a row in the cell. Lines that are not all strings, or a row too
    large for a message, still go row by row."""
    from fnstage.runtime.cell import LOG_MESSAGE_BYTES, LogSender, SupervisorLink
    from fnstage.runtime.invoker import NO_LINES, InvocationLog
    from fnstage.runtime.log_process import records_of

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    link = SupervisorLink.__new__(SupervisorLink)  # only its shipping: no channel, no registry
    link.log_sender = LogSender(theirs)
    link.log_keep = 0
    logged: list[Any] = [[f"line {n}"] if n % 3 else NO_LINES for n in range(600)]
    logged[4] = ['a "quoted" \\ line', "\u00e9\n"]  # escapes: the writer's slow path, same text
    served = [
        ("demo", "dev/a", InvocationLog(f"a{n}", 1.0 + n, 1, 200, 1.0, lines))
        for n, lines in enumerate(logged)
    ]
    served.append(("demo", "dev/b", InvocationLog("b0", 2.0, 1, 200, 1.0, ["x", 7])))  # not all strings
    served.append(("demo", "dev/c", InvocationLog("c0", 3.0, 1, 200, 1.0, ["y" * LOG_MESSAGE_BYTES])))
    link._ship(served, 0)
    got = _messages(ours)
    forms = {g[1]: type(g[2]) for m in got for g in m["groups"]}
    assert forms == {"dev/a": dict, "dev/b": list, "dev/c": list}
    records = [r for m in got for r in records_of(m["groups"], "demo", "dev")]
    assert [r.request_id for r in records] == [e[2][0] for e in served]
    for record, (_, _, entry) in zip(records, served, strict=True):
        assert record.lines == json.dumps(list(entry[5]), ensure_ascii=False, separators=(",", ":"))


def test_a_lines_column_that_does_not_fit_is_ignored_like_a_wrong_row() -> None:
    from fnstage.runtime.log_process import records_of

    good = {"id": ["a", "b"], "t": [1, 2], "d": [1, 2], "v": 3, "s": 200, "l": [["x"], []]}
    assert [r.lines for r in records_of([["demo", "dev/x", good]], "demo", "dev")] == ['["x"]', "[]"]
    for wrong in (
        {**good, "l": [["x"]]},
        {**good, "l": "xy"},
        {**good, "l": [["x"], "y"]},
        {**good, "l": {}},
    ):
        with pytest.raises((TypeError, ValueError)):
            records_of([["demo", "dev/x", wrong]], "demo", "dev")


def _stored_lines_column(column: list[list[str]]) -> str:
    """The block's lines column as main wrote it: each invocation's lines as compact JSON text (cut
    to a note past the writer's bound), the texts a compact ASCII JSON list."""
    from fnstage.runtime.log_process import MAX_LOGGED_CHARS

    texts = [json.dumps(lines, ensure_ascii=False, separators=(",", ":")) for lines in column]
    texts = [t if len(t) <= MAX_LOGGED_CHARS else f'["(cut: {len(t)} characters of lines)"]' for t in texts]
    return json.dumps(texts, separators=(",", ":"))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.lists(
            st.one_of(st.text(max_size=8), st.sampled_from(["plain", "x" * 4000, 'q"', "\\", "é", "\x7f"]))
        ),
        min_size=1,
        max_size=8,
    ),
    st.integers(min_value=0, max_value=8),
)
def test_a_blocks_lines_column_is_the_same_text_whichever_way_the_writer_builds_it(
    column: list[list[str]], cut: int
) -> None:
    """Lines the writer keeps as checked lists (all ASCII, nothing to escape, none empty) are written
    straight into the block's column, the others as texts: the stored column is the same text either
    way, also when one block joins shipments of both kinds."""
    from fnstage.runtime.log_process import columns_of

    cut = min(cut, len(column))
    shipments = [column[:cut], column[cut:]]
    groups = [
        [
            "demo",
            "dev/x",
            {
                "id": ["r"] * len(part),
                "t": [1] * len(part),
                "d": [1] * len(part),
                "v": 1,
                "s": 200,
                "l": part,
            },
        ]
        for part in shipments
        if part
    ]
    batch = [c for group in groups for c in columns_of([group], "demo", "dev")]
    joined = invocation_log._joined(batch)
    row = invocation_log.block_row("demo", "dev/x", joined[0], joined[1:], 0, None)
    assert row[14] == _stored_lines_column(column)


def test_many_long_lines_of_one_shipment_are_cut_as_before() -> None:
    """The checked-lists path holds only when every invocation's text is within the bound: a column
    whose texts together pass it is checked invocation by invocation (and a long one cut)."""
    from fnstage.runtime.log_process import MAX_LOGGED_CHARS, columns_of

    long = ["x" * 3990] * 200  # about 800,000 characters of text
    column = [["short"], long, long + long]
    group = {"id": ["a", "b", "c"], "t": [1, 2, 3], "d": [1, 1, 1], "v": 1, "s": 200, "l": column}
    (columns,) = columns_of([["demo", "dev/x", group]], "demo", "dev")
    row = invocation_log.block_row("demo", "dev/x", columns.request_ids, columns[3:], 0, None)
    texts = json.loads(row[14])
    assert texts[0] == '["short"]' and len(texts[1]) <= MAX_LOGGED_CHARS
    assert texts[2].startswith('["(cut: ')
    assert row[14] == _stored_lines_column(column)


@pytest.mark.parametrize(
    ("versions", "statuses"),
    [
        (3, 200),
        ([3, 3, 3], [200, 200, 200]),
        ([1, 3, 2], [500, 200, 404]),
        ([2.0, 2, True], [200.0, 200, 200]),
    ],
)
def test_a_shipments_versions_and_statuses_convert_alike_whether_one_value_or_many(
    versions: Any, statuses: Any
) -> None:
    """A column of one version or status is converted once and its block's range is that value; any
    other column value by value: either way what each invocation's own conversion gives."""
    from fnstage.runtime.log_process import columns_of

    def each(column: Any) -> list[int]:
        return [int(v) for v in column] if isinstance(column, list) else [column] * 3

    group = {"id": ["a", "b", "c"], "t": [1, 2, 3], "d": [1, 1, 1], "v": versions, "s": statuses}
    (columns,) = columns_of([["demo", "dev/x", group]], "demo", "dev")
    assert list(columns.versions) == each(versions) and list(columns.statuses) == each(statuses)
    assert all(type(v) is int for v in [*columns.versions, *columns.statuses])
    row = invocation_log.block_row("demo", "dev/x", columns.request_ids, columns[3:], 0, None)
    assert row[5:9] == (min(each(versions)), max(each(versions)), min(each(statuses)), max(each(statuses)))
    with pytest.raises((TypeError, ValueError)):
        columns_of([["demo", "dev/x", {**group, "v": ["x", "x", "x"]}]], "demo", "dev")


_ID = st.one_of(st.text(max_size=70), st.sampled_from(["0" * 32, 'a"b', "a\\b", "\x7f", "é", " "]))
_LINE = st.one_of(st.text(max_size=6), st.sampled_from(["plain", 'q"', "\\", "\x7f", "é", "[", '"],["', ""]))
_PART = st.integers(1, 4).flatmap(
    lambda n: st.tuples(
        st.lists(_ID, min_size=n, max_size=n),
        st.lists(
            st.integers(-(10**17), 10**17) | st.sampled_from([0, 1764590000000000]), min_size=n, max_size=n
        ),
        st.lists(st.integers(0, 10**9), min_size=n, max_size=n),
        st.one_of(st.none(), st.lists(st.lists(_LINE, max_size=3), min_size=n, max_size=n)),
    )
)


# shipments as a cell usually frames them, which the writer keeps unparsed (`log_process._UNPARSED`):
# ids of one width, start times of one, plain lines; mixed with near misses that must be parsed
_WIDE_ID = st.sampled_from(["0123456789abcdef", '0123456789abcde"', "0123456789abcd\x1f", "0123456789abcdeé"])
_USUAL_PART = st.tuples(st.integers(1, 5), st.integers(0, 20)).flatmap(
    lambda nw: st.tuples(
        st.lists(st.one_of(st.just("f" * nw[1]), _WIDE_ID), min_size=nw[0], max_size=nw[0]),
        st.lists(
            st.integers(10**15, 10**16 - 1) | st.sampled_from([1764590000000000, 7, 0]),
            min_size=nw[0],
            max_size=nw[0],
        ),
        st.lists(
            st.integers(0, 10**9) | st.sampled_from([0, 10**301, 10**309]), min_size=nw[0], max_size=nw[0]
        ),
        st.one_of(
            st.none(),
            st.lists(
                st.lists(st.sampled_from(["hello from /", "a],[b", "", " ", "\t", "é", '"']), max_size=2)
                | st.just(["x"]),
                min_size=nw[0],
                max_size=nw[0],
            ),
        ),
    )
)


def _frame(values: Any, spaced: bool, ascii_only: bool) -> bytes:
    separators = (", ", ": ") if spaced else (",", ":")
    return json.dumps(values, separators=separators, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


@settings(max_examples=400, deadline=None)
@given(st.lists(_PART, min_size=1, max_size=3), st.booleans(), st.booleans(), st.booleans())
def test_a_block_holds_the_encoders_text_whatever_text_the_cell_framed_its_columns_in(
    parts: list[Any], spaced: bool, ascii_only: bool, negative_zero: bool
) -> None:
    """The writer stores a column's framed text as it came only when it is the very text the block's
    encoder would write (`read_shipment`, `columns_of`): any other spelling of the same values (spaces,
    escapes, "-0", characters the block escapes, ids past their size) is encoded again, so a block's
    bytes are those of main's rule whichever way a cell framed them, also when one block joins several
    shipments of a function."""
    _check_block(parts, spaced, ascii_only, negative_zero)


@settings(max_examples=400, deadline=None)
@given(st.lists(_USUAL_PART, min_size=1, max_size=3), st.booleans())
def test_a_block_holds_the_encoders_text_when_the_writer_kept_the_frames_unparsed(
    parts: list[Any], spaced: bool
) -> None:
    """The same for columns as cells usually frame them, which the writer checks by C passes and stores
    unparsed (ids and start times of one width, plain lines), and for their near misses (a start time
    of another width, a leading zero, an integer no float holds, an id or a line needing an escape, an
    empty list of lines): either way the block's bytes are main's, or the shipment is refused as before."""
    import contextlib

    with contextlib.suppress(OverflowError):  # an integer no float holds refuses the shipment, as before
        _check_block(parts, spaced, False, False)
        assert all(d < 10**309 for part in parts for d in part[2])
        return
    assert any(d >= 10**309 for part in parts for d in part[2])


def _check_block(parts: list[Any], spaced: bool, ascii_only: bool, negative_zero: bool) -> None:
    from fnstage.runtime.log_process import columns_of

    header = {
        "n": 0,
        "groups": [["demo", "dev/x", {"v": 3, "s": 200}] for _ in parts],
        "dropped": 0,
        "unsent": 0,
    }
    frames = [json.dumps(header).encode()]
    for ids, started, durations, lines in parts:
        started_frame = _frame(started, spaced, ascii_only)
        if negative_zero and 0 in started:
            started_frame = started_frame.replace(b"[0", b"[-0").replace(b",0", b",-0")
        frames += [_frame(ids, spaced, ascii_only), started_frame, _frame(durations, spaced, ascii_only)]
        frames.append(_frame(lines, spaced, ascii_only))
    batch = columns_of(read_shipment(b"\n".join(frames))["groups"], "demo", "dev")
    joined = invocation_log._joined(batch)
    row = invocation_log.block_row("demo", "dev/x", joined[0], joined[1:], 0, None)

    def compact(values: Any) -> str:  # main's `invocation_log._encode`
        return json.dumps(values, separators=(",", ":"))

    ids = [i[:64] for part in parts for i in part[0]]
    started = [t for part in parts for t in part[1]]
    lines = [line for part in parts for line in (part[3] or [[]] * len(part[0]))]
    assert row[2] == len(ids) and row[3:5] == (min(started) / 1e6, max(started) / 1e6)
    assert row[9:12] == (compact(ids), compact(started), compact([3] * len(ids)))
    assert row[12:14] == (compact([200] * len(ids)), compact([d for part in parts for d in part[2]]))
    assert row[14] == _stored_lines_column(lines)


def test_a_cells_usual_columns_are_stored_as_the_cell_wrote_them_never_parsed() -> None:
    """The common shipment (ids, start times, durations and one logged line each, all plain ASCII) keeps
    each column's text from the cell to the block: no column of it is encoded again by the writer, nor
    even parsed (`invocation_log.ColumnText`), also when a block joins several messages."""
    from fnstage.runtime.cell import LogSender, SupervisorLink
    from fnstage.runtime.invoker import InvocationLog
    from fnstage.runtime.log_process import columns_of
    from fnstage.store.invocation_log import ColumnText

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    link = SupervisorLink.__new__(SupervisorLink)  # only its shipping: no channel, no registry
    link.log_sender = LogSender(theirs)
    link.log_keep = 0
    served = [
        ("demo", "dev/a", InvocationLog(f"{n:032x}", 1_764_000_000 + n / 1e4, 3, 200, 0.5, [f"line {n}"]))
        for n in range(1000)
    ]
    link._ship(served, 0)
    batch = [c for m in _messages(ours) for c in columns_of(m["groups"], "demo", "dev")]
    assert len(batch) > 1
    for columns in batch:
        kept = (columns.request_ids, columns.started_us, columns.durations_us, columns.lines)
        assert all(type(column) is ColumnText for column in kept)
    joined = invocation_log._joined(batch)
    assert all(type(column) is ColumnText for column in joined[:2] + joined[4:6])
    row = invocation_log.block_row("demo", "dev/a", joined[0], joined[1:], 0, None)
    parsed = [c for columns in batch for c in columns[2:] if type(c) is ColumnText and c._values is not None]
    assert parsed == [] and all(c._values is None for c in joined if type(c) is ColumnText)
    assert row[3:5] == (served[0][2][1], served[-1][2][1])  # the first and last start, unparsed
    assert json.loads(row[9]) == [e[2][0] for e in served]
    assert json.loads(row[10]) == [int(e[2][1] * 1e6) for e in served]
    assert row[14] == _stored_lines_column([list(e[2][5]) for e in served])


def test_a_message_whose_frames_do_not_match_its_column_groups_is_ignored() -> None:
    """Each columns group of a message's header takes the next four lines (`log_process.FRAMED`): a
    message with fewer, or more, does not fit, and the writer ignores it like any wrong shipment."""
    header = {"n": 1, "groups": [["demo", "dev/x", {"v": 1, "s": 200}]], "dropped": 0, "unsent": 0}
    frames = [b'["a"]', b"[1]", b"[2]", b'[["x"]]']
    (group,) = read_shipment(b"\n".join([json.dumps(header).encode(), *frames]))["groups"]
    assert group[2] == {"v": 1, "s": 200, "id": ["a"], "t": [1], "d": [2], "l": [["x"]]}
    for wrong in (frames[:3], [*frames, b"[]"], []):
        with pytest.raises(ValueError):
            read_shipment(b"\n".join([json.dumps(header).encode(), *wrong]))
    rows = {**header, "groups": [["demo", "dev/x", [["r", 1, 1, 200, 1, [], None, None]]]]}
    assert read_shipment(json.dumps(rows).encode())["groups"] == rows["groups"]
    with pytest.raises(ValueError):
        read_shipment(json.dumps(rows).encode() + b"\n[1]")


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        st.none(),
        st.lists(st.text()),  # ids: every character, controls, quotes and lone surrogates among them
        st.lists(st.integers(-(2**70), 2**70)),  # microseconds; past 64 bits orjson refuses
        st.lists(
            st.one_of(st.just(()), st.lists(st.text(alphabet='ab "\\\n\x00\x1f\x7f\u00e9\u2028\ud800')))
        ),
    )
)
def test_a_frame_is_the_standard_librarys_bytes_whichever_encoder_wrote_it(column: Any) -> None:
    """A columns group's frames are written by orjson (`cell._encode_frame`), falling back to the
    standard library where orjson refuses: byte for byte what the standard library's text, lone
    surrogates as their escapes, was before, so the writer stores the same."""
    from fnstage.runtime.cell import _encode_frame

    before = json.dumps(column, ensure_ascii=False, separators=(",", ":"))
    assert _encode_frame(column) == before.encode("utf-8", "backslashreplace")


def test_a_frame_orjson_refuses_ships_in_the_standard_librarys_text() -> None:
    """A lone surrogate a function logged and a start time past 64 bits reach the writer as before."""
    from fnstage.runtime.cell import LogSender, SupervisorLink
    from fnstage.runtime.invoker import InvocationLog
    from fnstage.runtime.log_process import records_of

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    link = SupervisorLink.__new__(SupervisorLink)  # only its shipping: no channel, no registry
    link.log_sender = LogSender(theirs)
    link.log_keep = 0
    served = [
        ("demo", "dev/a", InvocationLog("r1", 1.0, 1, 200, 0.5, ["lone \ud800 here"])),
        ("demo", "dev/b", InvocationLog("r2", 2.0**70, 1, 200, 0.5, ["late"])),
    ]
    link._ship(served, 0)
    (message,) = _messages(ours)
    assert message["n"] == 2 and link.log_sender.unsent == 0
    assert all(type(group[2]) is dict for group in message["groups"])  # columns, framed
    assert message["groups"][1][2]["t"] == [2**70 * 10**6]  # microseconds
    (lone,) = records_of(message["groups"][:1], "demo", "dev")
    assert json.loads(lone.lines) == ["lone \ud800 here"]


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 3).flatmap(
        lambda k: st.lists(
            st.one_of(
                st.lists(
                    st.text(max_size=5), min_size=k, max_size=k
                ),  # rows of as many lines (the fast form)
                st.lists(st.text(max_size=5), max_size=4),
                st.lists(st.one_of(st.integers(), st.none()), min_size=1, max_size=2),  # not strings
                st.just(["x" * 40_000]),  # larger than a message
            ),
            min_size=1,
            max_size=6,
        )
    )
)
def test_a_runs_row_ends_follow_the_row_rule(all_lines: list[Any]) -> None:
    """`cell._row_ends` (a pass over all lines when each row logged as many, a join a row otherwise)
    counts each row as `_ship`'s row rule does (LOG_ROW_BYTES, its characters, 4 a line), or says the
    run must go row by row: a line that is no string, or a row larger than a message."""
    from itertools import accumulate

    from fnstage.runtime.cell import LOG_MESSAGE_BYTES, LOG_ROW_BYTES, _row_ends

    ends = _row_ends(tuple(all_lines), len(all_lines))
    if not all(isinstance(line, str) for lines in all_lines for line in lines):
        assert ends is None
        return
    sizes = [LOG_ROW_BYTES + sum(len(line) + 4 for line in lines) for lines in all_lines]
    assert (None if ends is None else list(ends)) == (
        None if max(sizes) > LOG_MESSAGE_BYTES else list(accumulate(sizes))
    )


def test_a_shipment_tells_functions_apart_by_gateway_and_name() -> None:
    """The outbox's columns (`take_outbox`) shipped as they come: one name in two gateways is two
    functions, each its own runs, its own count bound and its own invocations in order."""
    from fnstage.runtime.cell import LogSender, SupervisorLink
    from fnstage.runtime.invoker import NO_LINES

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    link = SupervisorLink.__new__(SupervisorLink)  # only its shipping: no channel, no registry
    link.log_sender = LogSender(theirs)
    link.log_keep = 30
    gateways = ["one" if n % 7 < 4 else "two" for n in range(100)]  # runs of four, then three
    entries = [(f"r{n}", 1.0 + n, 1, 200, 0.5, NO_LINES if n % 2 else ["hi"], None, None) for n in range(100)]
    link._ship_columns((gateways, ["dev/a"] * 100, *map(list, zip(*entries, strict=True))), 0)
    shipped = _messages(ours)
    for gateway in ("one", "two"):
        served = [e[0] for e, g in zip(entries, gateways, strict=True) if g == gateway]
        got = [r.request_id for m in shipped for r in records_of(m["groups"], gateway, "dev")]
        assert got == served[-30:]  # the newest 30 of each
    assert sum(m.get("pruned", 0) for m in shipped) == 100 - 60


def test_lines_a_function_made_circular_are_counted_as_not_sent_and_the_next_shipment_says_so() -> None:
    """A function's own list in `ctx.log.lines` may refer to itself: its message cannot be encoded by
    either encoder; it is counted as not sent, never stops the shipping thread, and the next message
    that goes says how many did not."""
    from fnstage.runtime.cell import LogSender, SupervisorLink
    from fnstage.runtime.invoker import InvocationLog

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    link = SupervisorLink.__new__(SupervisorLink)  # only its shipping: no channel, no registry
    link.log_sender = LogSender(theirs)
    link.log_keep = 0
    circular: list[Any] = ["a"]
    circular.append(circular)
    link._ship([("demo", "dev/a", InvocationLog("r1", 1.0, 1, 200, 0.5, circular))], 2)
    assert link.log_sender.unsent == 3 and _messages_or_none(ours) == []
    link._ship([("demo", "dev/a", InvocationLog("r2", 1.0, 1, 200, 0.5, ["fine"]))], 0)
    (message,) = _messages(ours)
    assert message["unsent"] == 3 and message["n"] == 1 and link.log_sender.unsent == 0


def _messages_or_none(sock: socket.socket) -> list[Any]:
    sock.setblocking(False)
    try:
        return [sock.recv(1 << 22)]
    # nothing waiting on the socket: no message was sent, which the callers assert
    except BlockingIOError:
        return []
