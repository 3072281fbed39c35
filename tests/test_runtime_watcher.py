"""The watcher, against a fake feed: snapshot on start, follow the log, resync after errors."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from fnstage.runtime.loader import LiveVersion, LoadError, load_rows
from fnstage.runtime.registry import Registry
from fnstage.runtime.watcher import Watcher
from fnstage.store.records import FeedEvent, PublishedFunction
from support.watcher_fakes import ChunkedFeed, FakeFeed, FakeReporter

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(20)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def feed() -> FakeFeed:
    feed = FakeFeed()
    feed.publish("demo", "dev/a", 1)
    feed.publish("demo", "prod/a", 3)
    feed.publish("other", "dev/a", 9)
    return feed


@pytest.fixture
async def watcher(feed: FakeFeed) -> AsyncIterator[Watcher]:
    watcher = Watcher(Registry(), lambda: feed, poll_interval_s=30, retry_delays_s=[0.001])
    await watcher.start()
    yield watcher
    await watcher.stop()


def versions(watcher: Watcher) -> dict[tuple[str, str], int]:
    return {(v.gateway, v.name): v.version for v in watcher.registry.live_versions()}


async def test_start_loads_the_snapshot(watcher: Watcher, feed: FakeFeed) -> None:
    assert versions(watcher) == {("demo", "dev/a"): 1, ("demo", "prod/a"): 3, ("other", "dev/a"): 9}
    live = watcher.registry.get("demo", "prod/a")
    assert live is not None and live.main(None) == {"version": 3}
    assert watcher.status()["positions"] == {"demo": 2, "other": 1}


async def test_follows_upserts_and_deletes(watcher: Watcher, feed: FakeFeed) -> None:
    feed.publish("demo", "dev/a", 2)
    feed.publish("demo", "dev/b", 1)
    watcher.poke()
    live = await watcher.wait_for("demo", "dev/a", 2)
    assert live.main(None) == {"version": 2}
    await watcher.wait_for("demo", "dev/b", 1)
    feed.unpublish("demo", "dev/a", 2)
    watcher.poke()
    await watcher.wait_for_removal("demo", "dev/a")
    assert ("demo", "dev/a") not in versions(watcher)
    assert watcher.status()["positions"]["demo"] == 5


async def test_an_older_version_never_replaces_a_newer_one(watcher: Watcher, feed: FakeFeed) -> None:
    feed.publish("demo", "dev/a", 5)
    watcher.poke()
    await watcher.wait_for("demo", "dev/a", 5)
    feed.publish("demo", "dev/a", 4)  # a late, older publish (events out of order)
    feed.publish("demo", "dev/marker", 1)
    watcher.poke()
    await watcher.wait_for("demo", "dev/marker", 1)
    assert versions(watcher)[("demo", "dev/a")] == 5


async def test_a_delete_older_than_the_live_version_is_ignored(watcher: Watcher, feed: FakeFeed) -> None:
    feed.publish("demo", "dev/a", 5)
    watcher.poke()
    await watcher.wait_for("demo", "dev/a", 5)
    with feed._lock:  # a stale delete in the log; the row stays published
        feed.log.append(FeedEvent("demo", feed._next("demo"), "dev/a", 4, "delete"))
    feed.publish("demo", "dev/marker", 1)
    watcher.poke()
    await watcher.wait_for("demo", "dev/marker", 1)
    assert versions(watcher)[("demo", "dev/a")] == 5


async def test_delete_then_create_again_in_one_batch(watcher: Watcher, feed: FakeFeed) -> None:
    feed.publish("demo", "dev/a", 6)
    watcher.poke()
    await watcher.wait_for("demo", "dev/a", 6)
    feed.unpublish("demo", "dev/a", 7)  # e.g. renamed away
    feed.publish("demo", "dev/a", 8)  # a new function with the old name continues its numbering
    feed.publish("demo", "dev/marker", 1)
    watcher.poke()
    await watcher.wait_for("demo", "dev/marker", 1)
    assert versions(watcher)[("demo", "dev/a")] == 8


async def test_a_lagging_snapshot_never_takes_a_version_back(watcher: Watcher, feed: FakeFeed) -> None:
    feed.publish("demo", "dev/a", 5)
    watcher.poke()
    await watcher.wait_for("demo", "dev/a", 5)
    feed.publish("demo", "dev/a", 4)  # what a read replica behind the primary would still show
    feed.pruned_before["demo"] = 10**6  # force the next read to be a resync from the snapshot
    feed.publish("demo", "dev/marker", 1)
    watcher.poke()
    await watcher.wait_for("demo", "dev/marker", 1)
    assert versions(watcher)[("demo", "dev/a")] == 5


async def test_resync_after_an_error_catches_up_on_missed_changes(watcher: Watcher, feed: FakeFeed) -> None:
    feed.fail = True
    feed.publish("demo", "dev/a", 2)
    feed.unpublish("demo", "prod/a", 3)
    watcher.poke()
    async with asyncio.timeout(5):
        while watcher.errors == 0:
            await asyncio.sleep(0.001)
    feed.fail = False
    await watcher.wait_for("demo", "dev/a", 2)
    await watcher.wait_for_removal("demo", "prod/a")
    assert watcher.status()["resyncs"] >= 2
    assert "database went away" in (watcher.last_error or "")


async def test_a_pruned_log_means_resync(watcher: Watcher, feed: FakeFeed) -> None:
    feed.publish("demo", "dev/a", 2)
    feed.pruned_before["demo"] = 10**6
    watcher.poke()
    await watcher.wait_for("demo", "dev/a", 2)
    assert watcher.resyncs == 2


async def test_a_load_error_keeps_the_previous_version_serving(watcher: Watcher, feed: FakeFeed) -> None:
    feed.publish("demo", "dev/a", 3, "x = 1 / 0\ndef main(ctx):\n    pass\n")
    watcher.poke()
    with pytest.raises(LoadError, match=r"ZeroDivisionError at index\.py:1"):
        await watcher.wait_for("demo", "dev/a", 3)
    assert versions(watcher)[("demo", "dev/a")] == 1
    failure = watcher.registry.failure("demo", "dev/a")
    assert failure is not None and failure.version == 3


async def test_a_load_does_not_block_the_event_loop(watcher: Watcher, feed: FakeFeed) -> None:
    slow = "import threading\nthreading.Event().wait(0.3)\ndef main(ctx):\n    return 'slow'\n"
    feed.publish("demo", "dev/slow", 1, slow)
    watcher.poke()
    ticks = 0
    waiting = asyncio.create_task(watcher.wait_for("demo", "dev/slow", 1))
    while not waiting.done():
        ticks += 1
        await asyncio.sleep(0.005)
    await waiting
    assert ticks > 5


async def test_removes_what_is_no_longer_published_on_resync(feed: FakeFeed) -> None:
    registry = Registry()
    first = Watcher(registry, lambda: feed, poll_interval_s=30)
    await first.start()
    await first.stop()
    feed.published.pop(("demo", "prod/a"))  # gone while no watcher was looking, log lost too
    second = Watcher(registry, lambda: feed, poll_interval_s=30)
    await second.start()
    await second.stop()
    assert ("demo", "prod/a") not in versions(second)
    assert feed.closed


async def test_a_gateway_bound_watcher_reads_only_its_gateway(feed: FakeFeed) -> None:
    watcher = Watcher(Registry(), lambda: feed, gateway="demo", poll_interval_s=30)
    await watcher.start()
    feed.publish("other", "dev/a", 10)
    feed.publish("demo", "dev/a", 2)
    watcher.poke()
    await watcher.wait_for("demo", "dev/a", 2)
    await watcher.stop()
    assert {g for g, _ in versions(watcher)} == {"demo"}
    assert {gw for _, gw in feed.calls} == {"demo"}


async def test_slow_poll_is_a_safety_net(feed: FakeFeed) -> None:
    watcher = Watcher(Registry(), lambda: feed, poll_interval_s=0.01)
    await watcher.start()
    feed.publish("demo", "dev/a", 2)  # no poke
    await watcher.wait_for("demo", "dev/a", 2)
    await watcher.stop()


async def test_follows_a_real_sqlite_store_through_inotify(tmp_path: Path) -> None:
    from fnstage.service.deployments import Deployments
    from fnstage.service.gateways import Gateways
    from fnstage.service.identity import Actor
    from fnstage.store.engine import sqlite_url
    from fnstage.store.feed import FeedReader
    from fnstage.store.store import Store

    url = sqlite_url(tmp_path)
    store = Store.open(url)
    actor = Actor(1, "ada", True)
    Gateways(store).create(actor, "demo")
    deployments = Deployments(store)
    deployments.save(actor, "demo", "dev/hello", {"index.py": "def main(ctx):\n    return 'one'\n"})
    # the slow poll is out of the picture: only the folder watch can wake the watcher
    watcher = Watcher(Registry(), lambda: FeedReader(url), gateway="demo", poll_interval_s=60)
    await watcher.start()
    try:
        first = watcher.registry.get("demo", "dev/hello")
        assert first is not None and first.main(None) == "one"
        await asyncio.to_thread(
            deployments.save, actor, "demo", "dev/hello", {"index.py": "def main(ctx):\n    return 'two'\n"}
        )
        second = await watcher.wait_for("demo", "dev/hello", first.version + 1)
        assert second.main(None) == "two"
        await asyncio.to_thread(deployments.delete, actor, "demo", "dev/hello")
        await watcher.wait_for_removal("demo", "dev/hello")
    finally:
        await watcher.stop()
        store.close()


def test_a_sqlite_publish_rings_the_doorbell_once_its_commit_is_visible(tmp_path: Path) -> None:
    """SQLite's NOTIFY: the doorbell file is written after the commit, when a reader in another
    connection already sees the change (the WAL file's own write comes before that), and never for a
    transaction that rolled back."""
    import sqlite3

    from fnstage.service.deployments import Deployments
    from fnstage.service.gateways import Gateways
    from fnstage.service.identity import Actor
    from fnstage.store import engine as engine_module
    from fnstage.store.engine import doorbell_path, sqlite_url
    from fnstage.store.store import Store

    store = Store.open(sqlite_url(tmp_path))
    database = Path(str(store.engine.url.database))
    actor = Actor(1, "ada", True)
    Gateways(store).create(actor, "demo")
    seen_at_ring: list[int] = []
    ring = engine_module.after_commit

    def watching_ring(conn: Any) -> None:
        if conn.info.get(engine_module._DOORBELL_DUE, False):
            with sqlite3.connect(database) as reader:  # another connection, as a runtime's
                seen_at_ring.append(reader.execute("SELECT max(seq) FROM publish_log").fetchone()[0])
        ring(conn)

    patch = pytest.MonkeyPatch()
    patch.setattr("fnstage.store.store.after_commit", watching_ring)
    try:
        Deployments(store).save(actor, "demo", "dev/hello", {"index.py": "def main(ctx):\n    return 1\n"})
        assert seen_at_ring == [1] and doorbell_path(database).exists()
        rung_at = doorbell_path(database).stat().st_mtime_ns
        with pytest.raises(RuntimeError), store.write() as tx:
            tx.unpublish("demo", "dev/hello", 2)
            raise RuntimeError("rolled back")
        assert seen_at_ring == [1] and doorbell_path(database).stat().st_mtime_ns == rung_at
        Deployments(store).delete(actor, "demo", "dev/hello")
        assert seen_at_ring == [1, 2]
    finally:
        patch.undo()
        store.close()


async def test_the_doorbell_alone_wakes_the_watcher_for_every_change(tmp_path: Path) -> None:
    """With no second look after a wake and no poll, only a wake that comes after the commit can
    carry a change: the doorbell's."""
    from fnstage.service.deployments import Deployments
    from fnstage.service.gateways import Gateways
    from fnstage.service.identity import Actor
    from fnstage.store.engine import sqlite_url
    from fnstage.store.feed import FeedReader
    from fnstage.store.store import Store

    url = sqlite_url(tmp_path)
    store = Store.open(url)
    actor = Actor(1, "ada", True)
    Gateways(store).create(actor, "demo")
    deployments = Deployments(store)
    deployments.save(actor, "demo", "dev/hello", {"index.py": "def main(ctx):\n    return 0\n"})
    watcher = Watcher(
        Registry(), lambda: FeedReader(url), gateway="demo", poll_interval_s=60, recheck_delays_s=()
    )
    await watcher.start()
    try:
        for n in range(1, 30):
            source = {"index.py": f"def main(ctx):\n    return {n}\n"}
            saved = await asyncio.to_thread(deployments.save, actor, "demo", "dev/hello", source)
            live = await watcher.wait_for("demo", "dev/hello", saved.function.version, timeout=10)
            assert live.main(None) == n
        await asyncio.to_thread(deployments.delete, actor, "demo", "dev/hello")
        await watcher.wait_for_removal("demo", "dev/hello", timeout=10)
    finally:
        await watcher.stop()
        store.close()


async def test_reports_what_is_live_failed_and_removed(feed: FakeFeed) -> None:
    reporter = FakeReporter()
    watcher = Watcher(
        Registry(), lambda: feed, gateway="demo", poll_interval_s=30, reporter_factory=lambda: reporter
    )
    await watcher.start()
    feed.publish("demo", "dev/a", 2, "x = 1 / 0\ndef main(ctx):\n    pass\n")
    feed.unpublish("demo", "prod/a", 3)
    watcher.poke()
    with pytest.raises(LoadError):
        await watcher.wait_for("demo", "dev/a", 2)
    await watcher.wait_for_removal("demo", "prod/a")
    await watcher.stop()
    calls = [c for c in reporter.calls if c != ("heartbeat",)]
    assert calls[0] == ("register",)
    assert set(calls[1:3]) == {("live", "demo", "dev/a", 1), ("live", "demo", "prod/a", 3)}
    assert ("removed", "demo", "prod/a") in calls
    assert ("failed", "demo", "dev/a", 2, "ZeroDivisionError at index.py:1: division by zero") in calls
    assert calls[-2:] == [("deregister",), ("close",)]
    assert ("heartbeat",) in reporter.calls


class TokenFeed(FakeFeed):
    """A feed whose change token moves only when something is published (like SQLite's data_version)."""

    def change_token(self) -> int:
        with self._lock:
            return 1 + len(self.log)


async def test_a_wake_that_finds_no_change_does_not_delay_the_next_one() -> None:
    # A file event seen before its commit finds no change yet; the watcher looks again later. A real
    # change announced meanwhile must be read at once, not after that later look (publish -> live).
    feed = TokenFeed()
    feed.publish("demo", "dev/a", 1)
    watcher = Watcher(Registry(), lambda: feed, poll_interval_s=30, recheck_delays_s=(5.0,))
    await watcher.start()
    try:
        for _ in range(2):  # the first look records the token; the second finds it unchanged
            watcher.poke()  # nothing changed: the watcher will look again in 5 s
            await asyncio.sleep(0.02)
        feed.publish("demo", "dev/a", 2)
        watcher.poke()
        await watcher.wait_for("demo", "dev/a", 2, timeout=2)
    finally:
        await watcher.stop()


class BlockedReporter(FakeReporter):
    """A control plane that is slow to write: every report waits for `release`."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def live(self, gateway: str, name: str, version: int) -> None:
        self.release.wait(10)
        super().live(gateway, name, version)


async def test_serving_and_following_the_feed_never_wait_for_reports(feed: FakeFeed) -> None:
    # A cold start of 10,000 functions writes 10,000 report rows: they must not hold back readiness, nor
    # the next change from the feed. Reports still all arrive, in order, before stop() returns.
    reporter = BlockedReporter()
    watcher = Watcher(
        Registry(),
        lambda: feed,
        poll_interval_s=30,
        startup_timeout_s=20,
        reporter_factory=lambda: reporter,
    )
    try:
        await asyncio.wait_for(watcher.start(), 5)
        assert versions(watcher) == {("demo", "dev/a"): 1, ("demo", "prod/a"): 3, ("other", "dev/a"): 9}
        feed.publish("demo", "dev/a", 2)
        watcher.poke()
        await watcher.wait_for("demo", "dev/a", 2, timeout=5)
    finally:
        reporter.release.set()
        await watcher.stop()
    lives = [c for c in reporter.calls if c[0] == "live"]
    assert len(lives) == 4 and lives[-1] == ("live", "demo", "dev/a", 2)
    assert reporter.calls[-2:] == [("deregister",), ("close",)]


async def test_a_commit_to_a_real_sqlite_store_wakes_the_watcher_through_the_event_loop(
    tmp_path: Path,
) -> None:
    import sys

    from fnstage.runtime.inotify import FolderWatch
    from fnstage.service.deployments import Deployments
    from fnstage.service.gateways import Gateways
    from fnstage.service.identity import Actor
    from fnstage.store.engine import sqlite_url
    from fnstage.store.feed import FeedReader
    from fnstage.store.store import Store

    url = sqlite_url(tmp_path)
    store = Store.open(url)
    with store.write() as tx:
        user = tx.create_user("ada", is_admin=True)
    actor = Actor(user.id, user.name, True)
    Gateways(store).create(actor, "demo")
    deployments = Deployments(store)
    deployments.save(actor, "demo", "dev/hello", {"index.py": "def main(ctx):\n    return 'one'\n"})
    # the slow poll is out of the picture: only the folder watch can wake the watcher
    watcher = Watcher(Registry(), lambda: FeedReader(url), gateway="demo", poll_interval_s=60)
    await watcher.start()
    try:
        if sys.platform.startswith("linux"):
            assert isinstance(watcher.wakes.folder_watch, FolderWatch)  # no watchfiles thread polling the GIL
        for text in ("two", "three"):
            saved = await asyncio.to_thread(
                deployments.save,
                actor,
                "demo",
                "dev/hello",
                {"index.py": f"def main(ctx):\n    return {text!r}\n"},
            )
            live = await watcher.wait_for("demo", "dev/hello", saved.function.version, timeout=5)
            assert live.main(None) == text
    finally:
        await watcher.stop()
        store.close()
    assert watcher.wakes.folder_watch is None


GC_PROBE = "import gc\nENABLED = gc.isenabled()\n\ndef main(ctx):\n    return ENABLED\n"


async def test_a_cold_start_loads_without_collections_and_a_change_thaws_them(feed: FakeFeed) -> None:
    # A cold start's bulk load runs with the cyclic collector off and freezes what it loaded (the
    # collections 10,000 loads trigger cost more than the loads); the next change must thaw it, or a
    # replaced version (its modules are a reference cycle) would never be freed.
    import gc
    import weakref

    feed.publish("demo", "dev/probe", 1, GC_PROBE)
    watcher = Watcher(Registry(), lambda: feed, poll_interval_s=30, bulk_load=4)
    try:
        await watcher.start()
        assert len(watcher.registry) == 4
        probe = watcher.registry.get("demo", "dev/probe")
        assert probe is not None and probe.main(None) is False  # loaded with the collector off
        assert gc.isenabled() and gc.get_freeze_count() > 0
        live = watcher.registry.get("demo", "dev/a")
        assert live is not None
        old_main = weakref.ref(live.main)
        del live
        feed.publish("demo", "dev/a", 2)
        watcher.poke()
        await watcher.wait_for("demo", "dev/a", 2)
        assert gc.get_freeze_count() == 0
        gc.collect()
        assert old_main() is None, "the replaced version was never collected"
    finally:
        gc.unfreeze()
        await watcher.stop()


async def test_a_small_cold_start_freezes_nothing(feed: FakeFeed) -> None:
    import gc

    watcher = Watcher(Registry(), lambda: feed, poll_interval_s=30)  # 3 functions, below BULK_LOAD
    try:
        await watcher.start()
        assert len(watcher.registry) == 3
        assert gc.isenabled() and gc.get_freeze_count() == 0
    finally:
        await watcher.stop()


async def test_a_load_under_way_when_the_watcher_stops_is_still_applied_and_logged(
    feed: FakeFeed, caplog: pytest.LogCaptureFixture
) -> None:
    """A cell swaps a version in (and serves it) before its answer reaches the supervisor: a stop in
    between must not drop the answer, or the version serves unannounced (no "loaded" line, no report)."""
    loading, release = threading.Event(), threading.Event()
    watcher = Watcher(Registry(), lambda: feed, poll_interval_s=30)

    def load_rows(rows: list) -> list:  # type: ignore[type-arg]
        if any(row.version == 2 for row in rows):
            loading.set()
            release.wait(5)
        return watcher._load_here(rows)

    watcher._load_rows = load_rows
    await watcher.start()
    feed.publish("demo", "dev/a", 2)
    watcher.poke()
    assert await asyncio.to_thread(loading.wait, 5)
    caplog.set_level("INFO", logger="fnstage.runtime")
    stopping = asyncio.create_task(watcher.stop())
    await asyncio.sleep(0.05)
    release.set()
    await stopping
    assert versions(watcher)[("demo", "dev/a")] == 2
    loads = [r.fields for r in caplog.records if getattr(r, "fields", {}).get("event") == "loaded"]
    assert [(x["name"], x["version"]) for x in loads] == [("dev/a", 2)]


async def test_a_deleted_functions_invocation_logs_go_with_it(feed: FakeFeed) -> None:
    # A runtime keeps the last invocations and the counts of each function; a function deleted must
    # take them along, or every function ever deleted stays in memory (build_app wires the two).
    import httpx

    from fnstage.runtime.server import build_app

    app = build_app(lambda: feed, gateway="demo", poll_interval_s=30)
    watcher = app.watcher
    assert isinstance(watcher, Watcher)
    await watcher.start()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as client:
            assert (await client.get("http://demo/dev/a")).json() == {"version": 1}
        assert [entry.status for entry in app.logs.recent("demo", "dev/a")] == [200]
        feed.unpublish("demo", "dev/a", 1)
        watcher.poke()
        await watcher.wait_for_removal("demo", "dev/a")
        assert app.logs.recent("demo", "dev/a") == []
        assert app.logs.take_counts() == []  # its counts went too: none is reported for it
    finally:
        await watcher.stop()


class RowsWithTheLog(FakeFeed):
    """A reader that reads the rows to load with the log (`FeedReader.changes_after`), as PostgreSQL's
    one round trip does; `held_back` names rows it leaves out, for `fetch` to bring."""

    def __init__(self) -> None:
        super().__init__()
        self.held_back: set[str] = set()
        self.fetched: list[list[str]] = []

    def changes_after(
        self, positions: dict[str, int], gateway: str | None
    ) -> tuple[list[FeedEvent], list[Any]] | None:
        events = self.events_after(positions, gateway)
        if events is None:
            return None
        with self._lock:
            names = {(e.gateway, e.name) for e in events if e.action == "upsert"}
            rows = [self.published[k] for k in sorted(names) if k in self.published]
        return events, [r for r in rows if r.name not in self.held_back]

    def fetch(self, gateway: str, names: list[str]) -> list[Any]:
        self.fetched.append(names)
        return super().fetch(gateway, names)


async def test_a_reader_that_reads_the_rows_with_the_log_needs_no_fetch() -> None:
    feed = RowsWithTheLog()
    feed.publish("demo", "dev/a", 1)
    watcher = Watcher(Registry(), lambda: feed, poll_interval_s=30, retry_delays_s=[0.001])
    await watcher.start()
    try:
        feed.publish("demo", "dev/a", 2)
        feed.publish("demo", "dev/b", 1)
        feed.unpublish("demo", "dev/b", 2)
        feed.publish("demo", "dev/c", 1)
        watcher.poke()
        await watcher.wait_for("demo", "dev/c", 1)
        assert versions(watcher) == {("demo", "dev/a"): 2, ("demo", "dev/c"): 1}
        assert feed.fetched == []  # every row came with the log
        feed.held_back = {"dev/d"}  # a row the read did not bring is fetched, never skipped
        feed.publish("demo", "dev/d", 4)
        watcher.poke()
        await watcher.wait_for("demo", "dev/d", 4)
        assert feed.fetched == [["dev/d"]]
    finally:
        await watcher.stop()


async def test_a_cold_start_loads_the_snapshot_as_it_is_read() -> None:
    """A reader that reads its snapshot in chunks (`FeedReader.snapshot_chunks`): each chunk is loaded
    before the next is read (the cells load while the supervisor still reads, where the whole snapshot
    of 100,000 rows was read first), and the positions and what is live are a snapshot's."""
    feed = ChunkedFeed()
    for i in range(3):
        feed.publish("demo", f"dev/f{i}", 1)

    def loading(rows: list[PublishedFunction]) -> list[LiveVersion | LoadError]:
        feed.order.extend(f"load {row.name}" for row in rows)
        return load_rows(rows)

    reporter = FakeReporter()
    watcher = Watcher(
        Registry(), lambda: feed, poll_interval_s=30, load_rows=loading, reporter_factory=lambda: reporter
    )
    await watcher.start()
    try:
        assert feed.order == [f"{step} dev/f{i}" for i in range(3) for step in ("read", "load")]
        assert versions(watcher) == {("demo", f"dev/f{i}"): 1 for i in range(3)}
        assert watcher.status()["positions"] == {"demo": 3}
        feed.publish("demo", "dev/f0", 2)  # and it follows the log from there
        watcher.poke()
        await watcher.wait_for("demo", "dev/f0", 2)
    finally:
        await watcher.stop()
    assert sorted(call[1:] for call in reporter.calls if call[0] == "live") == [
        ("demo", "dev/f0", 1),
        ("demo", "dev/f0", 2),
        ("demo", "dev/f1", 1),
        ("demo", "dev/f2", 1),
    ]


async def test_a_snapshot_read_that_breaks_off_applies_what_it_loaded_then_resyncs() -> None:
    """The rows loaded before the read failed are live and reported (a cell serves them); the resync
    that follows loads the rest."""
    feed = ChunkedFeed()
    for i in range(3):
        feed.publish("demo", f"dev/f{i}", 1)
    feed.break_after = 2
    watcher = Watcher(Registry(), lambda: feed, poll_interval_s=30, retry_delays_s=[0.001])
    await watcher.start()
    try:
        assert versions(watcher) == {("demo", f"dev/f{i}"): 1 for i in range(3)}
        assert watcher.errors == 1 and "middle of the snapshot" in (watcher.last_error or "")
        assert feed.order[:2] == ["read dev/f0", "read dev/f1"]
    finally:
        await watcher.stop()
