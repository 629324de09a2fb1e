"""The people a site knows: subject id, name, group, end date, consent, and where they are in their life cycle.

`active`: enrolled, templates in the gallery. `deactivated`: templates purged everywhere, name and attendance
records kept (left the company, consent withdrawn, retention reached: "deactivate, keep records").
`erased`: templates purged and the name gone; attendance records kept or anonymised by the site's policy,
never silently lost. Anonymising gives the person's records a fresh random pseudonym (in attendance,
corrections and adjustments alike) that nothing links back to them: the days and hours stay countable.
"""

from __future__ import annotations

import datetime as dt
import secrets
import time
import zoneinfo
from dataclasses import dataclass
from typing import Any

from faceonly_backend.db import Database

STATUSES = ("active", "deactivated", "erased")
COLUMNS = "id, display_name, added_at, source, status, group_name, end_date, consent_id, status_at"
GROUP_MAX = 64


@dataclass(frozen=True)
class Person:
    id: str
    display_name: str | None
    added_at: float  # enrolled (or enrolled again): the start of the retention clock without a pass
    source: str  # photos | walk-up | event
    status: str
    group: str | None
    end_date: str | None  # YYYY-MM-DD, the site's calendar: templates purged after this day
    consent_id: str | None
    status_at: float | None

    def as_json(self, last_seen: float | None = None) -> dict[str, Any]:
        return {
            "id": self.id,
            "display_name": self.display_name,
            "added_at": self.added_at,
            "source": self.source,
            "status": self.status,
            "group": self.group,
            "end_date": self.end_date,
            "consent_id": self.consent_id,
            "status_at": self.status_at,
            "last_seen": last_seen,
        }


def check_end_date(text: str | None) -> str | None:
    if text in (None, ""):
        return None
    assert text is not None
    return dt.date.fromisoformat(text).isoformat()  # ValueError for anything but YYYY-MM-DD


def check_group(text: str | None) -> str | None:
    group = " ".join(str(text).split()) if text is not None else ""
    if len(group) > GROUP_MAX:
        raise ValueError(f"a group name has at most {GROUP_MAX} characters")
    return group or None


class People:
    def __init__(self, db: Database) -> None:
        self.db = db

    def put(
        self,
        subject: str,
        display_name: str | None,
        source: str,
        group: str | None = None,
        end_date: str | None = None,
        consent_id: str | None = None,
    ) -> None:
        """Enrol (or enrol again): active from now, with these details."""
        now = time.time()
        self.db.write(
            f"INSERT INTO subjects ({COLUMNS}) VALUES (?, ?, ?, ?, 'active', ?, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET display_name = excluded.display_name, added_at = excluded.added_at, "
            "source = excluded.source, status = 'active', group_name = excluded.group_name, "
            "end_date = excluded.end_date, consent_id = excluded.consent_id, status_at = excluded.status_at",
            (
                subject,
                display_name,
                now,
                source,
                check_group(group),
                check_end_date(end_date),
                consent_id,
                now,
            ),
        )

    def all(self, include_erased: bool = False) -> list[Person]:
        clause = "" if include_erased else "WHERE status <> 'erased' "
        return [Person(*r) for r in self.db.query(f"SELECT {COLUMNS} FROM subjects {clause}ORDER BY id")]

    def get(self, subject: str) -> Person | None:
        rows = self.db.query(f"SELECT {COLUMNS} FROM subjects WHERE id = ?", (subject,))
        return Person(*rows[0]) if rows else None

    def names(self) -> dict[str, str]:
        return {str(i): str(n) for i, n in self.db.query("SELECT id, display_name FROM subjects") if n}

    def update(self, subject: str, group: str | None, end_date: str | None) -> bool:
        return bool(
            self.db.write(
                "UPDATE subjects SET group_name = ?, end_date = ? WHERE id = ?",
                (check_group(group), check_end_date(end_date), subject),
            )
        )

    def leave(self, subject: str, status: str) -> bool:
        """active -> deactivated or erased; False when it was not active (another instance, or a second
        click, did it already): the caller then does nothing more."""
        assert status in STATUSES[1:]
        name = "display_name" if status == "deactivated" else "NULL"
        return bool(
            self.db.write(
                f"UPDATE subjects SET status = ?, status_at = ?, display_name = {name} "
                "WHERE id = ? AND status = 'active'",
                (status, time.time(), subject),
            )
        )

    def erase_name(self, subject: str) -> bool:
        """A deactivated person erased later: the name goes."""
        return bool(
            self.db.write(
                "UPDATE subjects SET status = 'erased', status_at = ?, display_name = NULL, group_name = NULL "
                "WHERE id = ? AND status = 'deactivated'",
                (time.time(), subject),
            )
        )

    def anonymise_records(self, subject: str) -> int:
        """The subject's attendance, corrections and adjustments under a fresh random pseudonym; how many
        attendance records."""
        alias, now = f"anon-{secrets.token_hex(6)}", time.time()
        with self.db.lock, self.db.tx() as tx:
            count = tx.execute(
                "UPDATE attendance SET subject = ?, anonymised_at = ? WHERE subject = ?",
                (alias, now, subject),
            ).rowcount
            for column in ("original_subject", "nearest"):
                tx.execute(
                    f"UPDATE attendance SET {column} = ?, anonymised_at = ? WHERE {column} = ?",
                    (alias, now, subject),
                )
            for column in ("wrong_subject", "right_subject"):
                tx.execute(f"UPDATE corrections SET {column} = ? WHERE {column} = ?", (alias, subject))
            tx.execute("UPDATE adjustments SET subject = ? WHERE subject = ?", (alias, subject))
        return count

    def records(self, subject: str) -> int:
        rows = self.db.query("SELECT COUNT(*) FROM attendance WHERE subject = ?", (subject,))
        return int(rows[0][0])

    def last_seen(self) -> dict[str, float]:
        """Each subject's latest recorded pass."""
        rows = self.db.query(
            "SELECT subject, MAX(created_at) FROM attendance WHERE subject IS NOT NULL GROUP BY subject"
        )
        return {str(s): float(t) for s, t in rows}

    def due(self, now: float, template_days: int | None, zone: zoneinfo.ZoneInfo) -> list[tuple[str, str]]:
        """(subject, why) for every active subject past its retention: the day after its end date has begun
        in the site's time zone, or `template_days` have passed since its last pass (or its enrolment)."""
        today = dt.datetime.fromtimestamp(now, zone).date().isoformat()
        seen = self.last_seen() if template_days is not None else {}
        out = []
        for person in self.all():
            if person.status != "active":
                continue
            if person.end_date is not None and person.end_date < today:
                out.append((person.id, f"end date {person.end_date} passed"))
                continue
            if template_days is not None:
                contact = max(person.added_at, seen.get(person.id, 0.0))
                if now - contact > template_days * 86400:
                    last = dt.datetime.fromtimestamp(contact, zone).date().isoformat()
                    out.append((person.id, f"not seen for {template_days} days (last contact {last})"))
        return out
