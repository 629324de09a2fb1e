"""Whether a schedule is open at an instant: the terminal's clock, read in the site's time zone (zoneinfo).

Windows are wall-clock hours of the site ("07:00-19:00 Monday to Friday"), so an instant is turned into the
site's local date and time first and compared there; daylight saving time needs nothing more: on the night the
clocks go forward the skipped hour never occurs, on the night they go back the repeated hour occurs twice and
is judged the same both times. A window whose end is at or before its start runs past midnight and belongs to
the day it starts on (a night shift from Friday 22:00 is Friday's, even on a Saturday holiday). On one of the
site's holidays only the schedule's `on_holidays` hours apply (none: closed all day).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from device.access.policy import ALWAYS, DAYS, Hours, Schedule, minutes


def local_time(unix: float, timezone: str) -> datetime:
    return datetime.fromtimestamp(unix, ZoneInfo(timezone))


def _hours_of(schedule: Schedule, day: date, holidays: frozenset[date]) -> Iterable[Hours]:
    if day in holidays:
        return schedule.on_holidays
    name = DAYS[day.weekday()]
    return [w for w in schedule.windows if name in w.days]


def is_open(schedule: Schedule | str, when: datetime, holidays: frozenset[date]) -> bool:
    """`schedule` (or ALWAYS) at the local time `when` (aware, in the site's zone)."""
    if schedule == ALWAYS:
        return True
    assert isinstance(schedule, Schedule)
    now = when.hour * 60 + when.minute + when.second / 60 + when.microsecond / 60e6
    today, yesterday = when.date(), when.date() - timedelta(days=1)
    for hours in _hours_of(schedule, today, holidays):
        start, end = minutes(hours.start), minutes(hours.end)
        if start <= now < (end if end > start else 24 * 60):
            return True
    for hours in _hours_of(schedule, yesterday, holidays):
        start, end = minutes(hours.start), minutes(hours.end)
        if end <= start and now < end:  # yesterday's window that runs past midnight
            return True
    return False
