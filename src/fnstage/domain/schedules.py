"""Cron schedules of triggers, and which tick a scheduler waking at a given time should run.

Pure rules, no I/O: parsing and next-fire times come from croniter, time zones from zoneinfo. Every
time handed in or out is an aware datetime; ticks are stored and compared in UTC. croniter is imported
when a schedule is first read, not with this module: every CLI command and runtime imports this
module's names, and croniter's import costs about as much as a fifth of the CLI's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fnstage.domain.errors import InvalidInput

if TYPE_CHECKING:
    from croniter import croniter

TRIGGER_NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
MAX_CRON_LENGTH = 120
# `@hourly` and friends are croniter's; `@reboot` is not a schedule (there is no boot to speak of)
_ALIASES = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")


def check_trigger_name(name: object, field: str = "name") -> str:
    if not isinstance(name, str) or not TRIGGER_NAME_RE.fullmatch(name):
        raise InvalidInput(
            f"invalid trigger name {name!r}: use 1-64 lowercase letters, digits and '-', starting and "
            "ending with a letter or digit, such as nightly-report",
            field=field,
        )
    return name


@dataclass(frozen=True)
class Schedule:
    """A five-field cron expression (minute hour day-of-month month day-of-week) read in a time zone."""

    cron: str
    timezone: str

    @classmethod
    def parse(cls, cron: object, timezone: object = "UTC") -> Schedule:
        """The schedule, or InvalidInput naming the field (`cron` or `timezone`) and what is allowed."""
        if not isinstance(timezone, str) or not timezone:
            raise InvalidInput("timezone is empty: use an IANA name such as Europe/Berlin", field="timezone")
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidInput(
                f"unknown time zone {timezone!r}: use an IANA name such as UTC or Europe/Berlin",
                field="timezone",
            ) from None
        if not isinstance(cron, str) or not cron.strip():
            raise InvalidInput(
                "cron is empty: use five fields, minute hour day-of-month month day-of-week, "
                "such as '0 3 * * *' (03:00 every day)",
                field="cron",
            )
        text = " ".join(cron.split())
        if len(text) > MAX_CRON_LENGTH:
            raise InvalidInput(f"cron is longer than {MAX_CRON_LENGTH} characters", field="cron")
        fields = text.split(" ")
        if text.startswith("@"):
            if text.lower() not in _ALIASES:
                raise InvalidInput(
                    f"invalid cron {text!r}: the shorthands are {', '.join(_ALIASES)}", field="cron"
                )
        elif len(fields) != 5:
            raise InvalidInput(
                f"invalid cron {text!r}: it has {len(fields)} fields; use five, minute hour "
                "day-of-month month day-of-week, such as '*/15 * * * *' (every 15 minutes)",
                field="cron",
            )
        schedule = cls(text, timezone)
        from croniter import CroniterBadDateError, CroniterError

        try:
            _cron(text, datetime(2026, 1, 1, tzinfo=UTC)).get_next(datetime)
        except CroniterBadDateError:
            raise InvalidInput(
                f"invalid cron {text!r}: it never fires (no such date)", field="cron"
            ) from None
        except (CroniterError, ValueError, KeyError) as exc:
            raise InvalidInput(f"invalid cron {text!r}: {exc}", field="cron") from None
        return schedule

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def next_after(self, moment: datetime) -> datetime:
        """The first tick strictly after `moment`, in UTC."""
        found: datetime = _cron(self.cron, moment.astimezone(self.zone)).get_next(datetime)
        return found.astimezone(UTC)

    def last_at_or_before(self, moment: datetime) -> datetime:
        """The latest tick at `moment` or before it, in UTC (ticks fall on whole minutes)."""
        found: datetime = _cron(self.cron, moment.astimezone(self.zone) + _EPSILON).get_prev(datetime)
        return found.astimezone(UTC)


_EPSILON = timedelta(microseconds=1)  # croniter's get_prev is strictly before its start


def _cron(expression: str, start: datetime) -> croniter:
    from croniter import croniter

    return croniter(expression, start)


@dataclass(frozen=True)
class TickPlan:
    """What a scheduler waking at `now` does with a trigger whose next tick was `expected`.

    `run`: the one tick to run now (the latest due, if within the catch-up window), or None.
    `missed`: the latest due tick when it is too old to run (everything was down too long), or None.
    `following`: the trigger's next tick after this claim (strictly after `now`).
    `skipped`: how many due ticks are neither run nor reported (older ones of a long outage).
    """

    run: datetime | None
    missed: datetime | None
    following: datetime
    skipped: int


def plan_tick(schedule: Schedule, expected: datetime, now: datetime, catch_up: timedelta) -> TickPlan | None:
    """None when `expected` is still in the future; else at most one tick to run, never more: ticks
    missed while nothing ran collapse into the latest one, run only if it is `catch_up` old or less."""
    if expected > now:
        return None
    latest = schedule.last_at_or_before(now)
    if latest < expected:  # the schedule changed under us: `expected` itself is due, nothing else
        latest = expected
    following = schedule.next_after(now)
    skipped = _count_between(schedule, expected, latest)
    if now - latest <= catch_up:
        return TickPlan(run=latest, missed=None, following=following, skipped=skipped)
    return TickPlan(run=None, missed=latest, following=following, skipped=skipped)


def _count_between(schedule: Schedule, first: datetime, last: datetime, cap: int = 1000) -> int:
    """Ticks from `first` up to but not including `last` (counted up to `cap`: it is only reported)."""
    count, tick = 0, first
    while tick < last and count < cap:
        count += 1
        tick = schedule.next_after(tick)
    return count
