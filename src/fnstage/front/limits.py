"""The front's limits: today's runtime and API numbers, taken from where they are defined, plus the
few that only a proxy has (idle keep-alive, upstream waits)."""

from __future__ import annotations

from dataclasses import dataclass

from fnstage.api.limits import RequestLimits
from fnstage.api.serving import HEAD_TIMEOUT_S, MAX_HEAD_BYTES
from fnstage.runtime.app import DEFAULT_BODY_TIMEOUT_S, DEFAULT_MAX_BODY_BYTES

_API = RequestLimits()


@dataclass(frozen=True)
class FrontLimits:
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES  # 413 beyond: the runtime's limit (6 MiB)
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S  # 408 when the whole body takes longer
    head_timeout_s: float = HEAD_TIMEOUT_S  # 408 when a request's head, once begun, takes longer
    max_header_bytes: int = _API.max_header_bytes  # 431: header names and values together (16 KiB)
    max_head_bytes: int = MAX_HEAD_BYTES  # 431: the raw head, cut off while it still arrives (64 KiB)
    # a connection with no request in progress is closed after this; it bounds idle clients' cost
    idle_timeout_s: float = 60.0
    # how long a request waits for `on_miss` to bring a cell up before 503
    miss_timeout_s: float = 10.0
    connect_timeout_s: float = 5.0  # to a cell; then 503 (it is not accepting: restarting)
    # waiting for a cell's answer: a function's own time limit is at most 900 s, the cell answers 504
    # itself then; this only catches a cell that stopped answering altogether
    upstream_timeout_s: float = 960.0
    retry_after_s: int = 1  # the Retry-After of a 503 while a cell (re)starts
    max_idle_upstream: int = 256  # pooled keep-alive connections kept per cell; more are closed

    def __post_init__(self) -> None:
        for field in (
            "max_body_bytes",
            "body_timeout_s",
            "head_timeout_s",
            "max_header_bytes",
            "max_head_bytes",
            "idle_timeout_s",
            "miss_timeout_s",
            "connect_timeout_s",
            "upstream_timeout_s",
        ):
            value = getattr(self, field)
            if not isinstance(value, int | float) or value <= 0:
                raise ValueError(f"{field}: expected a positive number, got {value!r}")
        if self.retry_after_s < 0 or self.max_idle_upstream < 0:
            raise ValueError("retry_after_s and max_idle_upstream: expected 0 or more")

    @property
    def tick_s(self) -> float:
        """How often deadlines are checked: a fraction of the shortest, between 50 ms and 1 s."""
        shortest = min(self.body_timeout_s, self.head_timeout_s, self.idle_timeout_s)
        return max(0.05, min(1.0, shortest / 4))
