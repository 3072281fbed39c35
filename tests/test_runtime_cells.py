"""Cells, through a real zygote: loads, deaths, restarts, quarantine; and the channel's trust rules."""

from __future__ import annotations

import json
import pickle
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from multiprocessing import Pipe
from pathlib import Path
from typing import Any

import httpx
import pytest

from fnstage.runtime import cells as cells_module
from fnstage.runtime.cell import CellSpec
from fnstage.runtime.cells import MOVE_GRACE_S, Cell, CellSet, Slot, describe_exit
from fnstage.runtime.channel import CellEnd, SupervisorEnd
from fnstage.runtime.loader import LiveVersion, LoadError
from fnstage.runtime.supervisor import EnvironmentFeed
from fnstage.runtime.zygote import Zygote
from fnstage.store.records import FeedEvent, FunctionCounts, PublishedFunction
from support.cells import ANSWER, Events, get, row, send_raw

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def zygote() -> Iterator[Zygote]:
    z = Zygote()
    z.start()
    yield z
    z.stop()


@pytest.fixture
def cells(zygote: Zygote, tmp_path: Path) -> Iterator[tuple[CellSet, Events]]:
    events = Events()

    def spec(slot: Slot) -> CellSpec:
        folder = tmp_path / f"{slot[0]}.{slot[1]}"
        return CellSpec(slot[0], slot[1], folder, "key", uds=folder / "cell.sock")

    cell_set = CellSet(spec, events, zygote)
    yield cell_set, events
    cell_set.stop_all()


def test_a_cell_starts_on_its_first_function_and_serves_it(cells: tuple[CellSet, Events]) -> None:
    cell_set, events = cells
    [result] = cell_set.load([row("dev/user/me", 1, ANSWER % 1)])
    assert isinstance(result, LiveVersion) and result.version == 1
    assert get(cell_set, ("demo", "dev", ""), "/user/me").json() == {"version": 1}
    assert [kind for kind, *_ in events.seen] == ["ready"]
    cell_set.remove("demo", "dev/user/me")
    assert cell_set.spec_of(("demo", "dev", "")) is None  # nothing left: the cell stopped
    assert events.seen[-1][0] == "stopped"


def test_a_load_that_kills_its_cell_twice_is_quarantined_and_the_good_version_serves(
    cells: tuple[CellSet, Events],
) -> None:
    cell_set, _ = cells
    cell_set.load([row("dev/user/me", 1, ANSWER % 1), row("dev/other", 1, ANSWER % 7)])
    killer = "import os\nos._exit(3)\n" + ANSWER % 2
    [result] = cell_set.load([row("dev/user/me", 2, killer)])
    assert isinstance(result, LoadError)
    assert result.summary == "killed its cell at load: exit code 3"
    # the cell came back with what was live before: the good version and the other function
    assert get(cell_set, ("demo", "dev", ""), "/user/me").json() == {"version": 1}
    assert get(cell_set, ("demo", "dev", ""), "/other").json() == {"version": 7}
    assert [q["cause"] for q in cell_set.quarantine_list()] == ["killed its cell at load: exit code 3"]
    # a quarantined version is never loaded again (a resync would otherwise kill the cell again)
    [again] = cell_set.load([row("dev/user/me", 2, killer)])
    assert isinstance(again, LoadError) and "killed its cell" in again.summary
    assert get(cell_set, ("demo", "dev", ""), "/user/me").json() == {"version": 1}


def test_a_cell_that_dies_serving_is_restarted_with_its_functions(cells: tuple[CellSet, Events]) -> None:
    cell_set, events = cells
    crash = "import os\ndef main(ctx):\n    if ctx.query.get('die'):\n        os._exit(9)\n    return 'ok'\n"
    cell_set.load([row("prod/crashy", 1, crash)])
    with pytest.raises(httpx.HTTPError):
        get(cell_set, ("demo", "prod", ""), "/crashy?die=1")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if [e for e in events.seen if e[0] == "ready"][1:]:
            break
        time.sleep(0.05)
    assert ("restarting", ("demo", "prod", ""), "exit code 9") in events.seen
    assert get(cell_set, ("demo", "prod", ""), "/crashy").text == "ok"


