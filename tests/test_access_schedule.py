"""Schedules: weekly windows and holidays read in the site's time zone, at their edges, past midnight and
across both daylight-saving changes (Europe/Berlin, 2026: forward on 29 March, back on 25 October)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from device.access.policy import ALWAYS, Hours, Schedule, Window
from device.access.schedule import is_open, local_time

TZ = "Europe/Berlin"
OFFICE = Schedule(windows=[Window(days=["mon", "tue", "wed", "thu", "fri"], start="07:00", end="19:00")])
NIGHT = Schedule(windows=[Window(days=["fri"], start="22:00", end="06:00")])
EARLY = Schedule(windows=[Window(days=["sun"], start="02:00", end="03:00")])
NO_HOLIDAYS: frozenset[date] = frozenset()


def at(*utc: int) -> datetime:
    """The site's local time at a UTC instant."""
    return local_time(datetime(*utc, tzinfo=UTC).timestamp(), TZ)


@pytest.mark.parametrize(
    ("utc", "expected"),
    [
        ((2026, 5, 4, 4, 59, 59), False),  # Monday 06:59:59 CEST
        ((2026, 5, 4, 5, 0, 0), True),  # 07:00:00: the window opens
        ((2026, 5, 4, 16, 59, 59), True),  # 18:59:59
        ((2026, 5, 4, 17, 0, 0), False),  # 19:00:00: the end is not in the window
        ((2026, 5, 9, 9, 0, 0), False),  # Saturday
    ],
)
def test_window_edges(utc: tuple[int, ...], expected: bool) -> None:
    assert is_open(OFFICE, at(*utc), NO_HOLIDAYS) is expected


def test_a_window_past_midnight_belongs_to_the_day_it_starts() -> None:
    assert not is_open(NIGHT, at(2026, 5, 8, 19, 59), NO_HOLIDAYS)  # Friday 21:59
    assert is_open(NIGHT, at(2026, 5, 8, 20, 0), NO_HOLIDAYS)  # Friday 22:00
    assert is_open(NIGHT, at(2026, 5, 9, 3, 59), NO_HOLIDAYS)  # Saturday 05:59
    assert not is_open(NIGHT, at(2026, 5, 9, 4, 0), NO_HOLIDAYS)  # Saturday 06:00
    assert not is_open(NIGHT, at(2026, 5, 7, 23, 0), NO_HOLIDAYS)  # Thursday night: not Friday's


def test_holidays_close_all_day_unless_the_schedule_says_otherwise() -> None:
    christmas = frozenset({date(2026, 12, 25)})  # a Friday
    assert is_open(OFFICE, at(2026, 12, 25, 9, 0), NO_HOLIDAYS)
    assert not is_open(OFFICE, at(2026, 12, 25, 9, 0), christmas)
    short = Schedule(windows=OFFICE.windows, on_holidays=[Hours(start="08:00", end="12:00")])
    assert is_open(short, at(2026, 12, 25, 8, 0), christmas)  # 09:00 CET
    assert not is_open(short, at(2026, 12, 25, 11, 0), christmas)  # 12:00 CET
    # The night shift from Christmas Friday is a holiday's: closed; Saturday's own windows are none.
    assert not is_open(NIGHT, at(2026, 12, 25, 21, 30), christmas)
    assert is_open(ALWAYS, at(2026, 12, 25, 3, 0), christmas)


def test_the_same_wall_clock_window_moves_with_daylight_saving() -> None:
    # Friday 27 March 2026 is CET (UTC+1); Monday 30 March is CEST (UTC+2): 07:00 local is 06:00 / 05:00 UTC.
    assert not is_open(OFFICE, at(2026, 3, 27, 5, 59), NO_HOLIDAYS)
    assert is_open(OFFICE, at(2026, 3, 27, 6, 0), NO_HOLIDAYS)
    assert not is_open(OFFICE, at(2026, 3, 30, 4, 59), NO_HOLIDAYS)
    assert is_open(OFFICE, at(2026, 3, 30, 5, 0), NO_HOLIDAYS)
    assert is_open(OFFICE, at(2026, 3, 30, 16, 59), NO_HOLIDAYS)
    assert not is_open(OFFICE, at(2026, 3, 30, 17, 0), NO_HOLIDAYS)


def test_the_skipped_hour_never_opens_and_the_repeated_hour_opens_twice() -> None:
    # 29 March 2026: 02:00 CET jumps to 03:00 CEST; a 02:00-03:00 window never occurs.
    assert not is_open(EARLY, at(2026, 3, 29, 0, 59, 59), NO_HOLIDAYS)  # 01:59:59 CET
    assert not is_open(EARLY, at(2026, 3, 29, 1, 0), NO_HOLIDAYS)  # 03:00 CEST
    # 25 October 2026: 03:00 CEST falls back to 02:00 CET; the window holds in both 02:xx hours.
    assert not is_open(EARLY, at(2026, 10, 24, 23, 59), NO_HOLIDAYS)  # 01:59 CEST
    assert is_open(EARLY, at(2026, 10, 25, 0, 0), NO_HOLIDAYS)  # 02:00 CEST
    assert is_open(EARLY, at(2026, 10, 25, 0, 59), NO_HOLIDAYS)  # 02:59 CEST
    assert is_open(EARLY, at(2026, 10, 25, 1, 0), NO_HOLIDAYS)  # 02:00 CET, again
    assert is_open(EARLY, at(2026, 10, 25, 1, 59), NO_HOLIDAYS)  # 02:59 CET
    assert not is_open(EARLY, at(2026, 10, 25, 2, 0), NO_HOLIDAYS)  # 03:00 CET


def test_bad_windows_are_refused() -> None:
    for start, end in (("07:00", "07:00"), ("24:00", "01:00"), ("7:00", "08:00"), ("07:60", "08:00")):
        with pytest.raises(ValueError):
            Window(days=["mon"], start=start, end=end)
    with pytest.raises(ValueError):
        Window(days=["mon", "mon"], start="07:00", end="08:00")
    assert Window(days=["mon"], start="00:00", end="24:00")
