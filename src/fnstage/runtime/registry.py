"""The registry: which version of each function is live, per gateway, and which versions failed to load.

Reads (`get`) are a plain dict lookup with no lock: a swap replaces one dict item, which is atomic, and
a request keeps the `LiveVersion` it looked up for its whole life. Writers take a lock so that
"compare with the live version, then swap" is one step: versions only go forward (invariant 2).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

from fnstage.runtime.loader import LiveVersion, LoadError

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
        self._lock = threading.Lock()

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
        live_of, failures = self._live, self._failures
        with self._lock:
            for live in lives:
                key = (live.gateway, live.name)
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
        return applied

    def remove(self, gateway: str, name: str, version: int | None = None) -> bool:
        """Unload a function; a delete older than the live version is ignored (it arrived late)."""
        key = (gateway, name)
        with self._lock:
            current = self._live.get(key)
            self._failures.pop(key, None)
            if current is None or (version is not None and version < current.version):
                return False
            del self._live[key]
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
