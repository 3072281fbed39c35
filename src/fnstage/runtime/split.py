"""A cell's side of a canary release (issue 14): which version a request gets, and counts per version.

The supervisor tells the cell, for each function with a running canary, the stable version, the canary
version and the canary's share in percent. A request whose function has a split goes to the canary
with probability `share`/100: by a hash of its key when the client sends one (header `x-fnstage-key`
or cookie `fnstage-key`), so a client stays on its side for the whole canary, else at random. The split
applies only while the live version is the stable one it names, so a decided canary (the stable code
released again, or the canary's code made live, either as a new version) stops splitting at once.
Both sides' requests, failures and latencies are counted here and sent to the supervisor.
"""

from __future__ import annotations

import random
import zlib
from bisect import bisect_left as _bisect_left
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie

from fnstage.domain.canary import BUCKETS_MS, ArmCounts

KEY_HEADER = b"x-fnstage-key"
KEY_COOKIE = "fnstage-key"
_KEY_COOKIE_BYTES = KEY_COOKIE.encode()
SplitKey = tuple[str, str]  # (gateway, "env/base")


@dataclass(frozen=True, slots=True)
class Split:
    stable: int
    canary: int
    share: int  # percent of requests for the canary


def key_of(header: bytes | None, cookie: bytes | None) -> bytes | None:
    """The client's key for sticky routing, from the request's `x-fnstage-key` header, else its
    `fnstage-key` cookie (both found by the app's own walk over the headers: a second walk cost every
    split request about a tenth of the split's cost); None without either."""
    if header:
        return header
    if cookie is not None and _KEY_COOKIE_BYTES in cookie:
        try:
            jar = SimpleCookie(cookie.decode("latin-1"))
        except CookieError:
            return None
        morsel = jar.get(KEY_COOKIE)
        if morsel is not None and morsel.value:
            return morsel.value.encode("latin-1")
    return None


def to_canary(split: Split, key: bytes | None) -> bool:
    """Whether this request goes to the canary: the same answer for the same key and canary."""
    if key is None:
        return random.random() * 100 < split.share
    return zlib.crc32(key + b"\0" + str(split.canary).encode()) % 100 < split.share


class SplitStats:
    """Requests, failures and latencies per (gateway, name, version) of split functions, since this cell
    began serving the split; `take` gives those that changed (cumulative values)."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str, int], ArmCounts] = {}
        self._taken: dict[tuple[str, str, int], int] = {}  # requests of each side at the last `take`
        self._last: list[list[object]] = []  # a decided canary's sides, not yet taken when it ended

    def record(self, gateway: str, name: str, version: int, failed: bool, ms: float) -> None:
        """On every split request: kept to a few dict and list operations (the hot path); what changed
        is found by `take`, once a second, not marked here."""
        key = (gateway, name, version)
        counts = self._counts.get(key)
        if counts is None:
            counts = self._counts[key] = ArmCounts()
        counts.requests += 1
        if failed:
            counts.errors += 1
        counts.latency[_bisect_left(BUCKETS_MS, ms)] += 1  # the last bucket is +inf: always in range

    def take(self) -> list[list[object]]:
        """The sides that answered since the last call, with their totals (every request is counted in
        `requests`, so a side whose total moved is a side that changed)."""
        changed, self._last = self._last, []
        for key in sorted(self._counts):
            counts = self._counts[key]
            if self._taken.get(key) != counts.requests:
                self._taken[key] = counts.requests
                changed.append([*key, counts.requests, counts.errors, list(counts.latency)])
        return changed

    def keep_only(self, splits: dict[SplitKey, Split]) -> None:
        """Forget the counts of functions no longer split (a decided canary), but what they answered
        since the last `take` is given by the next one: the canary's record keeps every request."""
        live = {(g, n, v) for (g, n), s in splits.items() for v in (s.stable, s.canary)}
        for key in [k for k in self._counts if k not in live]:
            counts = self._counts.pop(key)
            if self._taken.pop(key, None) != counts.requests:
                self._last.append([*key, counts.requests, counts.errors, list(counts.latency)])
