"""The registry: which version of each function is live, per gateway, and which versions failed to load.

Reads (`get`) are a plain dict lookup with no lock: a swap replaces one dict item, which is atomic, and
a request keeps the `LiveVersion` it looked up for its whole life. Writers take a lock so that
"compare with the live version, then swap" is one step: versions only go forward (invariant 2).

A cell's cold start also holds *pending* versions: published rows it holds but has not run yet (a
deferred load, `cell.SupervisorLink`). They are kept apart from the live ones, so the request path's
lookup is unchanged; a live version of the same function (a newer save), a removal or the pending
row's own load (`settle`) ends one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fnstage.runtime.loader import LiveVersion, LoadError

if TYPE_CHECKING:  # a store record, held as it came
    from fnstage.store.records import PublishedFunction

Key = tuple[str, str]  # (gateway, "env/base")


@dataclass(frozen=True)
class LoadFailure:
    gateway: str
    name: str
    version: int
    summary: str
    traceback: str
    at: float  # time.time()


class Registry:
    def __init__(self) -> None:
        self._live: dict[Key, LiveVersion] = {}
        # the same dict (never replaced), for the app to read itself: `get` without the call
        self.by_key: Mapping[Key, LiveVersion] = self._live
        self._failures: dict[Key, LoadFailure] = {}
        self._pending: dict[Key, PublishedFunction] = {}  # held, not run yet (a deferred cold start)
        self._lock = threading.Lock()
        # called (on the writer's thread, holding the lock) after the live versions changed: the app
        # forgets what it resolved from them (`RuntimeApp.hot`)
        self.on_change: list[Callable[[], None]] = []

    def _changed(self) -> None:
        for forget in self.on_change:
            forget()

    def get(self, gateway: str, name: str) -> LiveVersion | None:
        return self._live.get((gateway, name))

    def apply(self, live: LiveVersion, *, allow_older: bool = False) -> bool:
        """Make `live` the served version; False (and nothing changes) when the live version is the
        same (version and bundle hash) or newer. A version is identified by its number and its bundle's
        hash: a published row with the live number but another hash is what the store now holds (a row
        written behind the control plane's back must not stay live), so it replaces the live one.
        `allow_older` is for a resync only, where the published table is the truth."""
        return self.apply_many([live], allow_older=allow_older)[0]

    def apply_many(self, lives: list[LiveVersion], *, allow_older: bool = False) -> list[bool]:
        """`apply` of each, in order, under one taking of the lock: a cold start applies 100,000 at
        once (in the supervisor after its cells answered, and in the cell after each batch)."""
        applied = []
        live_of, failures, pending = self._live, self._failures, self._pending
        with self._lock:
            for live in lives:
                key = (live.gateway, live.name)
                if pending:
                    held = pending.get(key)
                    if held is not None and (held.version <= live.version or allow_older):
                        del pending[key]  # a save (or the resync's truth) replaces the version not run
                current = live_of.get(key)
                if current is not None and (
                    (live.version == current.version and live.bundle_hash == current.bundle_hash)
                    or (live.version < current.version and not allow_older)
                ):
                    applied.append(False)
                    continue
                live_of[key] = live
                if failures:
                    failure = failures.get(key)
                    if failure is not None and failure.version <= live.version:
                        del failures[key]
                applied.append(True)
            if self.on_change and True in applied:
                self._changed()
        return applied

    def remove(self, gateway: str, name: str, version: int | None = None) -> bool:
        """Unload a function; a delete older than the live version is ignored (it arrived late)."""
        key = (gateway, name)
        with self._lock:
            current = self._live.get(key)
            held = self._pending.get(key)
            self._failures.pop(key, None)
            if held is not None and (version is None or version >= held.version):
                del self._pending[key]
                if current is None:
                    return True  # not live: nothing served changed
            if current is None or (version is not None and version < current.version):
                return False
            del self._live[key]
            self._changed()
            return True

    def add_pending(self, rows: list[PublishedFunction]) -> None:
        """Hold `rows` as pending: published, servable within a load, not run yet. A row whose version
        (or a newer one) is already live is not held (it is what a resync already serves)."""
        live_of, pending = self._live, self._pending
        with self._lock:
            for row in rows:
                key = (row.gateway, row.name)
                current = live_of.get(key)
                if current is not None and (
                    (current.version == row.version and current.bundle_hash == row.bundle_hash)
                    or current.version > row.version
                ):
                    continue
                pending[key] = row

    def pending(self, gateway: str, name: str) -> PublishedFunction | None:
        """The function's pending row, if it has one (its request loads it first)."""
        return self._pending.get((gateway, name))

    def pending_count(self) -> int:
        return len(self._pending)

    def settle(self, row: PublishedFunction, result: LiveVersion | LoadError) -> bool:
        """The pending `row` was loaded: its version goes live, or its failure is recorded. False (and
        nothing changes) when `row` is no longer pending (replaced by a save, or removed meanwhile)."""
        key = (row.gateway, row.name)
        with self._lock:
            if self._pending.get(key) is not row:
                return False
            del self._pending[key]
            if isinstance(result, LiveVersion):
                self._live[key] = result
                self._changed()
                failure = self._failures.get(key)
                if failure is not None and failure.version <= row.version:
                    del self._failures[key]  # a newer save's failure stays recorded
            else:
                self._failures[key] = LoadFailure(
                    row.gateway, row.name, row.version, result.summary, result.traceback, time.time()
                )
            return True

    def fail_live(self, gateway: str, name: str, version: int, error: LoadError) -> bool:
        """`version`, live (held as loadable), failed when it was run after all (a deferred load in
        its cell): it stops being live and its failure is recorded. False if another version is live."""
        key = (gateway, name)
        with self._lock:
            current = self._live.get(key)
            if current is None or current.version != version:
                return False
            del self._live[key]
            self._changed()
            self._failures[key] = LoadFailure(
                gateway, name, version, error.summary, error.traceback, time.time()
            )
            return True

    def record_failure(self, gateway: str, name: str, version: int, error: LoadError) -> None:
        key = (gateway, name)
        with self._lock:
            current = self._live.get(key)
            if current is not None and current.version >= version:
                return  # a newer version already serves: the failure is history
            self._failures[key] = LoadFailure(
                gateway, name, version, error.summary, error.traceback, time.time()
            )

    def failure(self, gateway: str, name: str) -> LoadFailure | None:
        return self._failures.get((gateway, name))

    def failures(self) -> list[LoadFailure]:
        return sorted(self._failures.values(), key=lambda f: (f.gateway, f.name))

    def live_versions(self, gateway: str | None = None) -> list[LiveVersion]:
        items = list(self._live.values())
        return sorted(
            (v for v in items if gateway is None or v.gateway == gateway), key=lambda v: (v.gateway, v.name)
        )

    def names(self, gateway: str | None = None) -> set[Key]:
        return {key for key in list(self._live) if gateway is None or key[0] == gateway}

    def __len__(self) -> int:
        return len(self._live)