def test_a_big_load_goes_in_batches_and_each_answer_is_its_rows(
    cells: tuple[CellSet, Events], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cold start's rows go to the cell a batch at a time (the cell loads one while the next is sent);
    answers still line up with rows across batches, a failure in the middle one included, and the
    collector, paused for the bulk load, is back on in the cell afterwards."""
    monkeypatch.setattr("fnstage.runtime.cells.LOAD_BATCH", 4)
    monkeypatch.setattr("fnstage.runtime.cells.BULK_LOAD", 8)
    rows = [row(f"dev/fn/{i}", 1, ANSWER % i) for i in range(10)]
    rows[5] = row("dev/fn/5", 1, "x = 1 / 0\n" + ANSWER % 5)
    sent: list[int] = []
    send = SupervisorEnd.send

    def counting(self: SupervisorEnd, message: tuple[object, ...]) -> None:
        if message[0] == "load":
            sent.append(len(message[2]))  # type: ignore[arg-type]  # a load message's rows: a list
        send(self, message)

    monkeypatch.setattr(SupervisorEnd, "send", counting)
    cell_set = cells[0]
    results = cell_set.load(rows)
    assert sent == [4, 4, 2]
    assert [isinstance(r, LiveVersion) for r in results] == [True] * 5 + [False] + [True] * 4
    assert isinstance(results[5], LoadError) and "ZeroDivisionError" in results[5].summary
    for i in (0, 4, 6, 9):
        assert get(cell_set, ("demo", "dev", ""), f"/fn/{i}").json() == {"version": i}
    collector = "import gc\ndef main(ctx):\n    return {'collector': gc.isenabled()}\n"
    more = cell_set.load([row(f"dev/fn/{i}", 2, ANSWER % (100 + i)) for i in range(8)])
    more += cell_set.load([row("dev/collector", 1, collector)])
    assert sent[3:] == [4, 4, 1] and all(isinstance(r, LiveVersion) for r in more)
    assert get(cell_set, ("demo", "dev", ""), "/fn/7").json() == {"version": 107}
    assert get(cell_set, ("demo", "dev", ""), "/collector").json() == {"collector": True}


def test_each_batch_is_answered_into_live_versions_while_the_cell_loads_the_next(
    cells: tuple[CellSet, Events], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cold start of 100,000 functions: the supervisor makes its registry's version of each batch's
    functions as that batch is answered, while the cell loads the next one, instead of after the last
    batch (BENCHMARKS.md, "Many functions in a cell"). Only two batches are ahead of the answers."""
    monkeypatch.setattr("fnstage.runtime.cells.LOAD_BATCH", 2)
    order: list[str] = []
    send = SupervisorEnd.send
    mirror = cells_module._mirror

    def sending(self: SupervisorEnd, message: tuple[object, ...]) -> None:
        if message[0] == "load":
            order.append("sent")
        send(self, message)

    def mirroring(row: PublishedFunction, load_ms: float) -> LiveVersion:
        order.append(f"mirror {row.name}")
        return mirror(row, load_ms)

    monkeypatch.setattr(SupervisorEnd, "send", sending)
    monkeypatch.setattr(cells_module, "_mirror", mirroring)
    results = cells[0].load([row(f"dev/fn/{i}", 1, ANSWER % i) for i in range(8)])
    assert [r.version for r in results if isinstance(r, LiveVersion)] == [1] * 8
    assert all(isinstance(r, LiveVersion) and r.load_ms > 0 for r in results)  # timed in the cell
    # one set of methods for all the supervisor's versions that have them (100,000 sets: 20 MiB)
    assert len({id(r.methods) for r in results if isinstance(r, LiveVersion)}) == 1
    sends = [i for i, step in enumerate(order) if step == "sent"]
    assert len(sends) == 4
    assert order.index("mirror dev/fn/1") < sends[2]  # the first answer, handled before the third batch
    assert order.index("mirror dev/fn/3") < sends[3]


def test_a_cell_that_dies_in_the_middle_of_a_big_load_keeps_what_it_answered(
    cells: tuple[CellSet, Events], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches answered before the death are live (the restarted cell gets them back); the rest load one
    at a time, and the one that kills the cell again is quarantined."""
    monkeypatch.setattr("fnstage.runtime.cells.LOAD_BATCH", 2)
    rows = [row(f"dev/fn/{i}", 1, ANSWER % i) for i in range(6)]
    rows[4] = row("dev/fn/4", 1, "import os\nos._exit(3)\n" + ANSWER % 4)
    cell_set = cells[0]
    results = cell_set.load(rows)
    assert [isinstance(r, LiveVersion) for r in results] == [True] * 4 + [False, True]
    assert isinstance(results[4], LoadError) and results[4].summary.startswith("killed its cell at load")
    for i in (0, 3, 5):
        assert get(cell_set, ("demo", "dev", ""), f"/fn/{i}").json() == {"version": i}


def test_a_streamed_load_reaches_the_cell_before_the_next_chunk_is_read(
    cells: tuple[CellSet, Events],
) -> None:
    """A cold start's snapshot is loaded as it is read (`load_stream`): the cell has loaded (and
    answered) the first chunk while the supervisor has not read the second yet, where the whole
    snapshot used to be read before any cell started. Chunks of two environments go to their own
    cells, and each row's result comes back in the order read."""
    cell_set, _ = cells
    dev = ("demo", "dev", "")

    def chunks() -> Iterator[list[PublishedFunction]]:
        yield [row(f"dev/fn/{i}", 1, ANSWER % i) for i in range(3)]
        deadline = time.monotonic() + 30
        while not _serves(cell_set, dev, "/fn/2"):
            assert time.monotonic() < deadline, "the first chunk was not loaded before the next read"
            time.sleep(0.01)
        yield [row("prod/fn/0", 1, ANSWER % 100), row("dev/fn/3", 1, "x = 1 / 0\n" + ANSWER % 3)]
        yield [row("dev/fn/4", 1, ANSWER % 4)]

    rows, results, error = cell_set.load_stream(chunks())
    assert error is None
    assert [r.name for r in rows] == [f"dev/fn/{i}" for i in range(3)] + ["prod/fn/0", "dev/fn/3", "dev/fn/4"]
    assert [r.name if isinstance(r, LiveVersion) else None for r in results] == [
        "dev/fn/0",
        "dev/fn/1",
        "dev/fn/2",
        "prod/fn/0",
        None,
        "dev/fn/4",
    ]
    assert isinstance(results[4], LoadError) and "ZeroDivisionError" in results[4].summary
    assert get(cell_set, dev, "/fn/4").json() == {"version": 4}
    assert get(cell_set, ("demo", "prod", ""), "/fn/0").json() == {"version": 100}


def _serves(cell_set: CellSet, slot: Slot, path: str) -> bool:
    if cell_set.spec_of(slot) is None:
        return False
    try:
        return get(cell_set, slot, path).status_code == 200
    except httpx.TransportError:  # not listening yet
        return False


def test_a_streamed_load_whose_read_breaks_off_still_gives_what_it_loaded(
    cells: tuple[CellSet, Events],
) -> None:
    """The rows read before the read failed are loaded and returned with the error: a cell serves what
    it loaded, so the supervisor must know it (and report it) before the resync is retried."""
    cell_set, _ = cells

    def chunks() -> Iterator[list[PublishedFunction]]:
        yield [row("dev/fn/0", 1, ANSWER % 0)]
        raise OSError("the store went away")

    rows, results, error = cell_set.load_stream(chunks())
    assert isinstance(error, OSError)
    assert [r.name for r in rows] == ["dev/fn/0"]
    assert [type(r) for r in results] == [LiveVersion]
    assert get(cell_set, ("demo", "dev", ""), "/fn/0").json() == {"version": 0}


def test_cells_of_two_environments_do_not_share_a_process(cells: tuple[CellSet, Events]) -> None:
    cell_set, _ = cells
    patch = "import json\njson.dumps = lambda *a, **k: 'patched'\ndef main(ctx):\n    return json.dumps(1)\n"
    cell_set.load([row("dev/patch", 1, patch), row("prod/plain", 1, "import json\n" + ANSWER % 1)])
    assert get(cell_set, ("demo", "dev", ""), "/patch").text == "patched"
    assert get(cell_set, ("demo", "prod", ""), "/plain").json() == {"version": 1}
    dev, prod = cell_set.spec_of(("demo", "dev", "")), cell_set.spec_of(("demo", "prod", ""))
    assert dev is not None and prod is not None and dev.uds != prod.uds


def test_the_supervisor_never_unpickles_what_a_cell_sends() -> None:
    ours, theirs = Pipe(duplex=True)
    supervisor = SupervisorEnd(ours)
    evil = pickle.dumps(("ready",))  # a pickle is code for whoever loads it
    theirs.send_bytes(evil)
    with pytest.raises(ValueError):
        supervisor.receive()
    CellEnd(theirs).send({"t": "ready", "pid": 1})
    assert supervisor.receive() == {"t": "ready", "pid": 1}
    theirs.send_bytes(json.dumps(["not", "an", "object"]).encode())
    with pytest.raises(ValueError):
        supervisor.receive()


def test_counts_a_cell_sends_for_another_environment_are_ignored(cells: tuple[CellSet, Events]) -> None:
    from fnstage.runtime.cells import _counts

    spec = CellSpec("demo", "dev", Path("/nonexistent"), "key")
    assert _counts(["demo", "dev/a", 1, 5, 1, "KeyError"], spec) == FunctionCounts(
        "demo", "dev/a", 1, 5, 1, "KeyError"
    )
    assert _counts(["demo", "prod/a", 1, 5, 1, None], spec) is None
    assert _counts(["other", "dev/a", 1, 5, 1, None], spec) is None


def test_exit_codes_are_described_for_people() -> None:
    assert describe_exit(3) == "exit code 3"
    assert describe_exit(-11) == "killed by SIGSEGV"
    assert describe_exit(-9) == "killed by SIGKILL (out of memory?)"
    assert describe_exit(None) == "stopped answering"


class _Log:
    database_dir = None

    def __init__(self, events: list[FeedEvent]) -> None:
        self.events = events

    def events_after(self, positions: dict[str, int], gateway: str | None) -> list[FeedEvent] | None:
        return self.events

    def snapshot(self, gateway: str | None) -> tuple[list[PublishedFunction], dict[str, int]]:
        return [row("dev/a", 1, ANSWER % 1), row("prod/b", 1, ANSWER % 1)], {"demo": 2}

    def fetch(self, gateway: str, names: list[str]) -> list[PublishedFunction]:
        return [row(n, 1, ANSWER % 1) for n in names]

    def changes_after(
        self, positions: dict[str, int], gateway: str | None
    ) -> tuple[list[FeedEvent], list[PublishedFunction]]:
        return self.events, self.fetch("demo", ["dev/a", "prod/c"])

    def snapshot_chunks(
        self, gateway: str | None, positions: dict[str, int]
    ) -> Iterator[list[PublishedFunction]]:
        rows, heads = self.snapshot(gateway)
        positions.update(heads)
        yield rows[:1]
        yield rows[1:]

    def change_token(self) -> int:
        return 1

    def close(self) -> None:
        pass


def test_a_runtime_of_one_environment_streams_only_its_rows_at_a_cold_start() -> None:
    positions: dict[str, int] = {}
    chunks = list(EnvironmentFeed(_Log([]), "prod").snapshot_chunks("demo", positions))
    assert [[r.name for r in chunk] for chunk in chunks] == [["prod/b"]]  # no empty chunk of dev's
    assert positions == {"demo": 2}


def test_a_runtime_of_one_environment_sees_only_its_rows_and_still_moves_forward() -> None:
    events = [FeedEvent("demo", 5, "dev/a", 3, "upsert"), FeedEvent("demo", 6, "dev/b", 1, "delete")]
    feed = EnvironmentFeed(_Log(events), "prod")
    mine = feed.events_after({"demo": 4}, "demo")
    assert mine == [FeedEvent("demo", 6, "", 0, "skip")]  # nothing of dev, but the position moves on
    assert [r.name for r in feed.snapshot("demo")[0]] == ["prod/b"]
    assert feed.fetch("demo", ["dev/a", "prod/b"])[0].name == "prod/b"
    # the log read with the rows to load (PostgreSQL's one round trip): the same view, rows included
    assert feed.changes_after({"demo": 4}, "demo") == (mine, [row("prod/c", 1, ANSWER % 1)])


FORKER = """import os, time

def main(ctx):
    if ctx.query.get("die"):
        os._exit(9)
    read, write = os.pipe()
    if os.fork() == 0:  # a child that leaves its cell's session, then a grandchild that outlives it
        os.setsid()
        if os.fork() == 0:
            os.write(write, str(os.getpid()).encode())
            time.sleep(600)
        os._exit(0)
    return {"escaped": int(os.read(read, 32))}
"""


def test_what_a_function_forks_dies_with_its_cell_even_in_a_session_of_its_own(
    cells: tuple[CellSet, Events],
) -> None:
    cell_set, _ = cells
    cell_set.load([row("dev/forker", 1, FORKER)])
    escaped = get(cell_set, ("demo", "dev", ""), "/forker").json()["escaped"]
    assert Path(f"/proc/{escaped}").exists()
    with pytest.raises(httpx.HTTPError):
        get(cell_set, ("demo", "dev", ""), "/forker?die=1")
    deadline = time.monotonic() + 30
    while Path(f"/proc/{escaped}").exists() and _state(escaped) != "Z":
        assert time.monotonic() < deadline, f"process {escaped}, forked by a function, outlived its cell"
        time.sleep(0.05)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def test_a_cell_accepts_connections_as_soon_as_it_is_called_ready(cells: tuple[CellSet, Events]) -> None:
    """The front routes to a cell the moment its supervisor calls it ready: a refused connection then
    is a 503 for a client. (granian binds a Unix socket at once but listens only when its worker runs,
    which was after the cell said ready.)"""
    cell_set, _ = cells
    for i in range(8):
        slot = (f"gw{i}", "dev", "")
        cell = cell_set.ensure(slot)
        assert cell is not None and cell.spec.uds is not None
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(cell.spec.uds))  # at once: no retry
            sock.sendall(b"GET /_fnstage/health HTTP/1.1\r\nHost: cell\r\nConnection: close\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")


