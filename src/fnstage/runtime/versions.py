"""The versions a cell keeps beside the live ones: what version URLs run (issue 14).

`v7--demo.prod.localhost/user/me` runs version 7 of prod/user/me whatever prod serves now. The cell has
no store, so the first request for a version asks the supervisor (`fetch`), which reads the history
entry and sends back a row the cell loads; later requests find it here. At most `capacity` extra
versions are kept per cell, the least recently used dropped first (a request still running on a dropped
version keeps it alive: it holds its `LiveVersion`). Requests for a version being fetched share one
fetch; a version that is not there is remembered for a few seconds, so a flood of requests for it is not
a flood of reads.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from fnstage.runtime.loader import LiveVersion

VersionKey = tuple[str, str, int]  # (gateway, "env/base", version)
Fetch = Callable[[str, str, int], Awaitable[LiveVersion]]

DEFAULT_CAPACITY = int(os.environ.get("FNSTAGE_CELL_EXTRA_VERSIONS") or 8)
FETCH_TIMEOUT_S = 30.0
MISSING_FOR_S = 5.0


class VersionUnavailable(Exception):
    """This version cannot run here: `status` (404: not in history; 503: could not be fetched or loaded)
    and a message saying why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ExtraVersions:
    """An LRU of loaded versions keyed by (gateway, name, version). Used on the cell's event loop only."""

    def __init__(self, fetch: Fetch, capacity: int = DEFAULT_CAPACITY) -> None:
        self.fetch = fetch
        self.capacity = max(1, capacity)
        self._loaded: OrderedDict[VersionKey, LiveVersion] = OrderedDict()
        self._fetching: dict[VersionKey, asyncio.Future[LiveVersion]] = {}
        self._missing: dict[VersionKey, tuple[float, VersionUnavailable]] = {}
        self.fetches = 0
        self.evictions = 0

    def cached(self, gateway: str, name: str, version: int) -> LiveVersion | None:
        key = (gateway, name, version)
        live = self._loaded.get(key)
        if live is not None:
            self._loaded.move_to_end(key)
        return live

    async def get(self, gateway: str, name: str, version: int) -> LiveVersion:
        """The loaded version, fetching it on first use; raises VersionUnavailable."""
        live = self.cached(gateway, name, version)
        if live is not None:
            return live
        key = (gateway, name, version)
        missing = self._missing.get(key)
        if missing is not None:
            if time.monotonic() < missing[0]:
                raise missing[1]
            del self._missing[key]
        pending = self._fetching.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._fetch(key))
            self._fetching[key] = pending
        return await asyncio.shield(pending)

    async def _fetch(self, key: VersionKey) -> LiveVersion:
        self.fetches += 1
        try:
            async with asyncio.timeout(FETCH_TIMEOUT_S):
                live = await self.fetch(*key)
        except VersionUnavailable as exc:
            if exc.status == 404:
                self._missing[key] = (time.monotonic() + MISSING_FOR_S, exc)
            raise
        except TimeoutError:
            raise VersionUnavailable(
                503, f"version {key[2]} of {key[1]} did not load within {FETCH_TIMEOUT_S:g} s"
            ) from None
        finally:
            self._fetching.pop(key, None)
        self._loaded[key] = live
        self._loaded.move_to_end(key)
        while len(self._loaded) > self.capacity:
            self._loaded.popitem(last=False)
            self.evictions += 1
        return live

    def forget(self, gateway: str, name: str) -> None:
        """The function is gone (deleted or renamed): so are its extra versions."""
        for key in [k for k in self._loaded if k[0] == gateway and k[1] == name]:
            del self._loaded[key]
        for key in [k for k in self._missing if k[0] == gateway and k[1] == name]:
            del self._missing[key]

    def status(self) -> dict[str, object]:
        return {
            "loaded": [{"gateway": g, "name": n, "version": v} for g, n, v in self._loaded],
            "capacity": self.capacity,
            "fetches": self.fetches,
            "evictions": self.evictions,
        }
