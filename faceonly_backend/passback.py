"""Anti-passback across doors: the backend sees every terminal's door decisions and reports what one terminal
cannot see (issue 22 item 4; a terminal refuses a second entry through its own door only).

Every signed `event.access` that let someone through a door with a direction becomes a passage (event id,
terminal, door, in or out, subject, time), kept in its own table next to the backend's others (migration 3). A person's
passages in time order should alternate in / out; two entries without an exit between them (through two
doors, or through one door whose terminal forgave it after its period) and two exits without an entry are
violations, reported as they arrive (the log) and over any span (`faceonly backend passback`). Refused
decisions, doors that go both ways without a chosen direction, and attendance-only terminals are not passages.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from device.wire.access import Access
from faceonly_backend.db import Database

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Passage:
    event_id: str
    terminal: str
    door: str
    direction: str  # in | out
    subject: str
    decided_at: float


@dataclass(frozen=True)
class Violation:
    kind: str  # entry_without_exit | exit_without_entry
    subject: str
    first: Passage  # the passage before, in the same direction
    second: Passage

    def as_json(self) -> dict[str, Any]:
        def side(p: Passage) -> dict[str, Any]:
            return {"event_id": p.event_id, "terminal": p.terminal, "door": p.door, "at": p.decided_at}

        return {
            "kind": self.kind,
            "subject": self.subject,
            "first": side(self.first),
            "second": side(self.second),
        }


def access_of(payload: dict[str, Any]) -> Access:
    """The access part of a signed, checked event.access; ValueError when it is not one."""
    try:
        return Access.model_validate(payload.get("access"))
    except ValidationError as exc:
        raise ValueError(f"access: {exc.error_count()} problem(s)") from None


def passage_of(terminal: str, event_id: str, payload: dict[str, Any]) -> Passage | None:
    """The passage a signed, checked event.access records (None: nobody went through a door with a
    direction); ValueError when its access part is not one."""
    access = access_of(payload)
    if access.decision != "granted" or access.gate == "dropped" or access.direction is None:
        return None
    if access.subject is None:
        return None
    return Passage(event_id, terminal, access.door, access.direction, access.subject, access.decided_at)


def violations(passages: Iterable[Passage]) -> list[Violation]:
    """Every pair of consecutive passages of one person in the same direction, in time order."""
    out: list[Violation] = []
    last: dict[str, Passage] = {}
    for p in sorted(passages, key=lambda p: (p.decided_at, p.event_id)):
        before = last.get(p.subject)
        if before is not None and before.direction == p.direction:
            kind = "entry_without_exit" if p.direction == "in" else "exit_without_entry"
            out.append(Violation(kind, p.subject, before, p))
        last[p.subject] = p
    return out


class PassageLog:
    """The passages table (migration 3, faceonly_backend/migrations.py) in the backend's database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def record(self, passages: list[Passage]) -> list[Violation]:
        """Store new passages (a redelivered event is stored once) and return the violations they make with
        each person's passage just before them."""
        if not passages:
            return []
        found: list[Violation] = []
        with self.db.lock, self.db.tx() as tx:
            for p in sorted(passages, key=lambda p: p.decided_at):
                new = tx.execute(
                    "INSERT INTO passages (event_id, terminal, door, direction, subject, decided_at) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING",
                    (p.event_id, p.terminal, p.door, p.direction, p.subject, p.decided_at),
                ).rowcount
                if not new:
                    continue
                rows = tx.execute(
                    "SELECT event_id, terminal, door, direction, subject, decided_at FROM passages "
                    "WHERE subject = ? AND decided_at <= ? AND event_id <> ? ORDER BY decided_at DESC LIMIT 1",
                    (p.subject, p.decided_at, p.event_id),
                ).fetchall()
                found += violations([Passage(*rows[0]), p]) if rows else []
        for v in found:
            log.warning(
                "anti-passback: %s of %s: %s at %s/%s after %s at %s/%s",
                v.kind, v.subject, v.second.direction, v.second.terminal, v.second.door,
                v.first.direction, v.first.terminal, v.first.door,
            )  # fmt: skip
        return found

    def passages(self, since: float = 0.0, until: float = float("inf")) -> list[Passage]:
        rows = self.db.query(
            "SELECT event_id, terminal, door, direction, subject, decided_at FROM passages "
            "WHERE decided_at >= ? AND decided_at < ? ORDER BY decided_at",
            (since, until if until != float("inf") else 2**62),
        )
        return [Passage(*row) for row in rows]

    def report(self, since: float = 0.0, until: float = float("inf")) -> list[Violation]:
        return violations(self.passages(since, until))
