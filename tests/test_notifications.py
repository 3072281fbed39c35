"""The PostgreSQL change feed against a real server: publish events arrive after commit only, never
for a rollback, and the listener comes back by itself when its connection is cut."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import pytest
from sqlalchemy import event, text

from fnstage.service import Actor, Services
from fnstage.store.engine import feed_payload
from fnstage.store.notifications import (
    Connected,
    Disconnected,
    PgNotifications,
    Signal,
    backoff,
    libpq_url,
    parse_event,
)
from fnstage.store.records import FeedEvent
from fnstage.store.store import Store, Tx
from support.functions import hello_files

pytestmark = [pytest.mark.engine("postgres"), pytest.mark.timeout(60)]  # store-using tests: postgres only


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@asynccontextmanager
async def listening(url: str) -> AsyncIterator[tuple[PgNotifications, asyncio.Queue[Signal]]]:
    """A listener pumped into a queue, so a test can wait for 'nothing' without ending the iterator."""
    listener = PgNotifications(url)
    queue: asyncio.Queue[Signal] = asyncio.Queue()

    async def pump() -> None:
        async for signal in listener:
            await queue.put(signal)

    task = asyncio.create_task(pump())
    try:
        yield listener, queue
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


async def next_signal(queue: asyncio.Queue[Signal], timeout: float = 2.0) -> Signal:
    async with asyncio.timeout(timeout):
        return await queue.get()


async def assert_quiet(queue: asyncio.Queue[Signal], seconds: float = 0.3) -> None:
    await asyncio.sleep(seconds)
    assert queue.empty(), f"unexpected: {queue.get_nowait()}"


def url_of(store: Store) -> str:
    return store.engine.url.render_as_string(hide_password=False)


def log_entries(store: Store) -> list[FeedEvent]:
    with store.read() as tx:
        rows = tx.conn.execute(
            text("select gateway_id, seq, name, version, action from publish_log order by seq")
        )
        return [FeedEvent(*row) for row in rows]


@pytest.mark.anyio
async def test_events_arrive_at_commit_and_match_the_publish_log(
    store: Store, services: Services, actor: Actor, gateway: str
) -> None:
    async with listening(url_of(store)) as (_, queue):
        assert isinstance(await next_signal(queue), Connected)

        conn = await asyncio.to_thread(store.engine.connect)
        transaction = conn.begin()
        await asyncio.to_thread(Tx(conn).unpublish, gateway, "dev/gone", 7)  # logs and NOTIFYs
        await assert_quiet(queue)  # not yet committed: nothing delivered
        await asyncio.to_thread(transaction.commit)
        conn.close()
        assert await next_signal(queue) == FeedEvent(gateway, 1, "dev/gone", 7, "delete")

        await asyncio.to_thread(services.deployments.save, actor, gateway, "dev/user/me", hello_files())
        await asyncio.to_thread(services.deployments.rename, actor, gateway, "dev/user/me", "dev/user/you")
        heard = [await next_signal(queue) for _ in range(3)]
        assert heard == log_entries(store)[1:]
        assert [(e.name, e.version, e.action) for e in heard] == [
            ("dev/user/me", 1, "upsert"),
            ("dev/user/me", 2, "delete"),
            ("dev/user/you", 2, "upsert"),
        ]
        await assert_quiet(queue)


@pytest.mark.anyio
async def test_a_save_that_fails_after_its_notify_is_never_heard(
    store: Store, services: Services, actor: Actor, gateway: str
) -> None:
    services.deployments.save(actor, gateway, "dev/user/me", hello_files())

    notified: list[Any] = []

    def note_notify(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "pg_notify" in statement:
            notified.append(conn)

    def fail_after_notify(conn: Any) -> None:  # at COMMIT, once pg_notify has run in this transaction
        if conn in notified:
            raise RuntimeError("the database went away mid-save")

    async with listening(url_of(store)) as (_, queue):
        assert isinstance(await next_signal(queue), Connected)
        event.listen(store.engine, "before_cursor_execute", note_notify)
        event.listen(store.engine, "commit", fail_after_notify)
        with pytest.raises(RuntimeError, match="went away"):
            await asyncio.to_thread(
                services.deployments.save, actor, gateway, "dev/user/me", hello_files("Hi")
            )
        event.remove(store.engine, "before_cursor_execute", note_notify)
        event.remove(store.engine, "commit", fail_after_notify)
        await assert_quiet(queue)

        saved = await asyncio.to_thread(
            services.deployments.save, actor, gateway, "dev/user/me", hello_files("Yo")
        )
        assert await next_signal(queue) == FeedEvent(
            gateway, 2, "dev/user/me", saved.function.version, "upsert"
        )
        await assert_quiet(queue)


@pytest.mark.anyio
async def test_a_terminated_listener_reconnects_and_says_so(
    store: Store, services: Services, actor: Actor, gateway: str
) -> None:
    async with listening(url_of(store)) as (listener, queue):
        first = await next_signal(queue)
        assert isinstance(first, Connected) and listener.backend_pid == first.backend_pid
        cut = time.monotonic()
        with store.write() as tx:
            assert tx.conn.execute(text(f"select pg_terminate_backend({first.backend_pid})")).scalar()
        lost = await next_signal(queue)
        assert isinstance(lost, Disconnected) and "closed the connection" in lost.error
        back = await next_signal(queue)
        assert isinstance(back, Connected) and back.backend_pid != first.backend_pid
        assert time.monotonic() - cut < 2.0
        assert lost.since < back.at

        await asyncio.to_thread(services.deployments.save, actor, gateway, "dev/user/me", hello_files())
        assert await next_signal(queue) == FeedEvent(gateway, 1, "dev/user/me", 1, "upsert")


@pytest.mark.anyio
async def test_an_unreachable_server_is_reported_and_retried_with_backoff() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    signals = PgNotifications(f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres").signals()
    try:
        seen = [await anext(signals) for _ in range(3)]
    finally:
        await signals.aclose()
    assert all(isinstance(s, Disconnected) for s in seen)
    down = [s for s in seen if isinstance(s, Disconnected)]
    assert len({s.since for s in down}) == 1  # one outage, since the start
    assert "Connection refused" in down[0].error or "connect" in down[0].error
    assert 0.025 <= down[0].retry_in_s <= 0.05 and 0.05 <= down[2].retry_in_s <= 0.2


def test_backoff_doubles_to_a_cap_with_jitter() -> None:
    assert [backoff(n, rng=lambda: 1.0) for n in range(8)] == [0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
    assert [backoff(n, rng=lambda: 0.0) for n in (0, 10)] == [0.025, 1.0]


def test_payloads_stay_far_below_the_notify_limit() -> None:
    widest = FeedEvent("g" * 40, 2**63 - 1, "dev/" + "\u00e9" * 216, 2**31 - 1, "delete")  # column maxima
    assert len(feed_payload(widest).encode()) < 1500 < 8000
    assert parse_event(feed_payload(widest)) == widest


def test_only_our_payloads_become_events() -> None:
    good = '{"gateway":"demo","seq":3,"name":"dev/a","version":2,"action":"upsert"}'
    assert parse_event(good) == FeedEvent("demo", 3, "dev/a", 2, "upsert")
    # a configuration or canary entry wakes a runtime too (it was ignored: a canary waited for a poll)
    assert parse_event(good.replace("upsert", "canary")) == FeedEvent("demo", 3, "dev/a", 2, "canary")
    assert parse_event(good.replace("upsert", "config")) == FeedEvent("demo", 3, "dev/a", 2, "config")
    for bad in [
        "",
        "not json",
        "[]",
        '{"gateway":"demo"}',
        good.replace("upsert", "drop"),
        good.replace("3", '"3"'),
    ]:
        assert parse_event(bad) is None


def test_sqlalchemy_urls_become_libpq_urls() -> None:
    assert (
        libpq_url("postgresql+psycopg://u:p@h:5/db?sslmode=require")
        == "postgresql://u:p@h:5/db?sslmode=require"
    )
    assert libpq_url("postgresql://u@h/db") == "postgresql://u@h/db"
