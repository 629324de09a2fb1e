"""Corrections of recognition: "not this person" on a recorded event, and what the matching learns from them.

A correction changes the record (its subject becomes the right person, or unknown; the original stays in
`original_subject`) and is kept with its reason, who made it and when, and audited. What is sound to learn:
an image someone marked as a wrong match never becomes a template (faceonly_backend/enrol.py refuses to enrol
from it), and the same two subjects confused again and again are reported (their templates are too alike:
enrol them again with better photos, or check they are not one person). Thresholds are never moved per
subject: that would trade one person's false accepts against another's unseen.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from faceonly_backend.audit import Actor

if TYPE_CHECKING:
    from faceonly_backend.office import BackOffice

log = logging.getLogger(__name__)


class CorrectionError(ValueError):
    """A correction that cannot be made; the message says why."""


@dataclass(frozen=True)
class Correction:
    id: str
    event_id: str
    wrong_subject: str | None
    right_subject: str | None
    reason: str
    made_by: str
    made_at: float

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


COLUMNS = "id, event_id, wrong_subject, right_subject, reason, made_by, made_at"


class Corrections:
    def __init__(self, office: BackOffice) -> None:
        self.office = office

    def correct(self, event_id: str, right: str | None, reason: str, actor: Actor) -> dict[str, Any]:
        """The event's record names `right` (None: an unknown person) instead of whom it named."""
        office = self.office
        record = office.store.event(event_id)
        if record is None:
            raise CorrectionError(f"no recorded event {event_id}")
        if record.decision != "accepted":
            raise CorrectionError(f"event {event_id} was not let through: there is no match to correct")
        why = " ".join(str(reason).split())
        if not why:
            raise CorrectionError("a correction needs a reason")
        if right == record.subject:
            raise CorrectionError(f"event {event_id} names {right or 'nobody'} already")
        if right is not None and office.people.get(right) is None:
            raise CorrectionError(f"no subject {right}")
        correction = Correction(
            uuid.uuid4().hex, event_id, record.subject, right, why[:500], actor.name, time.time()
        )
        db = office.store
        with db.lock, db.tx() as tx:
            tx.execute(
                "UPDATE attendance SET subject = ?, original_subject = COALESCE(original_subject, subject) "
                "WHERE event_id = ?",
                (right, event_id),
            )
            tx.execute(
                f"INSERT INTO corrections ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                tuple(correction.__dict__.values()),
            )
        office.audit.append(
            actor, "event.correct", event_id, wrong=record.subject, right=right, reason=correction.reason
        )
        repeated = self.confusions(office.cfg.enrolment.confusion_report_after, pair=(record.subject, right))
        for c in repeated:
            log.warning("repeated confusion: %s", c["text"])
        return {"correction": correction.as_json(), "confusions": repeated}

    def for_event(self, event_id: str) -> list[Correction]:
        rows = self.office.store.query(
            f"SELECT {COLUMNS} FROM corrections WHERE event_id = ? ORDER BY made_at", (event_id,)
        )
        return [Correction(*r) for r in rows]

    def recent(self, limit: int = 100) -> list[Correction]:
        rows = self.office.store.query(
            f"SELECT {COLUMNS} FROM corrections ORDER BY made_at DESC LIMIT ?", (limit,)
        )
        return [Correction(*r) for r in rows]

    def confusions(
        self, at_least: int, pair: tuple[str | None, str | None] | None = None
    ) -> list[dict[str, Any]]:
        """Pairs of subjects (or a subject and strangers) confused at least `at_least` times, most first."""
        rows = self.office.store.query(
            "SELECT wrong_subject, right_subject, COUNT(*), MAX(made_at) FROM corrections "
            "WHERE wrong_subject IS NOT NULL GROUP BY wrong_subject, right_subject"
        )
        counts: dict[tuple[str, str | None], tuple[int, float]] = {}
        for wrong, right, count, last in rows:
            # Two people are confused whichever way round: one pair.
            first, second = sorted((str(wrong), str(right))) if right is not None else (str(wrong), None)
            held = counts.get((first, second), (0, 0.0))
            counts[(first, second)] = (held[0] + int(count), max(held[1], float(last)))
        out = []
        for (a, b), (count, last) in sorted(counts.items(), key=lambda kv: -kv[1][0]):
            if count < at_least:
                continue
            if pair is not None and {a, b} != set(pair):
                continue
            text = (
                f"{a} matched strangers {count} times: enrol {a} again with better photos"
                if b is None
                else f"{a} and {b} confused {count} times: enrol them again with better photos, or check they are "
                "not one person"
            )
            out.append({"subjects": [a, b], "count": count, "last_at": last, "text": text})
        return out
