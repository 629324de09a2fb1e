"""Per person per day in the site's time zone (faceonly_backend/timesheet.py): first in, last out, time worked,
doors, missing punches; across DST changes; repeated passes at one door counted once; any sequence of
punches gives a day that adds up."""

from __future__ import annotations

import datetime as dt
import zoneinfo

from hypothesis import given, settings
from hypothesis import strategies as st

from faceonly_backend.timesheet import Punch, day_bounds, days, hours_minutes

BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")


def at(local: str, zone: zoneinfo.ZoneInfo = BERLIN, fold: int = 0) -> float:
    return dt.datetime.fromisoformat(local).replace(tzinfo=zone, fold=fold).timestamp()


def punch(
    local: str,
    door: str = "gate-a",
    direction: str = "both",
    who: str = "emp-1",
    fold: int = 0,
    note: str | None = None,
) -> Punch:
    return Punch(who, at(local, fold=fold), door, direction, f"{who}-{local}-{door}-{fold}", note)  # type: ignore[arg-type]


def test_a_plain_day_and_a_lunch_break() -> None:
    (day,) = days(
        [
            punch("2026-03-04T08:02"),
            punch("2026-03-04T12:00", "gate-b"),
            punch("2026-03-04T12:45", "gate-b"),
            punch("2026-03-04T17:10"),
        ],
        BERLIN,
        60,
    )
    j = day.as_json(BERLIN)
    assert (j["date"], j["first_in"], j["last_out"], j["worked"]) == ("2026-03-04", "08:02", "17:10", "8:23")
    assert j["doors"] == ["gate-a", "gate-b"] and not j["missing_punch"]


def test_a_missing_out_and_an_out_without_in_are_flagged_and_add_no_time() -> None:
    first, second = days(
        [
            punch("2026-03-04T08:00", "in", "in"),
            punch("2026-03-04T13:00", "in", "in"),  # the 08:00 in has no out
            punch("2026-03-04T17:00", "out", "out"),
            punch("2026-03-05T07:55", "out", "out"),  # an out with no in
            punch("2026-03-05T16:00", "in", "in"),  # an in with no out by the day's end
        ],
        BERLIN,
        60,
    )
    assert first.missing == ["in at 08:00 has no out"] and first.worked_s == 4 * 3600
    assert second.missing == ["out at 07:55 has no in", "in at 16:00 has no out"] and second.worked_s == 0
    assert first.as_json(BERLIN)["missing_punch"] and second.last_out == at("2026-03-05T07:55")


def test_days_are_the_sites_and_time_is_what_passed_across_dst() -> None:
    # 2026-03-29: 02:00 CET becomes 03:00 CEST (a 23-hour day); 2026-10-25: 03:00 CEST becomes 02:00 CET.
    spring, autumn = days(
        [
            punch("2026-03-29T01:30"),
            punch("2026-03-29T03:30"),  # one hour later on the clock of the world, two on the wall
            punch("2026-10-25T02:30", fold=0),
            punch(
                "2026-10-25T02:15", fold=1
            ),  # after the clocks went back: later, though the wall says earlier
        ],
        BERLIN,
        60,
    )
    assert spring.worked_s == 3600 and spring.as_json(BERLIN)["worked"] == "1:00"
    assert autumn.worked_s == 45 * 60 and (autumn.first_in, autumn.last_out) == (
        at("2026-10-25T02:30", fold=0),
        at("2026-10-25T02:15", fold=1),
    )
    start, end = day_bounds(dt.date(2026, 3, 29), dt.date(2026, 3, 29), BERLIN)
    assert end - start == 23 * 3600
    start, end = day_bounds(dt.date(2026, 10, 25), dt.date(2026, 10, 25), BERLIN)
    assert end - start == 25 * 3600
    # A pass at 23:30 UTC is the next day in Berlin and the same day in New York.
    late = Punch("emp-1", at("2026-03-04T23:30", zoneinfo.ZoneInfo("UTC")), "gate-a", "both", "x")
    assert days([late], BERLIN, 60)[0].date == "2026-03-05"
    assert days([late], zoneinfo.ZoneInfo("America/New_York"), 60)[0].date == "2026-03-04"


def test_lingering_at_one_door_counts_once_and_manual_punches_count_with_their_note() -> None:
    (day,) = days(
        [
            punch("2026-03-04T08:00:00"),
            punch("2026-03-04T08:00:20"),  # the same person still in front of the camera
            punch("2026-03-04T12:00", "manual", note="forgot to look up (hr-anna)"),
            punch("2026-03-04T16:00"),
        ],
        BERLIN,
        60,
    )
    counted = [p["counted"] for p in day.punches]
    assert counted == ["in", "repeat", "out", "in"]
    assert day.worked_s == 4 * 3600 and day.missing == ["in at 16:00 has no out"] and day.manual == 1


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 24 * 3600 - 1),
            st.sampled_from(["a", "b"]),
            st.sampled_from(["in", "out", "both"]),
            st.booleans(),
        ),
        max_size=20,
    )
)
def test_any_punches_give_days_that_add_up(raw) -> None:
    base = at("2026-03-29T00:00")  # a DST day, too
    punches = [
        Punch("emp-1", base + s, door, direction, f"p{i}", "manual" if manual else None)  # type: ignore[arg-type]
        for i, (s, door, direction, manual) in enumerate(raw)
    ]
    for day in days(punches, BERLIN, 60):
        counted = [p for p in day.punches if p["counted"] != "repeat"]
        ins = [p for p in counted if p["counted"] == "in"]
        assert 0 <= day.worked_s <= (max(p["at"] for p in counted) - min(p["at"] for p in counted))
        assert day.first_in == (ins[0]["at"] if ins else None)
        assert len(day.punches) == sum(
            1 for p in punches if dt.datetime.fromtimestamp(p.at, BERLIN).date().isoformat() == day.date
        )
        # Each in is closed by one out, or it is a missing punch; each out is an in's, or it is missing.
        outs = [p for p in counted if p["counted"] == "out"]
        assert len(day.missing) >= abs(len(ins) - len(outs))
        assert hours_minutes(day.worked_s).count(":") == 1