class MoveEvents(Events):
    def __init__(self) -> None:
        super().__init__()
        self.moves: list[tuple[str, Slot]] = []

    def moved(self, gateway: str, name: str, slot: Slot, cell: Cell) -> None:
        self.moves.append((name, slot))


def test_a_function_moves_to_its_locks_cell_and_the_cell_it_left_stops(
    zygote: Zygote, tmp_path: Path
) -> None:
    """One cell per (gateway, env, lock): a version with another lock loads in that lock's cell, is
    routed there (`moved`) and only then leaves its old cell, which stops once empty."""
    events = MoveEvents()
    prepared: list[str] = []

    def spec(slot: Slot) -> CellSpec:
        folder = tmp_path / f"{slot[0]}.{slot[1]}.{slot[2][:8] or 'none'}"
        return CellSpec(slot[0], slot[1], folder, "key", uds=folder / "cell.sock", lock=slot[2])

    cell_set = CellSet(spec, events, zygote, prepare=lambda r: prepared.append(r.lock_hash or ""))
    later: list[tuple[float, Callable[..., None], tuple[Any, ...]]] = []
    cell_set.later = lambda delay_s, call, args: later.append((delay_s, call, args))
    try:
        one, two = ("demo", "dev", "a" * 64), ("demo", "dev", "b" * 64)
        first = replace(row("dev/f", 1, ANSWER % 1), lock_hash=one[2], lock="x")
        other = replace(row("dev/g", 1, ANSWER % 7), lock_hash=one[2], lock="x")
        assert all(isinstance(r, LiveVersion) for r in cell_set.load([first, other]))
        assert events.moves == [("dev/f", one), ("dev/g", one)]
        first_pid = cell_set.status()[0]["pid"]
        [moved] = cell_set.load([replace(row("dev/f", 2, ANSWER % 2), lock_hash=two[2], lock="y")])
        assert isinstance(moved, LiveVersion)
        assert events.moves[-1] == ("dev/f", two) and cell_set.slot_of_function("demo", "dev/f") == two
        assert get(cell_set, two, "/f").json() == {"version": 2}
        assert get(cell_set, one, "/g").json() == {"version": 7}  # still in the 1.0 lock's cell
        # the old cell keeps it a moment, for requests routed there just before the move
        assert "dev/f" in cell_set.live_names(one) and get(cell_set, one, "/f").json() == {"version": 1}
        [(delay_s, leave, args)] = later  # the grace's timer, taken from the cell set: made here
        assert delay_s == MOVE_GRACE_S
        leave(*args)
        assert cell_set.live_names(one) == ["dev/g"] and cell_set.live_names(two) == ["dev/f"]
        cells = {c["lock"]: c["pid"] for c in cell_set.status()}
        assert cells[one[2]] == first_pid and cells[two[2]] != first_pid  # two processes
        three = ("demo", "dev", "c" * 64)
        broken = replace(row("dev/g", 2, "raise ImportError('no')\n" + ANSWER % 8), lock_hash=three[2])
        assert isinstance(cell_set.load([broken])[0], LoadError)
        assert get(cell_set, one, "/g").json() == {"version": 7}  # the version before keeps serving
        assert cell_set.spec_of(three) is None and cell_set.slot_of_function("demo", "dev/g") == one
        cell_set.remove("demo", "dev/g", 1)
        assert cell_set.spec_of(one) is None  # nothing left in it: stopped
        assert ("stopped", one, None) in events.seen
        assert prepared == [one[2], one[2], two[2], three[2]]
    finally:
        cell_set.stop_all()


