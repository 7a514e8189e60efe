"""Cron schedules, purely: parsing errors name the field, and the next run is computed from a given instant."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ccfo.domain.schedule import ScheduleError, parse_cron


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(("schedule", "after", "expected"), [
    ("30 1 * * 1-5", "2026-12-07T01:29:59", "2026-12-07T01:30:00"),   # Monday, a minute later
    ("30 1 * * 1-5", "2026-12-07T01:30:00", "2026-12-08T01:30:00"),   # strictly after
    ("30 1 * * 1-5", "2026-12-11T02:00:00", "2026-12-14T01:30:00"),   # Friday night: next Monday
    ("*/15 * * * *", "2026-12-07T10:07:12", "2026-12-07T10:15:00"),
    ("0 0 1 1 *", "2026-06-01T00:00:00", "2027-01-01T00:00:00"),
    ("0 0 29 2 *", "2026-03-01T00:00:00", "2028-02-29T00:00:00"),    # the next leap day
    ("0 12 1 * 0", "2026-12-02T00:00:00", "2026-12-06T12:00:00"),     # both day fields: either one (Sunday)
    ("0 12 * * 7", "2026-12-07T13:00:00", "2026-12-13T12:00:00"),     # 7 is Sunday too
    ("5,10-12/2 3 * * *", "2026-12-07T03:06:00", "2026-12-07T03:10:00"),
])
def test_next_run(schedule: str, after: str, expected: str) -> None:
    assert parse_cron(schedule).next_run(at(after)) == at(expected)


@pytest.mark.parametrize(("schedule", "message"), [
    ("* * * *", "a cron schedule has five fields (minute hour day month weekday), got 4"),
    ("60 * * * *", "minute: must be 0..59, got '60'"),
    ("* 25 * * *", "hour: must be 0..23, got '25'"),
    ("* * 0 * *", "day of month: must be 1..31, got '0'"),
    ("* * * 13 *", "month: must be 1..12, got '13'"),
    ("* * * * 8", "day of week: must be 0..7, got '8'"),
    ("*/0 * * * *", "minute: the step must be a positive number, got '*/0'"),
    ("5-1 * * * *", "minute: the range '5-1' runs backwards"),
    ("@daily * * * *", "minute: expected *, N, A-B, */N or A-B/N, got '@daily'"),
])
def test_bad_schedules_name_the_field(schedule: str, message: str) -> None:
    with pytest.raises(ScheduleError) as exc:
        parse_cron(schedule)
    assert str(exc.value) == message


def test_a_schedule_that_never_runs_is_an_error_not_a_hang() -> None:
    with pytest.raises(ScheduleError, match="does not run within"):
        parse_cron("0 0 31 2 *").next_run(at("2026-01-01T00:00:00"))
