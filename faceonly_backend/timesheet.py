"""Per person per day, in the site's time zone: first in, last out, time worked, doors used, missing punches.

Pure: punches in, days out. A punch is a recorded pass (a door's direction from the config: in, out, or
both, where passes alternate in, out, in...) or a manual punch an operator added with a reason. A day is
the site's local calendar day (zoneinfo: a DST change gives a day of 23 or 25 hours) and time worked is
measured on the UTC clock, so an hour that happens twice or not at all is counted as it passed. Passes at
one door in one direction closer together than the debounce count once (a person who lingers in front of the
camera). Pairs are made in time order: an in with no out before the next in or the day's end, or an out with
no in before it, is a missing punch, named with its local time; it adds no time.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

Direction = Literal["in", "out", "both"]
MAX_DAYS = 366


@dataclass(frozen=True)
class Punch:
    subject: str
    at: float  # UTC seconds
    door: str  # the terminal, or "manual"
    direction: Direction
    ref: str  # the event id or the adjustment id
    note: str | None = None  # a manual punch: its reason and who added it


@dataclass
class Day:
    subject: str
    date: str  # YYYY-MM-DD, local
    first_in: float | None = None
    last_out: float | None = None
    worked_s: float = 0.0
    doors: list[str] = field(default_factory=list)
    punches: list[dict[str, Any]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def manual(self) -> int:
        return sum(1 for p in self.punches if p["note"] is not None)

    def as_json(self, zone: zoneinfo.ZoneInfo) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "date": self.date,
            "first_in": local_time(self.first_in, zone),
            "last_out": local_time(self.last_out, zone),
            "first_in_at": self.first_in,
            "last_out_at": self.last_out,
            "worked_s": round(self.worked_s),
            "worked": hours_minutes(self.worked_s),
            "doors": self.doors,
            "punches": self.punches,
            "missing": self.missing,
            "missing_punch": bool(self.missing),
            "manual": self.manual,
        }


def local_time(at: float | None, zone: zoneinfo.ZoneInfo) -> str | None:
    return None if at is None else dt.datetime.fromtimestamp(at, zone).strftime("%H:%M")


def hours_minutes(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{minutes // 60}:{minutes % 60:02d}"


def day_bounds(first: dt.date, last: dt.date, zone: zoneinfo.ZoneInfo) -> tuple[float, float]:
    """UTC seconds of local midnight starting `first` and local midnight ending `last`."""
    if last < first:
        raise ValueError("the range ends before it starts")
    if (last - first).days >= MAX_DAYS:
        raise ValueError(f"a range of at most {MAX_DAYS} days")
    start = dt.datetime.combine(first, dt.time(0), tzinfo=zone)
    end = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(0), tzinfo=zone)
    return start.timestamp(), end.timestamp()


def days(punches: Iterable[Punch], zone: zoneinfo.ZoneInfo, debounce_s: float) -> list[Day]:
    """Every (subject, local day) with a punch, by subject then date."""
    by_day: dict[tuple[str, str], list[Punch]] = defaultdict(list)
    for p in punches:
        by_day[(p.subject, dt.datetime.fromtimestamp(p.at, zone).date().isoformat())].append(p)
    return [
        _day(subject, date, sorted(ps, key=lambda p: (p.at, p.ref)), zone, debounce_s)
        for (subject, date), ps in sorted(by_day.items())
    ]


def _day(subject: str, date: str, punches: list[Punch], zone: zoneinfo.ZoneInfo, debounce_s: float) -> Day:
    day = Day(subject, date)
    last_at: dict[tuple[str, str], float] = {}
    open_in: Punch | None = None
    for p in punches:
        key = (p.door, p.direction)
        repeat = p.note is None and key in last_at and p.at - last_at[key] < debounce_s
        if p.note is None:
            last_at[key] = p.at
        if repeat:
            day.punches.append(_shown(p, zone, "repeat"))
            continue
        as_in = p.direction == "in" or (p.direction == "both" and open_in is None)
        if as_in:
            if open_in is not None:
                day.missing.append(f"in at {local_time(open_in.at, zone)} has no out")
            open_in = p
            day.first_in = p.at if day.first_in is None else day.first_in
        elif open_in is None:
            day.missing.append(f"out at {local_time(p.at, zone)} has no in")
        else:
            day.worked_s += p.at - open_in.at
            open_in = None
        if not as_in:
            day.last_out = p.at
        day.punches.append(_shown(p, zone, "in" if as_in else "out"))
        if p.door not in day.doors:
            day.doors.append(p.door)
    if open_in is not None:
        day.missing.append(f"in at {local_time(open_in.at, zone)} has no out")
    return day


def _shown(p: Punch, zone: zoneinfo.ZoneInfo, counted: str) -> dict[str, Any]:
    return {
        "time": local_time(p.at, zone),
        "at": p.at,
        "door": p.door,
        "counted": counted,
        "ref": p.ref,
        "note": p.note,
    }
