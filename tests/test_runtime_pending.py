"""A cold start's deferred loads, through a real zygote: a fresh cell's bulk load holds its published
versions pending and answers at once; a request loads its function first, the warm-up the rest, and
status counts what is pending (issue 17 item 3)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from sqlalchemy import text

from fnstage.runtime import cells as cells_module
from fnstage.runtime.cell import CellSpec
from fnstage.runtime.cells import Cell, CellSet, Slot
from fnstage.runtime.loader import LiveVersion, LoadError
from fnstage.runtime.loads import BULK_LOAD, PENDING_LOAD_MS, measure
from fnstage.runtime.registry import Registry
from fnstage.runtime.supervisor import CellReports
from fnstage.runtime.zygote import Zygote
from fnstage.service.deployments import Deployments
from fnstage.service.gateways import Gateways
from fnstage.service.identity import Actor
from fnstage.store.engine import sqlite_url
from fnstage.store.records import published_fields, published_from_fields
from fnstage.store.store import Store
from fnstage.testing import RuntimeServer
from support.cells import ANSWER, Events, get, row
from support.pending import FAILS, bulk_copies

pytestmark = pytest.mark.timeout(120)

DEV: Slot = ("demo", "dev", "")


@pytest.fixture(scope="module")
def zygote() -> Iterator[Zygote]:
    z = Zygote()
    z.start()
    yield z
    z.stop()


class HeldWarmUp:
    """The supervisor's "warm" (its cold start's last batch answered) kept back from the cells, so
    every version stays pending until `release` lets their warm-up go."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.cells: list[Cell] = []
        self._send = Cell.send
        held = self

        def sending(cell: Cell, message: tuple[Any, ...]) -> None:
            if message == ("warm",):
                held.cells.append(cell)
                return
            held._send(cell, message)

        monkeypatch.setattr(Cell, "send", sending)

    def release(self) -> None:
        for cell in self.cells:
            self._send(cell, ("warm",))


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch) -> HeldWarmUp:
    monkeypatch.setattr("fnstage.runtime.cells.LOAD_BATCH", 4)
    monkeypatch.setattr("fnstage.runtime.cells.BULK_LOAD", 8)
    return HeldWarmUp(monkeypatch)


@pytest.fixture
def cells(zygote: Zygote, tmp_path: Path) -> Iterator[tuple[CellSet, Events]]:
    events = Events()

    def spec(slot: Slot) -> CellSpec:
        folder = tmp_path / f"{slot[0]}.{slot[1]}"
        return CellSpec(slot[0], slot[1], folder, "key", uds=folder / "cell.sock", defer_cold_start=True)

    cell_set = CellSet(spec, events, zygote)
    yield cell_set, events
    cell_set.stop_all()


def internal(cell_set: CellSet, what: str) -> dict[str, Any]:
    """The cell's own /_fnstage/<what>, with its control key."""
    spec = cell_set.spec_of(DEV)
    assert spec is not None and spec.uds is not None
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(spec.uds)), timeout=10) as client:
        answer = client.get(
            f"http://demo.dev.localhost/_fnstage/{what}", headers={"authorization": "Bearer key"}
        )
    data: dict[str, Any] = answer.json()
    return data


def until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 30
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def cold_start(cell_set: CellSet, bodies: dict[int, str] | None = None) -> list[LiveVersion | LoadError]:
    """Ten functions dev/fn/0..9 (version 1, answering their number) as a cold start streams them."""
    bodies = bodies or {}
    rows = [row(f"dev/fn/{i}", 1, bodies.get(i, ANSWER % i)) for i in range(10)]
    taken, results, error = cell_set.load_stream(iter([rows]))
    assert error is None and len(taken) == 10
    return results


