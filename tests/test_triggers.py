"""Triggers and the scheduler's claims, on both engines, with an injected clock.

The claims are what "once per tick" rests on: any number of schedulers on one database, any restart,
each tick is claimed once. Running a claimed tick through a runtime is `test_e2e_triggers.py`'s.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from fnstage.domain.errors import Conflict, FnstageError, InvalidInput, NotFound
from fnstage.domain.schedules import Schedule, check_trigger_name, plan_tick
from fnstage.service import Actor, Services
from fnstage.service.scheduler import Scheduler, SchedulerHealth
from fnstage.service.trigger_runs import RunResult, TriggerRunner
from fnstage.service.triggers import Triggers, default_name
from fnstage.store import triggers as sql
from fnstage.store.store import Store
from support.clock import Clock
from support.functions import hello_files

T0 = datetime(2030, 1, 1, 10, 59, 30, tzinfo=UTC)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def triggers(store: Store, clock: Clock) -> Triggers:
    return Triggers(store, clock)


@pytest.fixture
def fn(services: Services, actor: Actor, gateway: str) -> str:
    services.deployments.save(actor, gateway, "dev/reports/daily", hello_files())
    return "dev/reports/daily"


def _runs(store: Store, trigger_id: int) -> list[sql.RunRecord]:
    with store.read() as tx:
        return sql.list_runs(tx, trigger_id, 100)


# schedules: pure ------------------------------------------------------------------------------------
def test_a_schedule_reads_its_cron_in_its_time_zone() -> None:
    berlin = Schedule.parse("30 2 * * *", "Europe/Berlin")
    # 29 March 2026: clocks go from 02:00 to 03:00 in Berlin; croniter fires the missing 02:30 at 03:00
    assert berlin.next_after(datetime(2026, 3, 28, 12, tzinfo=UTC)) == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    assert berlin.next_after(datetime(2026, 7, 1, tzinfo=UTC)) == datetime(2026, 7, 1, 0, 30, tzinfo=UTC)
    minutely = Schedule.parse("* * * * *")
    tick = datetime(2030, 1, 1, 11, 0, tzinfo=UTC)
    assert minutely.last_at_or_before(tick) == tick
    assert minutely.next_after(tick) == tick + timedelta(minutes=1)
    assert Schedule.parse("@hourly").next_after(tick) == tick + timedelta(hours=1)


@pytest.mark.parametrize(
    ("cron", "timezone", "field", "says"),
    [
        ("61 * * * *", "UTC", "cron", "out of range"),
        ("* * *", "UTC", "cron", "has 3 fields; use five"),
        ("* * * * * *", "UTC", "cron", "has 6 fields"),
        ("every day", "UTC", "cron", "has 2 fields"),
        ("a b c d e", "UTC", "cron", "invalid cron"),
        ("0 0 31 2 *", "UTC", "cron", "never fires"),
        ("@reboot", "UTC", "cron", "the shorthands are"),
        ("", "UTC", "cron", "cron is empty"),
        ("* * * * *", "Mars/Olympus", "timezone", "unknown time zone"),
        ("* * * * *", "../../etc/passwd", "timezone", "unknown time zone"),
        ("* * * * *", "", "timezone", "timezone is empty"),
    ],
)
def test_a_bad_schedule_is_refused_naming_its_field(cron: str, timezone: str, field: str, says: str) -> None:
    with pytest.raises(InvalidInput) as error:
        Schedule.parse(cron, timezone)
    assert error.value.field == field and says in error.value.message


def test_ticks_missed_while_down_collapse_into_the_latest_which_runs_only_within_the_window() -> None:
    hourly = Schedule.parse("0 * * * *")
    expected = datetime(2030, 1, 1, 11, 0, tzinfo=UTC)
    window = timedelta(minutes=15)
    assert plan_tick(hourly, expected, expected - timedelta(seconds=1), window) is None
    on_time = plan_tick(hourly, expected, expected + timedelta(seconds=2), window)
    assert on_time is not None and on_time.run == expected and on_time.skipped == 0
    assert on_time.following == expected + timedelta(hours=1)
    # down from 10:59 to 13:10: 11:00 and 12:00 are long gone, 13:00 is 10 minutes old: it runs, once
    back = plan_tick(hourly, expected, expected + timedelta(hours=2, minutes=10), window)
    assert back is not None and back.run == expected + timedelta(hours=2) and back.skipped == 2
    # down until 13:20: 13:00 is past the window too; it is reported missed, nothing runs
    late = plan_tick(hourly, expected, expected + timedelta(hours=2, minutes=20), window)
    assert late is not None and late.run is None and late.missed == expected + timedelta(hours=2)
    assert late.following == expected + timedelta(hours=3)


def test_trigger_names() -> None:
    assert default_name("reports/daily_digest") == "reports-daily-digest"
    assert check_trigger_name("nightly-1") == "nightly-1"
    for bad in ("", "Nightly", "-x", "x-", "a/b", "x" * 65, None):
        with pytest.raises(InvalidInput):
            check_trigger_name(bad)


# the service -----------------------------------------------------------------------------------------
def test_add_list_pause_resume_remove(
    triggers: Triggers, actor: Actor, gateway: str, fn: str, clock: Clock
) -> None:
    added = triggers.add(actor, gateway, fn, "*/5 * * * *", "Europe/Berlin", payload={"full": True})
    assert (added.env, added.name, added.base, added.paused) == (
        "dev",
        "reports-daily",
        "reports/daily",
        False,
    )
    assert added.next_tick == datetime(2030, 1, 1, 11, 0, tzinfo=UTC)  # 12:00 in Berlin, a multiple of 5
    assert [t.name for t in triggers.find(gateway, "dev", "reports/daily")] == ["reports-daily"]
    assert triggers.find(gateway, "prod") == []
    with pytest.raises(Conflict) as error:
        triggers.add(actor, gateway, fn, "0 * * * *")
    assert error.value.field == "name" and "--name" in error.value.message
    second = triggers.add(actor, gateway, fn, "0 * * * *", name="hourly")
    assert second.name == "hourly"

    paused = triggers.set_paused(actor, gateway, "dev", "hourly", True)
    assert paused.paused
    clock.move(hours=3)
    resumed = triggers.set_paused(actor, gateway, "dev", "hourly", False)
    # resuming does not catch up what passed while paused: the next tick after now
    assert not resumed.paused and resumed.next_tick == datetime(2030, 1, 1, 14, 0, tzinfo=UTC)

    triggers.remove(actor, gateway, "dev", "hourly")
    assert [t.name for t in triggers.find(gateway)] == ["reports-daily"]
    with pytest.raises(NotFound):
        triggers.get(gateway, "dev", "hourly")


def test_bad_input_is_refused_and_changes_nothing(
    triggers: Triggers, actor: Actor, gateway: str, fn: str
) -> None:
    cases = [
        (("dev/reports/nothing", "* * * * *"), {}, "function"),
        (("reports/daily", "* * * * *"), {}, "function"),
        (("qa/reports/daily", "* * * * *"), {}, "function"),
        ((fn, "* * *"), {}, "cron"),
        ((fn, "* * * * *"), {"timezone": "Nowhere/Land"}, "timezone"),
        ((fn, "* * * * *"), {"name": "Bad Name"}, "name"),
        ((fn, "* * * * *"), {"payload": "x" * 70_000}, "payload"),
    ]
    for args, kwargs, field in cases:
        with pytest.raises(FnstageError) as error:
            triggers.add(actor, gateway, *args, **kwargs)
        assert error.value.field == field, (args, kwargs, error.value.message)
    with pytest.raises(NotFound) as missing:
        triggers.add(actor, "nope", fn, "* * * * *")
    assert missing.value.field == "gateway"
    assert triggers.find(gateway) == []


def test_triggers_stay_in_their_environment_when_the_function_is_promoted(
    services: Services, triggers: Triggers, actor: Actor, gateway: str, fn: str
) -> None:
    triggers.add(actor, gateway, fn, "0 3 * * *")
    services.deployments.promote(actor, gateway, fn, "staging", "1.0.0-rc.1", "QA")
    assert triggers.find(gateway, "staging") == []
    assert [t.env for t in triggers.find(gateway)] == ["dev"]


def _race(scheduler: Scheduler, gate: threading.Barrier, claimed: list[object]) -> None:
    gate.wait()
    claimed.extend(scheduler.tick())


# the scheduler's claims ---------------------------------------------------------------------------------
def test_each_tick_is_claimed_once_however_many_schedulers_race(
    store: Store, triggers: Triggers, actor: Actor, gateway: str, fn: str, clock: Clock
) -> None:
    trigger = triggers.add(actor, gateway, fn, "* * * * *")
    schedulers = [Scheduler(store, clock) for _ in range(8)]
    assert all(s.tick() == [] for s in schedulers)  # 10:59:30: nothing is due
    for minute in range(3):
        clock.move(minutes=1)  # 11:00:30, 11:01:30, 11:02:30
        claimed: list[object] = []
        gate = threading.Barrier(len(schedulers))
        threads = [threading.Thread(target=_race, args=(s, gate, claimed)) for s in schedulers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(claimed) == 1, f"minute {minute}: {claimed}"
    runs = _runs(store, trigger.id)
    assert [r.tick.minute for r in runs] == [2, 1, 0] and {r.status for r in runs} == {"running"}


def test_a_restart_across_a_tick_runs_it_once(
    store: Store, triggers: Triggers, actor: Actor, gateway: str, fn: str, clock: Clock
) -> None:
    trigger = triggers.add(actor, gateway, fn, "0 * * * *")  # 11:00, 12:00, ...
    assert Scheduler(store, clock).tick() == []  # 10:59:30, then everything stops
    clock.move(minutes=3)  # 11:02:30: the control plane comes back
    first = Scheduler(store, clock).tick()
    assert [c.tick for c in first] == [datetime(2030, 1, 1, 11, 0, tzinfo=UTC)]
    clock.move(seconds=10)  # and restarts again at once
    assert Scheduler(store, clock).tick() == []
    assert len(_runs(store, trigger.id)) == 1
    with store.read() as tx:
        found = sql.get_trigger_by_id(tx, trigger.id)
    assert found is not None and found.next_tick == datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def test_a_tick_missed_past_the_window_is_recorded_and_never_run(
    store: Store, triggers: Triggers, actor: Actor, gateway: str, fn: str, clock: Clock
) -> None:
    trigger = triggers.add(actor, gateway, fn, "0 * * * *")
    clock.move(hours=1, minutes=30)  # 12:29:30: down over 11:00 and 12:00; 12:00 is 29.5 minutes old
    scheduler = Scheduler(store, clock, catch_up=timedelta(minutes=15))
    assert scheduler.tick() == []
    assert scheduler.tick() == []
    (run,) = _runs(store, trigger.id)
    assert run.status == "missed" and run.tick == datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
    assert run.skipped == 1 and run.error is not None and "catch-up window of 900 s" in run.error
    clock.move(minutes=31)  # 13:00:30: the next tick runs as usual
    assert [c.tick.hour for c in scheduler.tick()] == [13]


def test_a_paused_trigger_does_not_fire_and_resuming_does_not_catch_up(
    store: Store, triggers: Triggers, actor: Actor, gateway: str, fn: str, clock: Clock
) -> None:
    trigger = triggers.add(actor, gateway, fn, "* * * * *")
    triggers.set_paused(actor, gateway, "dev", trigger.name, True)
    scheduler = Scheduler(store, clock)
    for _ in range(3):
        clock.move(minutes=1)
        assert scheduler.tick() == []
    assert _runs(store, trigger.id) == []
    triggers.set_paused(actor, gateway, "dev", trigger.name, False)  # at 11:02:30
    assert scheduler.tick() == []
    clock.move(seconds=31)
    assert [c.tick.minute for c in scheduler.tick()] == [3]


def test_a_removed_trigger_is_not_claimed_and_its_runs_go_with_it(
    store: Store, triggers: Triggers, actor: Actor, gateway: str, fn: str, clock: Clock
) -> None:
    trigger = triggers.add(actor, gateway, fn, "* * * * *")
    scheduler = Scheduler(store, clock)
    clock.move(minutes=1)
    assert len(scheduler.tick()) == 1
    triggers.remove(actor, gateway, "dev", trigger.name)
    clock.move(minutes=1)
    assert scheduler.tick() == []
    assert _runs(store, trigger.id) == []


def test_runs_are_pruned_to_the_newest_hundred(
    store: Store, triggers: Triggers, actor: Actor, gateway: str, fn: str, clock: Clock
) -> None:
    trigger = triggers.add(actor, gateway, fn, "* * * * *")
    scheduler = Scheduler(store, clock)
    for _ in range(sql.RUNS_KEPT + 5):
        clock.move(minutes=1)
        assert len(scheduler.tick()) == 1
    runs = _runs(store, trigger.id)
    assert len(runs) == sql.RUNS_KEPT and runs[-1].tick == datetime(2030, 1, 1, 11, 5, tzinfo=UTC)


def test_a_run_whose_scheduler_vanished_shows_as_lost(
    store: Store, triggers: Triggers, actor: Actor, gateway: str, fn: str, clock: Clock
) -> None:
    trigger = triggers.add(actor, gateway, fn, "* * * * *")
    clock.move(minutes=1)
    (claimed,) = Scheduler(store, clock).tick()
    _, views = triggers.runs(gateway, "dev", trigger.name)
    assert [v.status for v in views] == ["running"]
    with store.write() as tx:  # as if it had been claimed long ago by a scheduler that then died
        tx.conn.execute(sql.t.trigger_runs.update().values(deadline_at=datetime(2020, 1, 1, tzinfo=UTC)))
    _, views = triggers.runs(gateway, "dev", trigger.name)
    assert [v.status for v in views] == ["lost"] and views[0].run.id == claimed.run_id


# running a claimed tick: what is recorded when it cannot run --------------------------------------------
def test_a_run_with_no_runtime_waits_for_one_then_is_recorded_failed_and_the_next_tick_still_fires(
    store: Store, triggers: Triggers, actor: Actor, gateway: str, fn: str, clock: Clock
) -> None:
    trigger = triggers.add(actor, gateway, fn, "* * * * *")
    scheduler = Scheduler(store, clock, runner=TriggerRunner(store, wait_for_runtime_s=0.3))
    clock.move(minutes=1)
    (claimed,) = scheduler.tick()
    result = scheduler.run(claimed)
    assert result.status == "failed" and result.duration_ms >= 300
    (run,) = _runs(store, trigger.id)
    assert run.status == "failed" and run.finished_at is not None
    assert run.error == "no runtime serving gateway demo had dev/reports/daily live within 0.3 s"
    clock.move(minutes=1)
    assert [c.tick.minute for c in scheduler.tick()] == [1]


def test_a_run_of_a_deleted_function_fails_at_once_naming_it(
    services: Services, store: Store, triggers: Triggers, actor: Actor, gateway: str, fn: str, clock: Clock
) -> None:
    trigger = triggers.add(actor, gateway, fn, "* * * * *")
    services.deployments.delete(actor, gateway, fn)
    scheduler = Scheduler(store, clock, runner=TriggerRunner(store, wait_for_runtime_s=30))
    clock.move(minutes=1)
    (claimed,) = scheduler.tick()
    assert scheduler.run(claimed).duration_ms < 30_000
    (run,) = _runs(store, trigger.id)
    assert run.status == "failed" and "no function dev/reports/daily in gateway demo" in (run.error or "")


def test_a_recorded_result_is_never_rewritten_by_a_late_one(
    store: Store, triggers: Triggers, actor: Actor, gateway: str, fn: str, clock: Clock
) -> None:
    trigger = triggers.add(actor, gateway, fn, "* * * * *")
    runner = TriggerRunner(store, wait_for_runtime_s=0)
    clock.move(minutes=1)
    (claimed,) = Scheduler(store, clock, runner=runner).tick()
    runner.record(claimed.run_id, RunResult("ok", 200, 1, None, 5.0, None, ["done"]))
    runner.record(claimed.run_id, RunResult("failed", None, None, None, 0.0, "stopped", []))
    (run,) = _runs(store, trigger.id)
    assert (run.status, run.lines, run.error) == ("ok", ["done"], None)


def test_deleting_a_gateway_takes_its_triggers_and_runs(
    services: Services, store: Store, triggers: Triggers, actor: Actor, gateway: str, fn: str, clock: Clock
) -> None:
    trigger = triggers.add(actor, gateway, fn, "* * * * *")
    clock.move(minutes=1)
    assert len(Scheduler(store, clock).tick()) == 1
    services.deployments.delete(actor, gateway, fn)  # a gateway is deleted once its functions are
    services.gateways.delete(actor, gateway)
    with store.read() as tx:
        assert sql.get_trigger_by_id(tx, trigger.id) is None
        assert sql.list_runs(tx, trigger.id) == []


# the scheduler's own health -----------------------------------------------------------------------------
def test_a_scheduler_counts_its_passes_and_its_failed_ones(store: Store, clock: Clock) -> None:
    """What `/api/v1/health` reports and tests wait on: a pass counts once it has claimed what was due,
    so a count that moved by two began and ended a whole pass after any earlier moment."""
    scheduler = Scheduler(store, clock)
    assert scheduler.health() == SchedulerHealth(passes=0, failed_passes=0, last_pass_at=None)
    scheduler.tick()
    scheduler.tick()
    health = scheduler.health()
    assert health.passes == 2 and health.failed_passes == 0 and health.last_pass_at is not None

    def broken() -> datetime:
        raise RuntimeError("the clock is broken")

    failing = Scheduler(store, broken, poll_s=0.01)
    failing.start()
    try:
        deadline = time.monotonic() + 30
        while failing.health().failed_passes < 3:
            assert time.monotonic() < deadline, failing.health()
            time.sleep(0.01)
    finally:
        failing.stop()
    assert failing.health().passes == 0 and failing.health().last_pass_at is None