def test_a_held_cell_answers_only_once_the_first_sync_gave_it_its_functions(
    zygote: Zygote, tmp_path: Path
) -> None:
    """`fnstage runtime --env prod`: its one cell listens on the public port before the first sync. It
    answered 404 for a function that exists then (seen under load in 1 run of 3); held, a request waits
    until the cell holds what is published, and health says 503 until then."""
    import threading

    def spec(slot: Slot) -> CellSpec:
        folder = tmp_path / f"{slot[0]}.{slot[1]}"
        return CellSpec(slot[0], slot[1], folder, "key", uds=folder / "cell.sock", held=True)

    cell_set = CellSet(spec, Events(), zygote, keep_empty=True)
    cell_set.synced = False  # as the supervisor of one environment, before its first sync
    slot = ("demo", "prod", "")
    try:
        assert cell_set.ensure(slot) is not None
        assert get(cell_set, slot, "/_fnstage/health").status_code == 503
        answers: list[httpx.Response] = []
        request = threading.Thread(target=lambda: answers.append(get(cell_set, slot, "/user/me")))
        request.start()
        time.sleep(0.5)
        assert not answers, answers[0].text  # before the fix: 404 "no function prod/user/me is live"
        cell_set.load([row("prod/user/me", 1, ANSWER % 1)])
        time.sleep(0.2)
        assert not answers, answers[0].text  # loaded, but the sync is not done: still held
        cell_set.serve_after_sync()
        request.join(10)
        assert [(a.status_code, a.json()) for a in answers] == [(200, {"version": 1})]
        assert get(cell_set, slot, "/_fnstage/health").status_code == 200
    finally:
        cell_set.stop_all()


