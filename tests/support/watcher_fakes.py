"""In-memory stand-ins for the watcher's seams: the store's feed reader and the status reporter."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

from fnstage.build import build
from fnstage.store.records import FeedEvent, PublishedFunction


class FakeFeed:
    """The store's FeedReader, in memory. Thread-safe enough: the watcher calls it from one thread."""

    database_dir: Path | None = None

    def __init__(self) -> None:
        self.published: dict[tuple[str, str], PublishedFunction] = {}
        self.log: list[FeedEvent] = []
        self.seq: dict[str, int] = {}
        self.pruned_before: dict[str, int] = {}
        self.fail = False
        self.calls: list[tuple[str, str | None]] = []
        self.closed = False
        self._lock = threading.Lock()

    # writing, as the store would
    def publish(
        self, gateway: str, name: str, version: int, body: str = "", *, methods: list[str] | None = None
    ) -> None:
        code = body or f"def main(ctx):\n    return {{'version': {version}}}\n"
        bundle = build({"index.py": code}, "index.py")
        with self._lock:
            seq = self._next(gateway)
            self.published[(gateway, name)] = PublishedFunction(
                gateway,
                name,
                version,
                f"0.{version}.0",
                "index.py",
                bundle.compiled,
                dict(bundle.files),
                bundle.hash,
                methods or ["GET", "POST"],
                {},
                seq,
            )
            self.log.append(FeedEvent(gateway, seq, name, version, "upsert"))

    def unpublish(self, gateway: str, name: str, version: int) -> None:
        with self._lock:
            seq = self._next(gateway)
            self.published.pop((gateway, name), None)
            self.log.append(FeedEvent(gateway, seq, name, version, "delete"))

    def _next(self, gateway: str) -> int:
        self.seq[gateway] = self.seq.get(gateway, 0) + 1
        return self.seq[gateway]

    # reading, as the runtime does
    def snapshot(self, gateway: str | None) -> tuple[list[PublishedFunction], dict[str, int]]:
        self.calls.append(("snapshot", gateway))
        self._maybe_fail()
        with self._lock:
            rows = [r for r in self.published.values() if gateway in (None, r.gateway)]
            return rows, {g: s for g, s in self.seq.items() if gateway in (None, g)}

    def events_after(self, positions: dict[str, int], gateway: str | None) -> list[FeedEvent] | None:
        self.calls.append(("events_after", gateway))
        self._maybe_fail()
        with self._lock:
            for g, since in positions.items():
                if since < self.pruned_before.get(g, 0):
                    return None
            if any(g not in positions for g in self.seq if gateway in (None, g)):
                return None
            return [
                e for e in self.log if gateway in (None, e.gateway) and e.seq > positions.get(e.gateway, 0)
            ]

    def fetch(self, gateway: str, names: list[str]) -> list[PublishedFunction]:
        self._maybe_fail()
        with self._lock:
            return [self.published[(gateway, n)] for n in names if (gateway, n) in self.published]

    def change_token(self) -> int:
        return 0

    def close(self) -> None:
        self.closed = True

    def _maybe_fail(self) -> None:
        if self.fail:
            raise ConnectionError("database went away")


class ChunkedFeed(FakeFeed):
    """A FakeFeed whose snapshot can also be read a row at a time (`FeedReader.snapshot_chunks`), each
    read noted in `order`; `break_after`: the read fails once after that many rows."""

    def __init__(self) -> None:
        super().__init__()
        self.order: list[str] = []
        self.break_after: int | None = None

    def snapshot_chunks(
        self, gateway: str | None, positions: dict[str, int]
    ) -> Iterator[list[PublishedFunction]]:
        rows, heads = self.snapshot(gateway)
        positions.update(heads)
        for index, row in enumerate(rows):
            if self.break_after is not None and index == self.break_after:
                self.break_after = None
                raise ConnectionError("database went away in the middle of the snapshot")
            self.order.append(f"read {row.name}")
            yield [row]


class FakeReporter:
    def __init__(self) -> None:
        self.calls: list[tuple[object, ...]] = []

    def register(self) -> None:
        self.calls.append(("register",))

    def heartbeat(self, feed_state: str = "connected", feed_since: object = None) -> None:
        self.calls.append(("heartbeat",))

    def live(self, gateway: str, name: str, version: int) -> None:
        self.calls.append(("live", gateway, name, version))

    def live_many(self, items: list[tuple[str, str, int, str]], *, pending: bool = False) -> None:
        for gateway, name, version, _bundle_hash in items:
            if pending:
                self.calls.append(("pending", gateway, name, version))
            else:
                self.live(gateway, name, version)

    def warmed(self, items: list[tuple[str, str, int]]) -> None:
        for gateway, name, version in items:
            self.live(gateway, name, version)

    def failed(self, gateway: str, name: str, version: int, error: str) -> None:
        self.calls.append(("failed", gateway, name, version, error))

    def removed(self, gateway: str, name: str) -> None:
        self.calls.append(("removed", gateway, name))

    def deregister(self) -> None:
        self.calls.append(("deregister",))

    def close(self) -> None:
        self.calls.append(("close",))
