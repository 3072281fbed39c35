"""Canary releases: the rules (pure), and the decision taken once on both engines."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from fnstage.domain.canary import ArmCounts, CanarySpec, judge, parse_duration, parse_steps
from fnstage.domain.errors import Conflict, InvalidInput
from fnstage.runtime.split import Split, key_of, to_canary
from fnstage.service import Actor, Services
from fnstage.store import canaries as sql
from fnstage.store import schema as t
from support.functions import hello_files


def test_steps_and_bake_times_read_as_people_write_them() -> None:
    assert parse_steps("10%") == (10,)
    assert parse_steps("10,50") == (10, 50)
    assert parse_steps("10%, 50%") == (10, 50)
    assert parse_duration("10m") == 600 and parse_duration("30s") == 30 and parse_duration("1h") == 3600
    for bad, says in (("0%", "1 to 99"), ("100", "1 to 99"), ("50,10", "go up"), ("ten", "1 to 99")):
        with pytest.raises(InvalidInput) as refused:
            parse_steps(bad)
        assert says in refused.value.message and refused.value.field == "canary"
    with pytest.raises(InvalidInput) as refused:
        parse_duration("soon")
    assert "30s, 10m or 1h" in refused.value.message and refused.value.field == "bake"


def _arm(requests: int, errors: int, ms: float) -> ArmCounts:
    arm = ArmCounts()
    for i in range(requests):
        arm.record(i < errors, ms)
    return arm


def test_the_judge_rolls_back_only_with_enough_requests_and_beyond_the_thresholds() -> None:
    spec = CanarySpec((10, 50), bake_s=60, min_requests=50)
    flaky, fine = _arm(100, 30, 2), _arm(100, 1, 2)
    assert judge(spec, 0, 5, flaky, fine).action == "rollback"
    assert "30.0%" in judge(spec, 0, 5, flaky, fine).reason
    assert judge(spec, 0, 5, _arm(20, 6, 2), fine).action == "wait"  # 20 requests: too few to judge
    assert judge(spec, 0, 5, _arm(100, 5, 2), fine).action == "wait"  # 4 points worse: within 5
    slow = _arm(100, 0, 200)
    assert judge(spec, 0, 5, slow, _arm(100, 0, 20)).action == "rollback"
    assert judge(spec, 0, 5, _arm(100, 0, 3), _arm(100, 0, 1)).action == "wait"  # 3 ms vs 1 ms: noise
    assert judge(spec, 0, 60, fine, fine).action == "step"
    assert judge(spec, 1, 60, fine, fine).action == "complete"
    loose = CanarySpec((10,), bake_s=60, max_error_rate_increase=0.5, min_requests=50)
    assert judge(loose, 0, 5, flaky, fine).action == "wait"  # settable per release


def test_a_client_with_a_key_stays_on_its_side_and_shares_come_out_right() -> None:
    split = Split(stable=1, canary=2, share=20)
    sides = [to_canary(split, f"user-{i}".encode()) for i in range(5000)]
    assert 0.17 < sum(sides) / len(sides) < 0.23
    assert all(to_canary(split, f"user-{i}".encode()) == sides[i] for i in range(5000))
    assert key_of(b"abc", None) == key_of(b"abc", b"fnstage-key=xyz") == b"abc"
    assert key_of(None, b"a=1; fnstage-key=xyz") == key_of(b"", b"a=1; fnstage-key=xyz") == b"xyz"
    assert key_of(None, b"a=1") is None and key_of(None, None) is None
    assert key_of(None, b'fnstage-key="unclosed') is None


def _canary_started(services: Services, actor: Actor, gateway: str, **spec: object) -> None:
    services.deployments.save(actor, gateway, "dev/user/me", hello_files(), "index.py")
    services.deployments.promote(actor, gateway, "dev/user/me", "staging", "1.0.0", "ok")
    services.deployments.save(actor, gateway, "dev/user/me", hello_files("Hi"), "index.py")
    services.deployments.promote(
        actor,
        gateway,
        "dev/user/me",
        "staging",
        "1.1.0",
        "canary",
        canary=CanarySpec((10,), **spec),  # type: ignore[arg-type]
    )


def test_a_canary_changes_nothing_served_until_decided_and_blocks_other_releases(
    services: Services, actor: Actor, gateway: str
) -> None:
    _canary_started(services, actor, gateway)
    fn, _ = services.queries.function(gateway, "staging/user/me")
    assert (fn.version, fn.semver) == (1, "1.0.0")  # still the stable version
    with pytest.raises(Conflict) as refused:
        services.deployments.promote(actor, gateway, "dev/user/me", "staging", "1.2.0", "again")
    assert "canary" in refused.value.message
    with pytest.raises(Conflict):
        services.deployments.promote(
            actor, gateway, "dev/user/me", "staging", "1.2.0", "again", canary=CanarySpec((10,))
        )


def test_each_canary_is_decided_once_however_many_judges_race(
    services: Services, actor: Actor, gateway: str
) -> None:
    _canary_started(services, actor, gateway, bake_s=60, min_requests=10)
    with services.store.write() as tx:
        [canary] = sql.running(tx, gateway)
        sql.write_counts(
            tx, "runtime-a", [(canary.id, "canary", _arm(40, 12, 2)), (canary.id, "stable", _arm(200, 0, 2))]
        )
    barrier = threading.Barrier(8)
    decided: list[list[tuple[str, str]]] = []

    def judge_once() -> None:
        barrier.wait()
        decided.append(services.canaries.tick())

    threads = [threading.Thread(target=judge_once) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(d for ds in decided for d in ds) == [(f"{gateway}/staging/user/me", "rolled_back")]
    history = services.queries.history(gateway, "staging/user/me", limit=10)
    assert [(h.kind, h.actor, h.semver) for h in history] == [
        ("rollback", "fnstage", "1.0.0"),
        ("canary", actor.name, "1.1.0"),
        ("promote", actor.name, "1.0.0"),
    ]
    assert "error rate 30.0% (12 of 40)" in (history[0].changelog or "")
    status = services.canaries.status(gateway, "staging/user/me").as_dict()
    assert status["state"] == "rolled_back" and status["canary"]["requests"] == 40  # type: ignore[index]


def test_a_baked_canary_steps_then_completes_as_a_new_version_with_its_code(
    services: Services, actor: Actor, gateway: str
) -> None:
    services.deployments.save(actor, gateway, "dev/user/me", hello_files(), "index.py")
    services.deployments.promote(actor, gateway, "dev/user/me", "staging", "1.0.0", "ok")
    services.deployments.save(actor, gateway, "dev/user/me", hello_files("Hi"), "index.py")
    services.deployments.promote(
        actor, gateway, "dev/user/me", "staging", "1.1.0", "two steps", canary=CanarySpec((10, 50), bake_s=5)
    )

    def bake() -> None:  # as if the step had begun long ago
        with services.store.write() as tx:
            tx.conn.execute(update(t.canaries).values(step_started_at=sql.now() - timedelta(seconds=10)))

    bake()
    assert services.canaries.tick() == [(f"{gateway}/staging/user/me", "step")]
    assert services.canaries.status(gateway, "staging/user/me").as_dict()["share"] == 50
    bake()
    assert services.canaries.tick() == [(f"{gateway}/staging/user/me", "completed")]
    fn, texts = services.queries.function(gateway, "staging/user/me")
    assert fn.semver == "1.1.0" and "Hi" in texts["utils.py"] and fn.version == 3


def test_runtimes_learn_of_a_canary_through_the_change_feed_as_fast_as_of_a_publish(
    services: Services, actor: Actor, gateway: str
) -> None:
    """A canary's start and its decision are publish log entries (NOTIFY on PostgreSQL): the watcher
    wakes the runtime's canary follower at once; it used to find a canary by reading every 0.5 s. An
    entry in the same batch as the rollback's publish does not hide that publish."""
    import asyncio
    import time

    from fnstage.runtime.registry import Registry
    from fnstage.runtime.watcher import Watcher
    from fnstage.store.feed import FeedReader

    url = services.store.engine.url.render_as_string(hide_password=False)
    services.deployments.save(actor, gateway, "dev/user/me", hello_files(), "index.py")
    services.deployments.promote(actor, gateway, "dev/user/me", "staging", "1.0.0", "ok")
    woken: list[float] = []

    async def follow() -> None:
        # the watcher's own safety poll is out of the picture: only the feed can wake it
        watcher = Watcher(
            Registry(), lambda: FeedReader(url), gateway=gateway, poll_interval_s=60,
            on_canary=lambda: woken.append(time.monotonic()),
        )  # fmt: skip
        await watcher.start()
        try:
            resynced = len(woken)  # a resync wakes the follower too (whatever changed meanwhile)
            await asyncio.to_thread(_canary_started_again, services, actor, gateway)
            started = time.monotonic()
            while len(woken) == resynced:
                assert time.monotonic() - started < 5, "the canary's start never reached the runtime"
                await asyncio.sleep(0.01)
            aborted = await asyncio.to_thread(services.canaries.abort, actor, gateway, "staging/user/me")
            assert aborted.as_dict()["state"] == "aborted"
            stable_again = await watcher.wait_for(gateway, "staging/user/me", 3)  # the rollback's version
            assert stable_again.semver == "1.0.0"
            while len(woken) == resynced + 1:
                assert time.monotonic() - started < 5, "the canary's decision never reached the runtime"
                await asyncio.sleep(0.01)
        finally:
            await watcher.stop()

    asyncio.run(follow())
    with services.store.read() as tx:
        actions = [
            r.action
            for r in tx.conn.execute(
                select(t.publish_log)
                .where(t.publish_log.c.gateway_id == gateway)
                .order_by(t.publish_log.c.seq)
            )
        ]
    assert actions.count("canary") == 2  # started, aborted


def _canary_started_again(services: Services, actor: Actor, gateway: str) -> None:
    services.deployments.save(actor, gateway, "dev/user/me", hello_files("Hi"), "index.py")
    services.deployments.promote(
        actor, gateway, "dev/user/me", "staging", "1.1.0", "canary", canary=CanarySpec((10,))
    )
