"""Enrolment with checks: consent first, then the template, then the search against the gallery, then the
signed gallery change, the person's record and the audit entry.

Three ways in, one path: photos (one folder per subject, templates made as the terminal makes them; a
subject whose photos are several people is refused), a walk-up at a terminal (the signed `enroll`; the
person passes its liveness challenge), or an unknown person's event still in the live view (its embedding;
never an event someone marked "not this person"). Under the gdpr and bipa profiles nothing is turned into a
template before a consent is on record: photos of a subject without one are not even read, and `enroll` is
not sent. A template that scores above another subject's 1:1 threshold is refused naming that subject,
unless an admin overrides it for exactly those subjects with a reason; refusals and overrides are audited.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from device.identity.enrolcheck import Clash, clashes
from device.identity.gallery import Subject, check_subject
from device.privacy.terminalseal import seal_for_terminal
from faceonly_backend.accounts import allowed
from faceonly_backend.audit import Actor
from faceonly_backend.consent import Consent, ConsentError
from faceonly_backend.gallery_authority import GalleryError

if TYPE_CHECKING:
    from faceonly_backend.office import BackOffice

log = logging.getLogger(__name__)


class EnrolError(RuntimeError):
    """An enrolment that did not happen; the message says why."""


class DuplicateError(EnrolError):
    """The template scores as someone already enrolled (`clashes` names them)."""

    def __init__(self, found: list[Clash]) -> None:
        super().__init__("; ".join(str(c) for c in found))
        self.clashes = found


@dataclass(frozen=True)
class Override:
    """An admin's decision that a template may join although it scores as `others` (twins, say)."""

    others: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class Details:
    """What an enrolment records about the person besides the template."""

    display_name: str | None = None
    group: str | None = None
    end_date: str | None = None
    consent: dict[str, Any] | None = None  # {person_name, method, given_at?}: recorded first
    override: Override | None = None


@dataclass
class Outcome:
    gallery_version: int | None
    added: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)  # subject -> why
    clashes: list[Clash] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "gallery_version": self.gallery_version,
            "added": self.added,
            "refused": self.refused,
            "clashes": [c.as_json() for c in self.clashes],
        }


