"""The runtime's ear on PostgreSQL: LISTEN for publish events on one dedicated connection, forever.

A publishing transaction sends `pg_notify` (see `engine.notify_feed`), so an event arrives only after
its commit. Notifications are a wake-up, not the record: one sent while no connection listened is
gone. That is why every (re)connect LISTENs first and then yields `Connected`, on which the caller
resyncs from the published table and the publish log; whatever commits after LISTEN arrives as an
event, whatever committed before is in what the resync reads (invariant 3: no lost change).

    async for signal in PgNotifications(url):
        match signal:
            case Connected():    resync, then follow events
            case FeedEvent():    catch up from the publish log
            case Disconnected(): report "feed disconnected since signal.since", keep serving

The connection is autocommit and runs no query besides LISTEN; TCP keepalives notice a dead server or
a cut network on an idle connection. Reconnects back off exponentially with jitter, capped at 2 s, so
many runtimes coming back after a restart do not arrive in step.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

from fnstage.store.engine import FEED_CHANNEL
from fnstage.store.records import FeedEvent

logger = logging.getLogger("fnstage.store.notifications")

FIRST_RETRY_S = 0.05
MAX_RETRY_S = 2.0


@dataclass(frozen=True)
class Connected:
    """Listening (again): resync now, events follow."""

    at: datetime
    backend_pid: int


@dataclass(frozen=True)
class Disconnected:
    """Not listening since `since` (the loss, or the start when never connected); retrying."""

    since: datetime
    error: str
    retry_in_s: float


Signal = Connected | Disconnected | FeedEvent


def backoff(attempt: int, cap: float = MAX_RETRY_S, rng: Callable[[], float] = random.random) -> float:
    """Delay before reconnect attempt `attempt` (0-based): doubling from 50 ms up to `cap`, each
    drawn between half and all of it so that runtimes spread out."""
    return min(cap, FIRST_RETRY_S * 2.0**attempt) * (0.5 + rng() / 2)


# what the publish log holds: a function's publish or delete, an environment's new configuration
# (`store.configuration`), a change of a function's canary (`store.canaries`)
FEED_ACTIONS = frozenset({"upsert", "delete", "config", "canary"})


def parse_event(payload: str) -> FeedEvent | None:
    """The event a notification names, or None for a payload that is not one of ours."""
    try:
        data = json.loads(payload)
        event = FeedEvent(
            gateway=data["gateway"],
            seq=data["seq"],
            name=data["name"],
            version=data["version"],
            action=data["action"],
        )
    except (ValueError, TypeError, KeyError):
        return None
    fields_ok = isinstance(event.gateway, str) and isinstance(event.name, str)
    numbers_ok = type(event.seq) is int and type(event.version) is int
    if not (fields_ok and numbers_ok and event.action in FEED_ACTIONS):
        return None
    return event


def libpq_url(url: str) -> str:
    """libpq reads `postgresql://` URLs; SQLAlchemy's name the driver (`postgresql+psycopg://`)."""
    scheme, sep, rest = url.partition("://")
    if sep and scheme.startswith(("postgresql+", "postgres+")):
        return "postgresql://" + rest
    return url


class PgNotifications:
    """An endless async iterator of `Signal`s for one runtime worker; stop by leaving the loop."""

    def __init__(
        self,
        url: str,
        *,
        channel: str = FEED_CHANNEL,
        max_retry_s: float = MAX_RETRY_S,
        connect_timeout_s: int = 5,
        keepalive_idle_s: int = 10,
        keepalive_interval_s: int = 5,
        keepalive_count: int = 3,
    ) -> None:
        self.url = libpq_url(url)
        self.channel = channel
        self.max_retry_s = max_retry_s
        self.connect_args: dict[str, Any] = {
            "autocommit": True,
            "application_name": "fnstage-listener",
            "connect_timeout": connect_timeout_s,
            "keepalives": 1,
            "keepalives_idle": keepalive_idle_s,
            "keepalives_interval": keepalive_interval_s,
            "keepalives_count": keepalive_count,
        }
        self.backend_pid: int | None = None  # of the listening connection, while there is one

    def __aiter__(self) -> AsyncIterator[Signal]:
        return self.signals()

    async def signals(self) -> AsyncIterator[Signal]:
        since = datetime.now(UTC)
        attempt = 0
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self.url, **self.connect_args)
            except psycopg.Error as exc:
                delay = backoff(attempt, self.max_retry_s)
                attempt += 1
                yield Disconnected(since, _describe(exc), delay)
                await asyncio.sleep(delay)
                continue
            error = "the notification stream ended"
            try:
                async with conn:
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
                    self.backend_pid = conn.info.backend_pid
                    attempt = 0
                    yield Connected(datetime.now(UTC), conn.info.backend_pid)
                    async for notify in conn.notifies():
                        event = parse_event(notify.payload)
                        if event is None:
                            logger.warning(
                                "ignored a notification on %s: %.200r", notify.channel, notify.payload
                            )
                            continue
                        yield event
            except psycopg.Error as exc:
                error = _describe(exc)
            finally:
                self.backend_pid = None
            since = datetime.now(UTC)
            delay = backoff(attempt, self.max_retry_s)
            attempt += 1
            logger.warning("feed listener disconnected (%s); reconnecting in %.2f s", error, delay)
            yield Disconnected(since, error, delay)
            await asyncio.sleep(delay)


def _describe(exc: BaseException) -> str:
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first_line}" if first_line else type(exc).__name__
