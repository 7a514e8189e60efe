"""Cron schedules, parsed and evaluated purely: what a scheduled job's five fields mean and when it runs next.

The managed servers' scheduled jobs (the TA import's nightly loads, the SMS sender's runs) are cron
lines or systemd timers. The config check validates a cron schedule here, and the agent lists a job with
its next run time computed here, from a given instant (no clock is read in this module).

Supported: five fields (minute hour day-of-month month day-of-week), each `*`, a number, a range `a-b`,
a step `*/n` or `a-b/n`, or a comma list of those; day-of-week 0-7 (0 and 7 are Sunday). As in cron,
when both day fields are restricted a day matching either runs the job.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 7))
_SEARCH_DAYS = 366 * 9  # the rarest schedule, "0 0 29 2 *", runs within 8 years (a skipped century leap year)


class ScheduleError(ValueError):
    """The schedule cannot be read; the message names the field."""


@dataclass(frozen=True, slots=True)
class CronSchedule:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday .. 6 = Saturday
    days_restricted: bool
    weekdays_restricted: bool
    text: str

    def matches_day(self, when: datetime) -> bool:
        if when.month not in self.months:
            return False
        dom = when.day in self.days
        dow = (when.isoweekday() % 7) in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return dom or dow
        return dom and dow

    def next_run(self, after: datetime) -> datetime:
        """The first minute strictly after `after` at which the job runs (same tzinfo as `after`)."""
        start = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
        day = start.replace(hour=0, minute=0)
        for offset in range(_SEARCH_DAYS):
            d = day + timedelta(days=offset)
            if not self.matches_day(d):
                continue
            for hour in sorted(self.hours):
                for minute in sorted(self.minutes):
                    candidate = d.replace(hour=hour, minute=minute)
                    if candidate >= start:
                        return candidate
        raise ScheduleError(f"{self.text!r} does not run within {_SEARCH_DAYS // 366} years")


def _field(text: str, name: str, lo: int, hi: int) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        rng, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) < 1:
                raise ScheduleError(f"{name}: the step must be a positive number, got {part!r}")
            step = int(step_text)
        if rng == "*":
            a, b = lo, hi
        else:
            first, dash, last = rng.partition("-")
            if not first.isdigit() or (dash and not last.isdigit()):
                raise ScheduleError(f"{name}: expected *, N, A-B, */N or A-B/N, got {part!r}")
            a = int(first)
            b = int(last) if dash else (hi if step_text else a)
            if not lo <= a <= hi or not lo <= b <= hi:
                raise ScheduleError(f"{name}: must be {lo}..{hi}, got {part!r}")
            if a > b:
                raise ScheduleError(f"{name}: the range {part!r} runs backwards")
        values.update(range(a, b + 1, step))
    return frozenset(values)


def parse_cron(text: str) -> CronSchedule:
    """Read a five-field cron schedule; ScheduleError names the field that is wrong."""
    parts = text.split()
    if len(parts) != 5:
        raise ScheduleError(f"a cron schedule has five fields (minute hour day month weekday), got {len(parts)}")
    sets = [_field(p, name, lo, hi) for p, (name, lo, hi) in zip(parts, _FIELDS, strict=True)]
    weekdays = frozenset(d % 7 for d in sets[4])
    return CronSchedule(sets[0], sets[1], sets[2], sets[3], weekdays, parts[2] != "*", parts[4] != "*", text)
