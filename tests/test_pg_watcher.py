"""The watcher on a push feed (PostgreSQL's LISTEN/NOTIFY), against a fake one: an event wakes it at
once, a reconnect resyncs what changed while it was away, a loss is reported and serving goes on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from fnstage.runtime.registry import Registry
from fnstage.runtime.watcher import Watcher
from fnstage.store.notifications import Connected, Disconnected, Signal
from fnstage.store.records import FeedEvent
from support.watcher_fakes import FakeFeed, FakeReporter

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(20)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class PushFeed(FakeFeed):
    """A FakeFeed whose changes are pushed, as `FeedReader.notifications()` does on PostgreSQL."""

    def __init__(self) -> None:
        super().__init__()
        self.signals: asyncio.Queue[Signal] = asyncio.Queue()

    def notifications(self) -> AsyncIterator[Signal]:
        async def signals() -> AsyncIterator[Signal]:
            while True:
                yield await self.signals.get()

        return signals()

    def announce(self) -> None:
        event = self.log[-1]
        self.signals.put_nowait(event)


class StateReporter(FakeReporter):
    def __init__(self) -> None:
        super().__init__()
        self.feed: list[tuple[str, datetime | None]] = []

    def heartbeat(self, feed_state: str = "connected", feed_since: object = None) -> None:
        assert feed_since is None or isinstance(feed_since, datetime)
        self.feed.append((feed_state, feed_since))


def connected() -> Connected:
    return Connected(datetime.now(UTC), 1234)


async def started(feed: PushFeed, reporter: StateReporter | None = None) -> Watcher:
    # no file watch and a poll far beyond the test's time: only the push feed can wake it
    watcher = Watcher(
        Registry(),
        lambda: feed,
        poll_interval_s=60,
        watch_files=False,
        retry_delays_s=[0.001],
        reporter_factory=(lambda: reporter) if reporter else None,
    )
    await watcher.start()
    return watcher


async def eventually(check: object, timeout: float = 2.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.005)


async def test_an_event_wakes_the_watcher_at_once() -> None:
    feed = PushFeed()
    feed.publish("demo", "dev/a", 1)
    watcher = await started(feed)
    try:
        feed.signals.put_nowait(connected())
        feed.publish("demo", "dev/a", 2)
        feed.announce()
        await watcher.wait_for("demo", "dev/a", 2, timeout=1)
        # the payload is only a hint: the watcher reads the log from its position
        feed.publish("demo", "dev/a", 3)
        feed.publish("demo", "dev/b", 1)
        feed.signals.put_nowait(FeedEvent("demo", 999, "dev/elsewhere", 1, "upsert"))
        await watcher.wait_for("demo", "dev/a", 3, timeout=1)
        await watcher.wait_for("demo", "dev/b", 1, timeout=1)
        assert watcher.resyncs == 1  # the start's: the first connect caught up from the log
    finally:
        await watcher.stop()


async def test_a_reconnect_resyncs_what_changed_while_away() -> None:
    feed = PushFeed()
    feed.publish("demo", "dev/a", 1)
    feed.publish("demo", "dev/gone", 1)
    reporter = StateReporter()
    watcher = await started(feed, reporter)
    try:
        feed.signals.put_nowait(connected())
        lost = datetime.now(UTC)
        feed.signals.put_nowait(Disconnected(lost, "OperationalError: server closed the connection", 0.05))
        await eventually(lambda: watcher.status()["feed_state"] == "disconnected")
        assert watcher.status()["feed_since"] == lost.isoformat()
        # changes nobody hears about: no event will ever arrive for them
        feed.publish("demo", "dev/a", 2)
        feed.unpublish("demo", "dev/gone", 2)
        feed.pruned_before["demo"] = 10**6  # and the log no longer reaches back
        assert watcher.registry.get("demo", "dev/a").version == 1
        # still disconnected on retries: the reported outage keeps its start
        feed.signals.put_nowait(Disconnected(datetime.now(UTC), "refused", 0.1))
        feed.signals.put_nowait(connected())
        await watcher.wait_for("demo", "dev/a", 2, timeout=1)
        await watcher.wait_for_removal("demo", "dev/gone", timeout=1)
        assert watcher.resyncs == 2
        assert watcher.status()["feed_state"] == "connected"
        await eventually(lambda: any(s == "connected" for s, _ in reporter.feed[1:]))
        states = [s for s, _ in reporter.feed]
        assert states[states.index("disconnected") :].count("disconnected") == 1
        assert ("disconnected", lost) in reporter.feed
    finally:
        await watcher.stop()


async def test_the_heartbeat_carries_the_feed_state() -> None:
    feed = PushFeed()
    feed.publish("demo", "dev/a", 1)
    reporter = StateReporter()
    watcher = await started(feed, reporter)
    watcher.heartbeat_interval_s = 0
    try:
        lost = datetime.now(UTC)
        feed.signals.put_nowait(Disconnected(lost, "refused", 0.05))
        await eventually(lambda: watcher.status()["feed_state"] == "disconnected")
        watcher.poke()  # any wake heartbeats when due
        await eventually(lambda: reporter.feed.count(("disconnected", lost)) >= 2)
    finally:
        await watcher.stop()


async def test_a_reconnect_ends_the_wait_before_retrying_a_failed_read() -> None:
    # The database restarts: reads fail and the watcher backs off (up to 5 s); once the listener is
    # connected again the database is back, and waiting out the rest of the delay only delays the
    # deployments made meanwhile (5.4 s after a restart, measured, before this).
    feed = PushFeed()
    feed.publish("demo", "dev/a", 1)
    watcher = Watcher(Registry(), lambda: feed, poll_interval_s=60, watch_files=False, retry_delays_s=[5.0])
    await watcher.start()
    try:
        feed.signals.put_nowait(connected())
        feed.fail = True
        watcher.poke()
        await eventually(lambda: watcher.errors == 1)
        feed.fail = False
        feed.publish("demo", "dev/a", 2)
        feed.signals.put_nowait(connected())
        await watcher.wait_for("demo", "dev/a", 2, timeout=1)
    finally:
        await watcher.stop()


async def test_a_push_feed_that_breaks_is_reported_and_polling_goes_on() -> None:
    class Broken(PushFeed):
        def notifications(self) -> AsyncIterator[Signal]:
            async def signals() -> AsyncIterator[Signal]:
                yield connected()
                raise RuntimeError("a bug in the listener")

            return signals()

    feed = Broken()
    feed.publish("demo", "dev/a", 1)
    watcher = Watcher(Registry(), lambda: feed, poll_interval_s=0.05, watch_files=False)
    await watcher.start()
    try:
        await eventually(lambda: watcher.status()["feed_state"] == "disconnected")
        feed.publish("demo", "dev/a", 2)  # the safety-net poll still follows the log
        await watcher.wait_for("demo", "dev/a", 2, timeout=1)
    finally:
        await watcher.stop()