def test_direct_an_environment_cell_forwards_its_lock_cells_functions_before_they_are_live(
    zygote: Zygote, tmp_path: Path
) -> None:
    """`fnstage runtime --env`: no front; the environment's cell serves every request and forwards a
    function pinned to a lock to that lock's cell. A load returns (and the watcher reports live) only
    once the environment's cell routes the function where it now runs, in either direction."""
    events = MoveEvents()

    def spec(slot: Slot) -> CellSpec:
        folder = tmp_path / f"{slot[0]}.{slot[1]}.{slot[2][:8] or 'none'}"
        return CellSpec(
            slot[0],
            slot[1],
            folder,
            "key",
            uds=folder / "cell.sock",
            lock=slot[2],
            shared_with_env_cell=bool(slot[2]),
        )

    cell_set = CellSet(spec, events, zygote, keep_empty=True, prepare=lambda r: None, direct=True)
    env, lock = ("demo", "dev", ""), ("demo", "dev", "a" * 64)
    try:
        assert cell_set.ensure(env) is not None
        pinned = replace(row("dev/f", 1, ANSWER % 1), lock_hash=lock[2], lock="x")
        assert all(isinstance(r, LiveVersion) for r in cell_set.load([pinned, row("dev/g", 1, ANSWER % 7)]))
        assert get(cell_set, env, "/f").json() == {"version": 1}  # forwarded at once, no retry
        assert get(cell_set, env, "/g").json() == {"version": 7}  # its own
        assert cell_set.forwards("demo", "dev") == [("demo", "dev/f", str(spec(lock).uds))]
        cell_set.load([row("dev/f", 2, ANSWER % 2)])  # back to the environment's cell
        assert get(cell_set, env, "/f").json() == {"version": 2} and cell_set.forwards("demo", "dev") == []
        cell_set.load([replace(row("dev/f", 3, ANSWER % 3), lock_hash=lock[2], lock="x")])
        assert get(cell_set, env, "/f").json() == {"version": 3}
        deadline = time.monotonic() + 10
        while "dev/f" in cell_set.live_names(env) and time.monotonic() < deadline:
            time.sleep(0.05)  # its version 2 leaves the environment's cell after the move's grace
        cell_set.remove("demo", "dev/f", 3)
        assert get(cell_set, env, "/f").status_code == 404  # deleted: no longer forwarded
        assert cell_set.spec_of(lock) is None  # nothing left in the lock's cell: stopped
    finally:
        cell_set.stop_all()


