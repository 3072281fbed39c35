"""The canary's judge (`domain.canary.judge`): when measurements roll a canary back, and when not."""

from __future__ import annotations

from fnstage.domain.canary import ArmCounts, CanarySpec, judge


def arm(requests: int, errors: int = 0, ms: float = 2.0, slow: int = 0, slow_ms: float = 0.0) -> ArmCounts:
    counts = ArmCounts()
    for i in range(requests):
        counts.record(i < errors, slow_ms if i < slow else ms)
    return counts


SPEC = CanarySpec(steps=(10,), bake_s=60.0, min_requests=20)


def test_a_slower_canary_is_rolled_back_on_its_p95() -> None:
    verdict = judge(SPEC, 0, 1.0, arm(40, slow=4, slow_ms=80.0), arm(40))
    assert verdict.action == "rollback" and "p95 latency 100 ms against stable 2 ms" in verdict.reason


def test_a_p95_within_the_floor_or_the_ratio_is_not_a_regression() -> None:
    assert judge(SPEC, 0, 1.0, arm(40, ms=4.0), arm(40, ms=2.0)).action == "wait"  # 5 ms vs 2: floor
    assert judge(SPEC, 0, 1.0, arm(40, ms=20.0), arm(40, ms=15.0)).action == "wait"  # 1.33x < 1.5x


def test_a_high_ratio_setting_leaves_latency_to_the_error_rule() -> None:
    lenient = CanarySpec(steps=(10,), bake_s=60.0, min_requests=20, max_p95_ratio=100.0)
    assert judge(lenient, 0, 1.0, arm(40, slow=4, slow_ms=80.0), arm(40)).action == "wait"
    assert judge(lenient, 0, 1.0, arm(40, errors=12), arm(40)).action == "rollback"


def test_nothing_is_judged_before_enough_requests_and_a_baked_canary_completes() -> None:
    assert judge(SPEC, 0, 1.0, arm(10, errors=10), arm(40)).action == "wait"
    assert judge(SPEC, 0, 61.0, arm(40), arm(40)).action == "complete"
