"""Canary releases, as rules: what a canary asks for, and when its measurements say stop. Pure.

A canary serves a new version to `share` percent of an environment's requests (steps such as 10 -> 50,
each baked `bake_s` seconds) and the stable version to the rest. It is rolled back when, with at least
`min_requests` requests on each side, the canary's error rate exceeds the stable one's by more than
`max_error_rate_increase` (0.05: five points), or its p95 latency is more than `max_p95_ratio` times the
stable one's (and at least `P95_FLOOR_MS` above it, so 1 ms against 2 ms is never a regression).
Otherwise, at the end of the last step's bake, it takes all traffic.
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from fnstage.domain.errors import InvalidInput

DEFAULT_BAKE_S = 600.0
DEFAULT_MAX_ERROR_RATE_INCREASE = 0.05
DEFAULT_MAX_P95_RATIO = 1.5
DEFAULT_MIN_REQUESTS = 50
P95_FLOOR_MS = 5.0
MAX_BAKE_S = 7 * 24 * 3600.0
# latency buckets (upper bounds, ms); a histogram per arm adds up across cells and runtimes
BUCKETS_MS: tuple[float, ...] = (
    1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000,
    10000, 30000, float("inf"),
)  # fmt: skip

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")


@dataclass(frozen=True)
class CanarySpec:
    steps: tuple[int, ...]  # percent of requests for the canary, one per step, increasing, 1..99
    bake_s: float = DEFAULT_BAKE_S
    max_error_rate_increase: float = DEFAULT_MAX_ERROR_RATE_INCREASE
    max_p95_ratio: float = DEFAULT_MAX_P95_RATIO
    min_requests: int = DEFAULT_MIN_REQUESTS


def parse_steps(text: str | Sequence[int], field_name: str = "canary") -> tuple[int, ...]:
    """`10%`, `10`, `10,50` or `10%,50%` (or a list of ints) -> (10, 50)."""
    parts = [str(p).strip().rstrip("%").strip() for p in (text.split(",") if isinstance(text, str) else text)]
    steps: list[int] = []
    for part in parts:
        if not part.isdigit() or not 1 <= int(part) <= 99:
            raise InvalidInput(
                f"canary share {part!r} is not a whole percentage from 1 to 99 (such as 10% or 10,50)",
                field=field_name,
            )
        steps.append(int(part))
    if not steps or any(b <= a for a, b in itertools.pairwise(steps)):
        raise InvalidInput(
            f"canary steps {','.join(map(str, steps)) or '(none)'} must go up, such as 10,50",
            field=field_name,
        )
    return tuple(steps)


def parse_duration(text: str | float, field_name: str = "bake") -> float:
    """`10m`, `30s`, `500ms`, `1h` or a number of seconds -> seconds."""
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        match = _DURATION_RE.match(text)
        if match is None:
            raise InvalidInput(
                f"bake time {text!r} is not a duration such as 30s, 10m or 1h", field=field_name
            )
        unit = match.group(2) or "s"
        seconds = float(match.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    if not 1.0 <= seconds <= MAX_BAKE_S:
        raise InvalidInput(
            f"bake time {seconds:g} s is out of range: from 1 s to {MAX_BAKE_S / 86400:g} days",
            field=field_name,
        )
    return seconds


def check_spec(spec: CanarySpec) -> CanarySpec:
    """Every field in its range, or InvalidInput naming it."""
    parse_steps(list(spec.steps))
    parse_duration(spec.bake_s)
    if not 0.0 <= spec.max_error_rate_increase <= 1.0:
        raise InvalidInput(
            "max_error_rate_increase is a fraction from 0 to 1", field="max_error_rate_increase"
        )
    if not 1.0 <= spec.max_p95_ratio <= 100.0:
        raise InvalidInput("max_p95_ratio is from 1 to 100", field="max_p95_ratio")
    if not 1 <= spec.min_requests <= 1_000_000:
        raise InvalidInput("min_requests is from 1 to 1,000,000", field="min_requests")
    return spec


@dataclass
class ArmCounts:
    """One side's requests, failures and latency histogram (counts per `BUCKETS_MS` bucket)."""

    requests: int = 0
    errors: int = 0
    latency: list[int] = field(default_factory=lambda: [0] * len(BUCKETS_MS))

    def add(self, other: ArmCounts) -> None:
        self.requests += other.requests
        self.errors += other.errors
        for i, n in enumerate(other.latency[: len(self.latency)]):
            self.latency[i] += n

    def record(self, failed: bool, ms: float) -> None:
        self.requests += 1
        if failed:
            self.errors += 1
        self.latency[bucket(ms)] += 1

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def p95_ms(self) -> float | None:
        total = sum(self.latency)
        if not total:
            return None
        rank, seen = 0.95 * total, 0
        for i, n in enumerate(self.latency):
            seen += n
            if seen >= rank:
                return BUCKETS_MS[i] if BUCKETS_MS[i] != float("inf") else BUCKETS_MS[-2]
        return None

    def describe(self) -> dict[str, object]:
        return {"requests": self.requests, "errors": self.errors, "p95_ms": self.p95_ms}


def bucket(ms: float) -> int:
    return min(bisect.bisect_left(BUCKETS_MS, ms), len(BUCKETS_MS) - 1)


@dataclass(frozen=True)
class Verdict:
    action: str  # wait | step | complete | rollback
    reason: str


def judge(spec: CanarySpec, step: int, baked_s: float, canary: ArmCounts, stable: ArmCounts) -> Verdict:
    """What to do now: roll back on a regression measured with enough requests, else move on when the
    step has baked, else wait."""
    enough = canary.requests >= spec.min_requests and stable.requests >= spec.min_requests
    if enough:
        increase = canary.error_rate - stable.error_rate
        if increase > spec.max_error_rate_increase:
            return Verdict(
                "rollback",
                f"error rate {canary.error_rate:.1%} ({canary.errors} of {canary.requests}) against "
                f"stable {stable.error_rate:.1%} ({stable.errors} of {stable.requests}): more than "
                f"{spec.max_error_rate_increase:.1%} worse",
            )
        c95, s95 = canary.p95_ms, stable.p95_ms
        if (
            c95 is not None
            and s95 is not None
            and c95 > s95 * spec.max_p95_ratio
            and c95 - s95 >= P95_FLOOR_MS
        ):
            return Verdict(
                "rollback",
                f"p95 latency {c95:g} ms against stable {s95:g} ms: more than {spec.max_p95_ratio:g} times",
            )
    if baked_s < spec.bake_s:
        return Verdict("wait", "baking")
    summary = (
        f"canary {canary.errors} of {canary.requests} failed, stable {stable.errors} of {stable.requests}"
    )
    if step + 1 < len(spec.steps):
        return Verdict("step", f"step {spec.steps[step]}% baked: {summary}")
    return Verdict("complete", f"baked {spec.bake_s:g} s per step: {summary}")