def test_a_cell_collects_young_objects_less_often_than_python_does(cells: tuple[CellSet, Events]) -> None:
    """Every young collection walks the requests in flight, which it cannot free: a cell raises the
    first threshold (`cell.GC_YOUNG_THRESHOLD`) and keeps the older generations' as they were."""
    import gc

    from fnstage.runtime.cell import GC_YOUNG_THRESHOLD

    cell_set, _ = cells
    code = "import gc\n\ndef main(ctx):\n    return {'threshold': list(gc.get_threshold())}\n"
    [result] = cell_set.load([row("dev/gc", 1, code)])
    assert isinstance(result, LiveVersion)
    threshold = get(cell_set, ("demo", "dev", ""), "/gc").json()["threshold"]
    assert threshold == [GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:]]
    assert gc.get_threshold()[0] < GC_YOUNG_THRESHOLD


RAW_UTF8_COOKIE = (
    b"GET /echo HTTP/1.1\r\nHost: demo.dev.localhost\r\nCookie: city=K\xc3\xb6ln\r\nConnection: close\r\n\r\n"
)
ECHO_COOKIE = "def main(ctx):\n    return {'cookie': ctx.headers.get('cookie')}\n"


@pytest.mark.parametrize("interface", ["asgi", "rsgi"])
def test_a_cell_serves_the_interface_it_is_given(zygote: Zygote, tmp_path: Path, interface: str) -> None:
    """`FNSTAGE_CELL_INTERFACE` reaches the cell as `CellSpec.interface`. ASGI gives a function a
    header's raw UTF-8 bytes (as latin-1 text); RSGI (the default) cannot without the front's carrier
    (`carried_headers`), and a request to its socket with no carrier is refused with 400 rather than
    run the function without the header."""

    def spec(slot: Slot) -> CellSpec:
        folder = tmp_path / f"{slot[0]}.{slot[1]}"
        return CellSpec(slot[0], slot[1], folder, "key", uds=folder / "cell.sock", interface=interface)

    cell_set = CellSet(spec, Events(), zygote)
    try:
        [result] = cell_set.load([row("dev/echo", 1, ECHO_COOKIE)])
        assert isinstance(result, LiveVersion)
        slot = ("demo", "dev", "")
        assert get(cell_set, slot, "/echo").json() == {"cookie": None}  # served either way
        served = cell_set.spec_of(slot)
        assert served is not None and served.uds is not None
        head, _, body = send_raw(served.uds, RAW_UTF8_COOKIE).partition(b"\r\n\r\n")
        if interface == "asgi":
            assert head.startswith(b"HTTP/1.1 200 ")
            assert json.loads(body) == {"cookie": "city=K\xc3\xb6ln"}  # the bytes, as latin-1
        else:
            assert head.startswith(b"HTTP/1.1 400 ")
            assert json.loads(body)["error"]["code"] == "bad_request"
    finally:
        cell_set.stop_all()


