"""What the supervisor plugs into the front: `on_miss` (a request names a (gateway, env) with no cell
yet: start one) and `internal` (the front's own `/_fnstage/...` paths, such as status)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

INTERNAL_PREFIX = b"/_fnstage/"


@dataclass(frozen=True)
class InternalRequest:
    method: str
    path: str  # as sent, e.g. "/_fnstage/status"
    query_string: bytes
    headers: list[tuple[bytes, bytes]]  # names as the client sent them
    body: bytes  # whole, at most the front's max_body_bytes


@dataclass
class InternalResponse:
    status: int = 200
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""


# Awaited (within FrontLimits.miss_timeout_s, shared by every request waiting for the same pair) when a
# request names a (gateway, env) the route table has nothing for. Set the route before returning to
# serve the request at once; leave it unset for 404.
OnMiss = Callable[[str, str], Awaitable[None]]
Internal = Callable[[InternalRequest], Awaitable[InternalResponse]]