class Enrolment:
    def __init__(self, office: BackOffice) -> None:
        self.office = office

    # ---- consent ---------------------------------------------------------------------------------

    def record_consent(
        self, subject: str, person_name: str, method: str, given_at: float | None, actor: Actor
    ) -> Consent:
        """A person's consent to the configured text, recorded and audited (page, CLI and enrolment)."""
        consent = self.office.consents.record(subject, person_name, method, given_at, actor)
        self.office.audit.append(
            actor,
            "consent.record",
            subject,
            consent_id=consent.id,
            text_version=consent.text_version,
            text_sha256=consent.text_sha256,
            method=consent.method,
            given_at=consent.given_at,
        )
        return consent

    def _consent(self, subject: str, details: Details, actor: Actor) -> str | None:
        """Record the consent given with the request (if any), then the consent in force: its id."""
        office = self.office
        if details.consent is not None:
            if not allowed(actor.role, "consent.record"):
                raise EnrolError(f"{actor.name} may not record consent")
            given = details.consent
            self.record_consent(
                subject,
                str(given.get("person_name") or ""),
                str(given.get("method") or ""),
                given.get("given_at"),
                actor,
            )
        try:
            found = office.consents.require(subject)
        except ConsentError as exc:
            raise EnrolError(str(exc)) from None
        return found.id if found is not None else None

    # ---- the checks ------------------------------------------------------------------------------

    def _check(
        self, new: Subject, details: Details, actor: Actor, source: str, also: Sequence[Subject] = ()
    ) -> list[Clash]:
        """`new` against the gallery (and `also`, the batch so far): a duplicate is refused (DuplicateError,
        audited) unless an admin overrides it for exactly the subjects it scores as (audited)."""
        office = self.office
        curves = office.gallery.curves
        if curves is None:
            raise EnrolError("the embedder's manifest has no threshold curves: no template can be checked")
        held = [*office.gallery.subjects(), *also]
        found = clashes([new], held, curves, office.cfg.enrolment.duplicate_far)
        if not found:
            return []
        override = details.override
        permitted = allowed(actor.role, "subjects.override")
        accepted = override is not None and permitted and set(override.others) == {c.other for c in found}
        for c in found:
            office.audit.append(
                actor,
                "subject.enrol.override" if accepted else "subject.enrol.refused",
                c.subject,
                other=c.other,
                score=round(c.score, 4),
                threshold=round(c.threshold, 4),
                source=source,
                reason=override.reason if accepted and override is not None else "duplicate",
            )
        if accepted:
            return found
        if override is not None and not permitted:
            raise EnrolError(f"{actor.name} may not override a duplicate refusal (admins only)")
        raise DuplicateError(found)

    def _add(
        self,
        subjects: list[Subject],
        consent_ids: dict[str, str | None],
        details: Details,
        actor: Actor,
        source: str,
    ) -> int:
        office = self.office
        try:
            version = office.gallery.change(tuple(subjects))
        except GalleryError as exc:
            raise EnrolError(str(exc)) from None
        for s in subjects:
            office.people.put(
                s.id, s.display_name, source, details.group, details.end_date, consent_ids.get(s.id)
            )
            office.audit.append(
                actor,
                "subject.enrol",
                s.id,
                source=source,
                gallery_version=version,
                templates=len(s.templates),
                averaged=s.averaged,
                consent_id=consent_ids.get(s.id),
                override=details.override.reason if details.override is not None else None,
            )
        office.pusher.sync_online()
        return version

    # ---- the three ways in -----------------------------------------------------------------------

    def from_photos(self, photos: Path, actor: Actor, details: Details = Details()) -> Outcome:
        """One folder per subject; a folder without a consent on record is refused unread."""
        from device.identity.builder import subject_folders, subjects_from_photos

        office = self.office
        refused: dict[str, str] = {}
        consent_ids: dict[str, str | None] = {}
        for sid in subject_folders(photos):
            found = office.consents.active(sid)
            if found is None and office.cfg.site.consent_required:
                refused[sid] = "no_consent"
            else:
                consent_ids[sid] = found.id if found is not None else None
        subjects, report, _ = subjects_from_photos(
            photos,
            office.cfg.identity.models_dir,
            same_person_far=office.cfg.enrolment.same_person_far,
            refused=refused,
        )
        outcome = Outcome(None)
        for r in report:
            if r.file == "" and r.status != "ok":
                outcome.refused[r.subject] = r.status + (f": {'; '.join(r.reasons)}" if r.reasons else "")
        for sid, why in outcome.refused.items():
            office.audit.append(actor, "subject.enrol.refused", sid, source="photos", reason=why)
        keep: list[Subject] = []
        for s in subjects:
            try:
                outcome.clashes += self._check(s, details, actor, "photos", keep)
                keep.append(s)
            except DuplicateError as exc:
                outcome.clashes += exc.clashes
                outcome.refused[s.id] = f"duplicate: {exc}"
        if keep:
            outcome.gallery_version = self._add(keep, consent_ids, details, actor, "photos")
            outcome.added = [s.id for s in keep]
        return outcome

    def at_terminal(
        self, terminal: str, subject: str, actor: Actor, details: Details, timeout_s: float
    ) -> Outcome:
        """Walk-up: consent on record, then `enroll` at the terminal, then the checks and the change."""
        from faceonly_backend.pusher import TerminalError

        consent_id = self._consent(subject, details, actor)
        args: dict[str, Any] = {"subject": subject, "timeout_s": timeout_s}
        try:
            if details.display_name:
                # For the terminal's own screen: sealed to it, the name never crosses the broker readable.
                sealed = seal_for_terminal(
                    self.office.pusher.terminal_key(terminal), details.display_name.encode()
                )
                args["display_name_sealed"] = sealed
            result = self.office.pusher.request(terminal, "enroll", args, timeout_s + 10)
        except TerminalError as exc:
            raise EnrolError(str(exc)) from None
        template = self._template(result.get("biometric"))
        return self._one(subject, template, consent_id, details, actor, "walk-up")

    def from_event(self, event_id: str, subject: str, actor: Actor, details: Details) -> Outcome:
        """An unknown person's event, while its embedding is in the live view."""
        office = self.office
        record = office.store.event(event_id)
        if record is None or record.decision != "accepted":
            raise EnrolError(f"event {event_id}: no accepted event with this id")
        if record.subject is not None:
            raise EnrolError(
                f"event {event_id} is recorded as {record.subject}: only an unknown person is enrolled from it"
            )
        if office.corrections.for_event(event_id):
            raise EnrolError(
                f"event {event_id} was marked as a wrong match: its image never becomes a template"
            )
        entry = office.live.get(event_id)
        if entry is None or entry.embedding is None:
            raise EnrolError(
                f"event {event_id}: its template is no longer held (only the live view keeps it, in memory): "
                "enrol the person at a terminal or from photos"
            )
        if entry.embedder_sha256 != office.gallery.embedder.sha256:
            raise EnrolError(f"event {event_id} was made with another embedder than the gallery's")
        consent_id = self._consent(subject, details, actor)
        outcome = self._one(subject, entry.embedding, consent_id, details, actor, "event")
        # The pass was theirs: recorded under them now, and its live entry (their embedding, their
        # thumbnail) goes with them should they be removed.
        office.store.write(
            "UPDATE attendance SET subject = ? WHERE event_id = ? AND subject IS NULL", (subject, event_id)
        )
        office.live.add(event_id, dataclasses.replace(entry, subject=subject))
        return outcome

    def _template(self, biometric: Any) -> np.ndarray:
        from device.privacy.protector import decode_embedding
        from device.privacy.seal import SealError, open_sealed
        from faceonly_backend.keys import read_private_key

        content = biometric if isinstance(biometric, dict) else {}
        if "sealed" in content:
            key = read_private_key(self.office.cfg.identity.private_key_file)
            if key is None:
                raise EnrolError("the template is sealed and the backend has no private key")
            try:
                content = open_sealed(key, {"biometric": content})
            except SealError as exc:
                raise EnrolError(str(exc)) from None
        if not isinstance(content.get("embedding"), str):
            raise EnrolError("the enroll reply carries no template")
        return decode_embedding(content["embedding"])

    def _one(
        self,
        subject: str,
        template: np.ndarray,
        consent_id: str | None,
        details: Details,
        actor: Actor,
        source: str,
    ) -> Outcome:
        try:
            made = check_subject(
                subject, details.display_name, np.asarray(template, np.float32).reshape(1, -1)
            )
        except (ValueError, TypeError) as exc:
            raise EnrolError(f"the template is not usable: {exc}") from None
        found = self._check(made, details, actor, source)
        version = self._add([made], {subject: consent_id}, details, actor, source)
        return Outcome(version, [subject], {}, found)