def test_a_cold_start_serves_a_function_before_its_warm_up_reached_it(
    cells: tuple[CellSet, Events], held: HeldWarmUp
) -> None:
    cell_set, _ = cells
    results = cold_start(cell_set)
    assert all(isinstance(r, LiveVersion) for r in results)  # answered as loadable, none of them run
    assert held.cells, "the cold start's last answer was not followed by the warm-up's start"
    assert internal(cell_set, "health") == {"status": "ok", "live": 0, "pending": 10}
    assert internal(cell_set, "status")["watcher"]["pending"] == 10
    until(lambda: cell_set.status()[0]["pending"] == 10, "the supervisor's status never counted 10 pending")

    assert get(cell_set, DEV, "/fn/7").json() == {"version": 7}  # loaded by its request
    status = internal(cell_set, "status")
    assert [f["name"] for f in status["functions"]] == ["dev/fn/7"]
    assert status["watcher"]["pending"] == 9
    assert internal(cell_set, "health") == {"status": "ok", "live": 1, "pending": 9}

    held.release()  # the warm-up loads the rest
    until(lambda: internal(cell_set, "health")["pending"] == 0, "the warm-up never loaded the rest")
    assert internal(cell_set, "health") == {"status": "ok", "live": 10, "pending": 0}
    until(lambda: cell_set.status()[0]["pending"] == 0, "the supervisor's status still counts pending")
    assert [get(cell_set, DEV, f"/fn/{i}").json() for i in (0, 9)] == [{"version": 0}, {"version": 9}]


def test_a_failing_module_on_a_cold_start_is_reported_on_its_first_request_and_by_the_warm_up(
    cells: tuple[CellSet, Events], held: HeldWarmUp
) -> None:
    cell_set, events = cells
    results = cold_start(cell_set, {2: FAILS, 6: FAILS})
    assert all(isinstance(r, LiveVersion) for r in results)  # not run yet: nothing known to fail
    answer = get(cell_set, DEV, "/fn/2")
    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "load_failed"
    assert "dev/fn/2 version 1 failed to load: ZeroDivisionError" in answer.json()["error"]["message"]

    def failed() -> list[Any]:
        return [what for kind, _, what in events.seen if kind == "failed_late"]

    until(lambda: len(failed()) == 1, "the request's failed load was not reported to the supervisor")
    assert failed()[0][:2] == ("dev/fn/2", 1) and "ZeroDivisionError" in failed()[0][2]
    held.release()
    until(lambda: len(failed()) == 2, "the warm-up's failed load was not reported to the supervisor")
    assert failed()[1][:2] == ("dev/fn/6", 1)
    # neither is given back to a restarted cell, and the cell says why each is not served
    assert sorted(cell_set.live_names(DEV)) == sorted(f"dev/fn/{i}" for i in range(10) if i not in (2, 6))
    assert [(f["name"], f["version"]) for f in internal(cell_set, "status")["load_failures"]] == [
        ("dev/fn/2", 1),
        ("dev/fn/6", 1),
    ]
    assert get(cell_set, DEV, "/fn/6").status_code == 503
    assert get(cell_set, DEV, "/fn/5").json() == {"version": 5}


def test_a_save_or_a_removal_during_the_warm_up_replaces_the_pending_version(
    cells: tuple[CellSet, Events], held: HeldWarmUp
) -> None:
    cell_set, _ = cells
    cold_start(cell_set)
    [saved] = cell_set.load([row("dev/fn/3", 2, ANSWER % 103)])  # a save: loaded at once, as always
    assert isinstance(saved, LiveVersion) and saved.load_ms > 0
    cell_set.remove("demo", "dev/fn/4")
    assert internal(cell_set, "health")["pending"] == 8
    assert get(cell_set, DEV, "/fn/3").json() == {"version": 103}
    held.release()
    until(lambda: internal(cell_set, "health")["pending"] == 0, "the warm-up never loaded the rest")
    assert get(cell_set, DEV, "/fn/3").json() == {"version": 103}  # the pending version 1 never ran
    assert get(cell_set, DEV, "/fn/4").status_code == 404
    assert internal(cell_set, "health") == {"status": "ok", "live": 9, "pending": 0}