def test_the_cell_interface_setting() -> None:
    from fnstage.runtime.server import cell_interface

    assert cell_interface({}) == "rsgi"
    assert cell_interface({"FNSTAGE_CELL_INTERFACE": " ASGI "}) == "asgi"
    assert cell_interface({"FNSTAGE_CELL_INTERFACE": " RSGI "}) == "rsgi"
    # a cell clients reach with no front to carry their headers (an --env runtime's environment cell)
    assert cell_interface({}, public=True) == "asgi"
    assert cell_interface({"FNSTAGE_CELL_INTERFACE": "rsgi"}, public=True) == "rsgi"
    assert cell_interface({"FNSTAGE_CELL_INTERFACE": "asgi"}, public=True) == "asgi"
    with pytest.raises(ValueError, match=r"FNSTAGE_CELL_INTERFACE is 'wsgi': it must be one of asgi, rsgi"):
        cell_interface({"FNSTAGE_CELL_INTERFACE": "wsgi"})


def test_a_cell_that_cannot_start_says_why(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """A cell that fails before it serves exits 1, and the reason reaches the runtime's log: it was
    dropped (the forked child's `os._exit` in a `finally`), so a cell whose socket could not be bound
    was restarted again and again with "exit code 1" and nothing else to go on."""
    import threading

    zygote = Zygote()
    zygote.start()  # its own, started here: its stderr is the one this test captures
    codes: list[int] = []
    ended = threading.Event()
    try:
        folder = tmp_path / "cell"
        folder.mkdir()
        spec = CellSpec("demo", "dev", folder, "key", uds=folder / ("s" * 120))
        ours, theirs = Pipe(duplex=True)
        zygote.fork(spec, theirs.fileno(), lambda code: (codes.append(code), ended.set()))
        theirs.close()
        assert ended.wait(60)
        ours.close()
    finally:
        zygote.stop()
    assert codes == [1]
    err = capfd.readouterr().err
    assert "cell demo/dev could not run" in err
    assert f"uds: {folder / ('s' * 120)} is " in err and "a Unix socket's path holds at most 107" in err


def test_a_unix_socket_path_too_long_is_refused_by_name(tmp_path: Path) -> None:
    from fnstage.runtime.cell_server import UDS_PATH_MAX, listen

    fits = tmp_path / ("s" * (UDS_PATH_MAX - len(str(tmp_path)) - 1))
    listen(uds=fits, host="127.0.0.1", port=None).close()
    with pytest.raises(ValueError, match=r"is 108 bytes long; a Unix socket's path holds at most 107"):
        listen(uds=Path(str(fits) + "s"), host="127.0.0.1", port=None)
