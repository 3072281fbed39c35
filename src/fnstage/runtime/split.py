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
SplitKey = tuple[str, str]  # (gateway, "env/base")


@dataclass(frozen=True, slots=True)
class Split:
    stable: int
    canary: int
    share: int  # percent of requests for the canary


def client_key(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """The client's key for sticky routing: the header, else the cookie; None without either."""
    cookie = None
    for name, value in headers:
        if name == KEY_HEADER and value:
            return value
        if name == b"cookie":
            cookie = value
    if cookie is not None and KEY_COOKIE.encode() in cookie:
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
        self._changed: set[tuple[str, str, int]] = set()

    def record(self, gateway: str, name: str, version: int, failed: bool, ms: float) -> None:
        """On every split request: kept to a few dict and list operations (the hot path)."""
        key = (gateway, name, version)
        counts = self._counts.get(key)
        if counts is None:
            counts = self._counts[key] = ArmCounts()
        counts.requests += 1
        if failed:
            counts.errors += 1
        counts.latency[_bisect_left(BUCKETS_MS, ms)] += 1  # the last bucket is +inf: always in range
        self._changed.add(key)

    def take(self) -> list[list[object]]:
        changed, self._changed = self._changed, set()
        return [
            [g, n, v, c.requests, c.errors, list(c.latency)]
            for (g, n, v) in sorted(changed)
            if (c := self._counts.get((g, n, v))) is not None
        ]

    def keep_only(self, splits: dict[SplitKey, Split]) -> None:
        """Forget the counts of functions no longer split (a decided canary)."""
        live = {(g, n, v) for (g, n), s in splits.items() for v in (s.stable, s.canary)}
        for key in [k for k in self._counts if k not in live]:
            del self._counts[key]