def test_an_eager_cell_loads_its_cold_start_before_it_answers(
    zygote: Zygote, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without `defer_cold_start` (a cell set of its own, not a supervisor's) nothing is pending: the
    failure is in the answer, as before."""
    monkeypatch.setattr("fnstage.runtime.cells.LOAD_BATCH", 4)
    monkeypatch.setattr("fnstage.runtime.cells.BULK_LOAD", 8)

    def spec(slot: Slot) -> CellSpec:
        folder = tmp_path / f"{slot[0]}.{slot[1]}"
        return CellSpec(slot[0], slot[1], folder, "key", uds=folder / "cell.sock")

    cell_set = CellSet(spec, Events(), zygote)
    try:
        results = cold_start(cell_set, {2: FAILS})
        assert [isinstance(r, LoadError) for r in results] == [i == 2 for i in range(10)]
        assert internal(cell_set, "health") == {"status": "ok", "live": 9, "pending": 0}
    finally:
        cell_set.stop_all()


# the registry's pending versions, and the supervisor's side of a late failure: pure parts -----------


def test_a_pending_version_goes_live_when_settled_unless_a_save_or_removal_came_first() -> None:
    registry = Registry()
    first, second, third = (
        row("dev/a", 1, ANSWER % 1),
        row("dev/b", 1, ANSWER % 2),
        row("dev/c", 1, ANSWER % 3),
    )
    registry.add_pending([first, second, third])
    assert registry.pending_count() == 3 and registry.get("demo", "dev/a") is None
    assert registry.pending("demo", "dev/a") is first
    loaded = _live(first)
    assert registry.settle(first, loaded) and registry.get("demo", "dev/a") is loaded
    assert not registry.settle(first, loaded)  # settled once
    assert registry.apply(_live(row("dev/b", 2, ANSWER % 2)))  # a save replaces the pending version
    assert registry.pending("demo", "dev/b") is None
    assert not registry.settle(second, _live(second))
    saved = registry.get("demo", "dev/b")
    assert saved is not None and saved.version == 2
    assert registry.remove("demo", "dev/c")  # a removal of a function only pending
    assert registry.pending_count() == 0 and registry.get("demo", "dev/c") is None


def test_a_failed_pending_load_is_recorded_and_a_newer_saves_failure_outlives_an_older_load() -> None:
    registry = Registry()
    old = row("dev/a", 1, ANSWER % 1)
    registry.add_pending([old])
    registry.record_failure("demo", "dev/a", 2, LoadError("version 2 broke"))  # a save that failed
    assert registry.pending("demo", "dev/a") is old  # version 1 still serves, within a load
    assert registry.settle(old, _live(old))
    failure = registry.failure("demo", "dev/a")
    assert failure is not None and failure.version == 2
    other = row("dev/b", 1, FAILS)
    registry.add_pending([other])
    assert registry.settle(other, LoadError("ZeroDivisionError"))
    assert registry.get("demo", "dev/b") is None
    assert registry.failure("demo", "dev/b") is not None


def test_the_supervisor_takes_a_late_failure_out_of_its_mirror_and_reports_it() -> None:
    reports = CellReports()
    reports.registry = registry = Registry()
    reported: list[tuple[Any, ...]] = []

    class Reporter:
        def failed(self, *args: Any) -> None:
            reported.append(args)

    reports.reporter = Reporter()
    registry.apply(_live(row("dev/a", 3, ANSWER % 3)))
    reports.failed_late(DEV, "demo", "dev/a", 3, LoadError("ZeroDivisionError at index.py:1"))
    assert registry.get("demo", "dev/a") is None
    failure = registry.failure("demo", "dev/a")
    assert failure is not None and failure.version == 3
    assert reported == [("demo", "dev/a", 3, "ZeroDivisionError at index.py:1")]


def test_a_warmed_version_shows_its_load_time_in_the_supervisors_status() -> None:
    """A pending mirror says -1 ms (not run yet); once its cell loaded it, the time the cell measured,
    as an eager load's mirror does (it stayed -1 for good: `/_fnstage/status` said so). A newer version
    saved meanwhile keeps its own."""
    reports = CellReports()
    reports.registry = registry = Registry()
    registry.apply(cells_module._mirror(row("dev/a", 3, ANSWER % 3), PENDING_LOAD_MS))
    registry.apply(cells_module._mirror(row("dev/b", 4, ANSWER % 4), 0.7))  # saved since: v4 is live
    reports.warmed(DEV, [("demo", "dev/a", 3, 0.0021), ("demo", "dev/b", 3, 0.005)])
    a, b = registry.get("demo", "dev/a"), registry.get("demo", "dev/b")
    assert a is not None and a.load_ms == pytest.approx(2.1)
    assert b is not None and b.version == 4 and b.load_ms == 0.7


def test_the_supervisors_mirror_is_the_version_the_constructor_makes() -> None:
    """`mirror_version` sets the fields itself (a cold start makes 100,000): every field as
    `LiveVersion(...)` sets it, the derived ones included."""
    published = row("dev/a", 3, ANSWER % 3)
    mirror = cells_module._mirror(published, 1.5)
    made = LiveVersion(
        gateway="demo",
        name="dev/a",
        version=3,
        semver="0.3.0",
        methods=frozenset({"GET"}),
        config={},
        main=mirror.main,
        is_async=False,
        timeout_s=30.0,
        loaded_at=mirror.loaded_at,
        bundle_hash=published.bundle_hash,
        load_ms=1.5,
    )
    assert {f.name: getattr(mirror, f.name) for f in dataclasses.fields(LiveVersion)} == {
        f.name: getattr(made, f.name) for f in dataclasses.fields(LiveVersion)
    }
    with pytest.raises(RuntimeError, match="runs in its cell"):
        mirror.main(None)


def _live(published: Any) -> LiveVersion:
    return LiveVersion(
        gateway=published.gateway,
        name=published.name,
        version=published.version,
        semver=published.semver,
        methods=frozenset({"GET"}),
        config={},
        main=lambda ctx: published.version,
        is_async=False,
        timeout_s=30.0,
        loaded_at=time.time(),
    )


# a real `fnstage runtime` on a store of 1,001 functions and a broken one: its cold start defers -------


@pytest.mark.e2e
def test_a_runtimes_cold_start_serves_at_once_and_reports_a_broken_module_as_failed(tmp_path: Path) -> None:
    """Health is ok with every version held (pending or loaded), each function answers, and a module
    that fails at import (found on its first request or by the warm-up) is reported to the store as a
    failed load, as `fnstage status` shows it, and answered 503 `load_failed`; health ends with none
    pending."""
    url = sqlite_url(tmp_path)
    store = Store.open(url)
    try:
        admin = Actor(1, "ada", True)
        Gateways(store).create(admin, "demo")
        deployments = Deployments(store)
        deployments.save(admin, "demo", "dev/seed", {"index.py": ANSWER % 1})
        with store.write() as tx:
            bulk_copies()(tx.conn, "demo", BULK_LOAD)  # dev/bulk/f1 ... (a cold start's bulk load)
        deployments.save(admin, "demo", "dev/broken", {"index.py": FAILS})
        with RuntimeServer(url, "demo", tmp_path / "runtime.log") as runtime:
            health = httpx.get(f"{runtime.url}/_fnstage/health", timeout=10).json()
            assert health["status"] == "ok" and health["cells"] == 1
            host = {"Host": "demo.dev.localhost"}
            assert httpx.get(f"{runtime.url}/bulk/f{BULK_LOAD}", headers=host, timeout=10).json() == {
                "version": 1
            }
            broken = httpx.get(f"{runtime.url}/broken", headers=host, timeout=10)
            assert broken.status_code == 503 and broken.json()["error"]["code"] == "load_failed"

            def reported() -> bool:
                with store.read() as tx:
                    rows = tx.conn.execute(
                        text("SELECT failed_version, error FROM runtime_functions WHERE name = 'dev/broken'")
                    ).all()
                return any(version == 1 and "ZeroDivisionError" in (error or "") for version, error in rows)

            until(reported, "the broken module's failure never reached the store")
            until(
                lambda: httpx.get(f"{runtime.url}/_fnstage/health", timeout=10).json()["pending"] == 0,
                "the warm-up never ended",
            )
            assert "dev/broken v1 failed to load" in runtime.log()
    finally:
        store.close()


def test_a_pending_version_is_not_counted_as_a_load_of_no_time() -> None:
    """/metrics' load count and durations: a version its cell holds pending has not run (its mirror's
    load time is PENDING_LOAD_MS); one that was loaded is measured as before."""
    seen: list[tuple[str, float]] = []

    class Metrics:
        def loaded(self, gateway: str, name: str, seconds: float) -> None:
            seen.append((name, seconds))

        def load_failed(self, gateway: str, name: str, seconds: float | None) -> None: ...

        def live_after_publish(self, gateway: str, name: str, seconds: float) -> None: ...

    published = row("dev/a", 1, ANSWER % 1)
    measure(Metrics(), published, cells_module._mirror(published, PENDING_LOAD_MS), just_published=False)
    measure(Metrics(), published, cells_module._mirror(published, 2.0), just_published=False)
    assert seen == [("dev/a", 0.002)]


def test_a_row_sent_to_a_cell_as_its_fields_is_the_same_record_there() -> None:
    """Rows go to a cell as tuples of their fields (a third of pickling the records): the cell's is
    the record the supervisor had, every field set."""
    import pickle

    published = dataclasses.replace(row("dev/a", 2, ANSWER % 2), lock_hash="f" * 64, published_at="now")
    again = published_from_fields(pickle.loads(pickle.dumps(published_fields(published))))
    assert again == published and vars(again) == vars(published)


def test_a_module_that_kills_its_cell_in_the_warm_up_is_quarantined_not_given_back(
    cells: tuple[CellSet, Events], held: HeldWarmUp
) -> None:
    """The warm-up runs a pending module that ends the cell's process: the restarted cell gets the
    others back pending, tries that one alone, and it kills the cell again: quarantined and reported
    as failed, never given back (pending again, it would kill every restart in turn)."""
    cell_set, events = cells
    killer = "import os\nos._exit(3)\n" + ANSWER % 5
    cold_start(cell_set, {5: killer})
    assert get(cell_set, DEV, "/fn/1").json() == {"version": 1}
    held.release()

    def failed() -> list[Any]:
        return [what for kind, _, what in events.seen if kind == "failed_late"]

    until(lambda: len(failed()) == 1, "the module that killed its cell was not reported")
    assert failed()[0] == ("dev/fn/5", 1, "killed its cell at load: exit code 3")
    assert [q["name"] for q in cell_set.quarantine_list()] == ["dev/fn/5"]
    assert "dev/fn/5" not in cell_set.live_names(DEV)
    until(lambda: _serves(cell_set, "/fn/9"), "the restarted cell does not serve the others")
    assert get(cell_set, DEV, "/fn/0").json() == {"version": 0}
    assert get(cell_set, DEV, "/fn/5").status_code == 503


def test_the_warm_up_tells_the_supervisor_which_pending_versions_it_loaded(
    cells: tuple[CellSet, Events], held: HeldWarmUp
) -> None:
    """Status says live once loaded: the cell sends what its warm-up (or a request) loaded, in batches,
    never a version that failed, nor before it was loaded."""
    cell_set, events = cells
    cold_start(cell_set, {4: FAILS})

    def warmed() -> list[tuple[str, str, int]]:
        return [item for kind, _, what in events.seen if kind == "warmed" for item in what]

    assert get(cell_set, DEV, "/fn/1").json() == {"version": 1}  # its request loads it first
    until(lambda: warmed() == [("demo", "dev/fn/1", 1)], "the request's load was not told")
    held.release()
    everyone = {("demo", f"dev/fn/{i}", 1) for i in range(10) if i != 4}
    until(lambda: set(warmed()) == everyone, "the warm-up's loads were not told")
    assert len(warmed()) == len(everyone)  # each once


def _serves(cell_set: CellSet, path: str) -> bool:
    try:
        return cell_set.spec_of(DEV) is not None and get(cell_set, DEV, path).status_code == 200
    except httpx.TransportError:  # restarting
        return False


def test_a_bulk_load_that_is_not_a_cold_start_is_loaded_before_it_is_answered(
    cells: tuple[CellSet, Events], held: HeldWarmUp
) -> None:
    """Rows that come as changes or a resync (`CellSet.load`; saves among them, which `--wait` waits
    for) are run before they are answered, even as a fresh cell's first bulk load: a module that
    fails at import is in the answer, not found later."""
    cell_set, _ = cells
    rows = [row(f"dev/fn/{i}", 1, FAILS if i == 2 else ANSWER % i) for i in range(10)]
    results = cell_set.load(rows)
    assert [isinstance(r, LoadError) for r in results] == [i == 2 for i in range(10)]
    assert not held.cells  # no warm-up: nothing pending
    assert internal(cell_set, "health") == {"status": "ok", "live": 9, "pending": 0}


def test_a_restarted_cell_given_back_its_versions_pending_says_so(
    cells: tuple[CellSet, Events], held: HeldWarmUp
) -> None:
    """A cell that dies after its warm-up gets what was live back as a cold start's: pending, not run
    yet. The supervisor is told which (status says pending again, then live when `warmed`)."""
    cell_set, events = cells
    cold_start(cell_set)
    held.release()
    until(lambda: internal(cell_set, "health")["pending"] == 0, "the warm-up never ended")
    dead = cell_set.ensure(DEV)
    assert dead is not None
    dead.kill()
    until(lambda: [k for k, _, _ in events.seen].count("ready") == 2, "the cell was not restarted")
    held_again = [item for kind, _, what in events.seen if kind == "held" for item in what]  # per batch
    assert sorted(held_again) == sorted((f"dev/fn/{i}", 1) for i in range(10))
    assert internal(cell_set, "health")["pending"] == 10  # its warm-up kept back by `held`


def test_deferred_loads_are_counted_in_metrics_as_eager_loads_are(
    cells: tuple[CellSet, Events], held: HeldWarmUp
) -> None:
    """/metrics' loads, load failures and load durations: a cold start's versions count once each when
    they are loaded (by a request or by the warm-up), failures with their duration, as the same
    loads done eagerly count; nothing while they are only pending. Read with Prometheus' own parser."""
    from prometheus_client.parser import text_string_to_metric_families

    from fnstage.runtime.metrics import RuntimeMetrics

    cell_set, _ = cells
    metrics = cell_set.metrics = RuntimeMetrics(lambda gateway, name: None)
    slow = "import time\ntime.sleep(0.03)\n" + ANSWER % 8  # a load the histogram can place

    def scraped() -> dict[str, float]:
        found: dict[str, float] = {}
        for family in text_string_to_metric_families(metrics.render().decode()):
            for sample in family.samples:
                if sample.labels.get("gateway") == "demo" and sample.labels.get("env") == "dev":
                    found[sample.name + str(sample.labels.get("le", ""))] = sample.value
        return found

    cold_start(cell_set, {4: FAILS, 8: slow})
    assert scraped().get("fnstage_loads_total", 0) == 0  # pending: nothing run
    assert get(cell_set, DEV, "/fn/1").json() == {"version": 1}  # loaded by its request
    until(lambda: scraped().get("fnstage_loads_total") == 1, "the request's load was not counted")
    held.release()
    until(lambda: scraped().get("fnstage_loads_total") == 9, "the warm-up's loads were not counted")
    until(lambda: scraped().get("fnstage_load_failures_total") == 1, "the failed load was not counted")
    seen = scraped()
    assert seen["fnstage_load_duration_seconds_count"] == 10  # every load timed, the failed one too
    assert seen["fnstage_load_duration_seconds_bucket0.025"] <= 9  # the slow one took 30 ms or more
    assert seen["fnstage_load_duration_seconds_bucket+Inf"] == 10


def test_a_request_for_a_pending_function_goes_before_the_warm_ups_next_rows(
    cells: tuple[CellSet, Events], held: HeldWarmUp
) -> None:
    """The warm-up runs slow modules in order; a request for the last one is answered after at most
    the load under way, not behind the rest of the warm-up's rows (it waited for its whole chunk of
    16 before, and the chunk's thread: the tail of first requests, BENCHMARKS.md)."""
    cell_set, _ = cells
    slow = "import time\ntime.sleep(1.0)\n"  # a second each: the request's way in is far shorter
    cold_start(cell_set, {i: slow + ANSWER % i for i in range(9)})
    held.release()
    until(lambda: internal(cell_set, "health")["live"] >= 1, "the warm-up never began")
    assert get(cell_set, DEV, "/fn/9").json() == {"version": 9}
    health = internal(cell_set, "health")
    assert health["pending"] >= 5, f"the request waited behind the warm-up's rows: {health}"


def test_a_warmed_batch_sent_in_several_messages_is_told_once(tmp_path: Path) -> None:
    """A cell sends a batch of loaded versions in messages of a few hundred (encoding thousands at once
    held its interpreter lock for milliseconds); the supervisor tells them once, in one report."""
    told: list[list[tuple[str, str, int, float]]] = []
    spec = CellSpec("demo", "dev", tmp_path, "key")
    cell = Cell(spec, cast(Zygote, None), lambda cell, items: None, lambda cell: None)
    cell.on_warmed = lambda _, items: told.append(items)
    cell._handle({"t": "warmed", "rows": [["demo", "dev/a", 1, 20]], "more": True})
    cell._handle({"t": "warmed", "rows": [["demo", "dev/b", 2, 30], ["other", "dev/c", 1, 5]], "more": True})
    assert told == []
    cell._handle({"t": "warmed", "rows": [["demo", "dev/d", 1, 10]]})
    assert told == [[("demo", "dev/a", 1, 2e-05), ("demo", "dev/b", 2, 3e-05), ("demo", "dev/d", 1, 1e-05)]]
