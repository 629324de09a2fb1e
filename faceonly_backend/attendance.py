"""Attendance an operator can use: the per-day report over recorded passes and manual corrections.

The punches are the recorded passes (accepted, naming a person, after "not this person" corrections) that
no one voided, and the manual punches operators added; both kinds of correction carry a reason and who made
it, are kept, and are audited. Days, times and the date range are the site's (`[site] time_zone`);
faceonly_backend/timesheet.py turns punches into days.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from typing import TYPE_CHECKING, Any

from faceonly_backend.audit import Actor
from faceonly_backend.timesheet import Day, Punch, day_bounds, days

if TYPE_CHECKING:
    from faceonly_backend.office import BackOffice

DIRECTIONS = ("in", "out", "both")


class AttendanceError(ValueError):
    """A correction or a report that cannot be made; the message says why."""


def parse_day(text: str | None, what: str) -> dt.date:
    try:
        return dt.date.fromisoformat(str(text))
    except ValueError:
        raise AttendanceError(f"{what} must be a date YYYY-MM-DD") from None


class AttendanceBook:
    def __init__(self, office: BackOffice) -> None:
        self.office = office

    @property
    def zone(self):
        return self.office.cfg.site.zone

    def punches(self, since: float, until: float, subject: str | None = None) -> list[Punch]:
        db, doors = self.office.store, self.office.cfg.attendance.doors
        where, params = "", [since, until]
        if subject is not None:
            where = " AND subject = ?"
        bound = [*params, subject] if subject is not None else params
        # A void is dated by the pass it voids.
        voided = {
            str(r[0])
            for r in db.query(
                "SELECT event_id FROM adjustments WHERE kind = 'void' AND at >= ? AND at < ?", (since, until)
            )
        }
        out = [
            Punch(str(s), float(at), str(t), doors.get(str(t), "both"), str(e))
            for e, t, at, s in db.query(
                "SELECT event_id, terminal, created_at, subject FROM attendance WHERE decision = 'accepted' "
                f"AND subject IS NOT NULL AND created_at >= ? AND created_at < ?{where}",
                bound,
            )
            if str(e) not in voided
        ]
        out += [
            Punch(str(s), float(at), "manual", direction, str(i), f"{reason} ({by})")
            for i, s, at, direction, reason, by in db.query(
                "SELECT id, subject, at, direction, reason, made_by FROM adjustments WHERE kind = 'add' "
                f"AND at >= ? AND at < ?{where}",
                bound,
            )
        ]
        return out

    def report(
        self, first: str, last: str, group: str | None = None, subject: str | None = None
    ) -> list[dict[str, Any]]:
        """One row per person per day with a punch, with name and group."""
        since, until = day_bounds(parse_day(first, "from"), parse_day(last, "to"), self.zone)
        people = {p.id: p for p in self.office.people.all(include_erased=True)}
        rows = []
        for day in days(
            self.punches(since, until, subject), self.zone, self.office.cfg.attendance.debounce_s
        ):
            person = people.get(day.subject)
            if group is not None and (person is None or person.group != group):
                continue
            rows.append(self._row(day, person))
        return rows

    def _row(self, day: Day, person) -> dict[str, Any]:
        return day.as_json(self.zone) | {
            "name": person.display_name if person is not None else None,
            "group": person.group if person is not None else None,
        }

    def groups(self) -> list[str]:
        return sorted({p.group for p in self.office.people.all(include_erased=True) if p.group})

    # ---- corrections -----------------------------------------------------------------------------

    def add_punch(
        self, subject: str, local: str, direction: str, reason: str, actor: Actor
    ) -> dict[str, Any]:
        """A manual punch at `local` (YYYY-MM-DDTHH:MM, the site's time) with a reason."""
        if self.office.people.get(subject) is None:
            raise AttendanceError(f"no subject {subject}")
        if direction not in DIRECTIONS:
            raise AttendanceError(f"direction must be one of {', '.join(DIRECTIONS)}")
        try:
            when = dt.datetime.fromisoformat(local)
        except ValueError:
            raise AttendanceError("the time must be YYYY-MM-DDTHH:MM in the site's time zone") from None
        if when.tzinfo is not None:
            raise AttendanceError("give the site's local time without an offset")
        at = when.replace(tzinfo=self.zone).timestamp()
        if at > time.time() + 3600:
            raise AttendanceError("a punch cannot be added in the future")
        return self._adjust(subject, "add", None, at, direction, reason, actor)

    def void(self, event_id: str, reason: str, actor: Actor) -> dict[str, Any]:
        """A recorded pass no longer counts (a double pass, a pass for someone else): kept, with the reason."""
        record = self.office.store.event(event_id)
        if record is None or record.decision != "accepted" or record.subject is None:
            raise AttendanceError(f"event {event_id} is no recorded pass of a person")
        held = self.office.store.query(
            "SELECT 1 FROM adjustments WHERE kind = 'void' AND event_id = ?", (event_id,)
        )
        if held:
            raise AttendanceError(f"event {event_id} is voided already")
        return self._adjust(record.subject, "void", event_id, record.created_at, None, reason, actor)

    def remove_punch(self, adjustment_id: str, reason: str, actor: Actor) -> dict[str, Any]:
        """A manual punch taken back: voided like a pass, so both stay on record."""
        rows = self.office.store.query(
            "SELECT subject, at FROM adjustments WHERE id = ? AND kind = 'add'", (adjustment_id,)
        )
        if not rows:
            raise AttendanceError(f"no manual punch {adjustment_id}")
        self.office.store.write("UPDATE adjustments SET kind = 'add-voided' WHERE id = ?", (adjustment_id,))
        return self._adjust(str(rows[0][0]), "void", adjustment_id, float(rows[0][1]), None, reason, actor)

    def _adjust(
        self,
        subject: str,
        kind: str,
        ref: str | None,
        at: float,
        direction: str | None,
        reason: str,
        actor: Actor,
    ) -> dict[str, Any]:
        why = " ".join(str(reason).split())
        if not why:
            raise AttendanceError("a correction needs a reason")
        adjustment = {
            "id": uuid.uuid4().hex,
            "subject": subject,
            "kind": kind,
            "event_id": ref,
            "at": at,
            "direction": direction,
            "reason": why[:500],
            "made_by": actor.name,
            "made_at": time.time(),
        }
        self.office.store.write(
            f"INSERT INTO adjustments ({', '.join(adjustment)}) VALUES ({', '.join('?' * len(adjustment))})",
            tuple(adjustment.values()),
        )
        self.office.audit.append(
            actor,
            f"attendance.{'punch' if kind == 'add' else 'void'}",
            subject,
            adjustment_id=adjustment["id"],
            event_id=ref,
            at=at,
            direction=direction,
            reason=adjustment["reason"],
        )
        return adjustment
