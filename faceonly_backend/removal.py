"""Taking a person's templates away: deactivate (keep the records), erase (the name too; records kept or
anonymised by policy), consent withdrawn, retention reached. Each one is a purge with a receipt.

The order: the person's status first (only the instance that moves it from `active` goes on, so a retention
sweep on two instances purges once), then the signed gallery version without the subject (the backend keeps
only the latest version, so no stored gallery still holds the templates), the in-memory live view's
thumbnails, raw bytes and embeddings of the subject's events, the attendance policy, the receipt naming every
registered terminal, the audit entry; then every terminal is sent the signed `subject.purge` (templates and
queued events erased there) and the new gallery, and confirms (faceonly_backend/pusher.py).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from faceonly_backend.audit import Actor
from faceonly_backend.gallery_authority import GalleryError

if TYPE_CHECKING:
    from faceonly_backend.office import BackOffice

log = logging.getLogger(__name__)
RETENTION = Actor("system:retention", "admin")


class RemovalError(RuntimeError):
    """A removal that did not happen; the message says why."""


class Removal:
    def __init__(self, office: BackOffice) -> None:
        self.office = office

    def deactivate(self, subject: str, actor: Actor, reason: str = "deactivated") -> dict[str, Any]:
        """Templates purged everywhere; the person (name, group) and every attendance record kept."""
        if not self.office.people.leave(subject, "deactivated"):
            raise RemovalError(self._why_not(subject))
        return self._purge(subject, actor, reason, anonymise=False)

    def erase(self, subject: str, actor: Actor) -> dict[str, Any]:
        """Templates purged everywhere and the name erased; attendance records kept or anonymised
        (`[retention] attendance_on_erase`). A deactivated person can be erased later."""
        office = self.office
        person = office.people.get(subject)
        if person is None or person.status == "erased":
            raise RemovalError(self._why_not(subject))
        policy = office.cfg.retention.attendance_on_erase
        if person.status == "active":
            if not office.people.leave(subject, "erased"):
                raise RemovalError(self._why_not(subject))
            return self._purge(subject, actor, "erased", anonymise=policy == "anonymise")
        office.people.erase_name(subject)  # deactivated before: the templates are gone already
        records = (
            office.people.anonymise_records(subject)
            if policy == "anonymise"
            else office.people.records(subject)
        )
        office.audit.append(actor, "subject.erase", subject, attendance=policy, records=records)
        receipts = office.purges.receipts(subject, limit=1)
        return (
            receipts[0]
            if receipts
            else {"subject": subject, "attendance": {"records": records, "policy": policy}}
        )

    def withdraw_consent(self, subject: str, actor: Actor) -> dict[str, Any]:
        withdrawn = self.office.consents.withdraw(subject)
        self.office.audit.append(actor, "consent.withdraw", subject, consents=withdrawn)
        return self.deactivate(subject, actor, "consent withdrawn")

    def _why_not(self, subject: str) -> str:
        person = self.office.people.get(subject)
        return f"no subject {subject}" if person is None else f"{subject} is {person.status} already"

    def _purge(self, subject: str, actor: Actor, reason: str, anonymise: bool) -> dict[str, Any]:
        office = self.office
        version = office.gallery.version
        if office.gallery.holds(subject):
            try:
                version = office.gallery.change(remove=(subject,))
            except GalleryError as exc:
                # The status moved: the sweep and the page show the purge as not done; say so loudly.
                log.error("purge of %s: the gallery could not be changed: %s", subject, exc)
                raise RemovalError(f"the gallery could not be changed: {exc}") from None
        ids = [r.event_id for r in office.store.events(1_000_000, subject=subject)]
        dropped = office.live.forget(ids, subject)
        records = office.people.anonymise_records(subject) if anonymise else office.people.records(subject)
        attendance = "anonymised" if anonymise else "kept"
        purge_id = office.purges.open(subject, reason, actor.name, version, attendance, records, dropped)
        office.audit.append(
            actor,
            "subject.purge",
            subject,
            reason=reason,
            purge_id=purge_id,
            gallery_version=version,
            attendance=attendance,
            records=records,
        )
        office.pusher.sync_online()
        receipt = office.purges.receipt(purge_id)
        assert receipt is not None
        return receipt

    def sweep(self, now: float | None = None) -> list[str]:
        """Retention: every active subject past its end date, or not seen for the site's days, deactivated
        (templates purged everywhere, records kept); the purge ids. Then terminals that lag are brought in line."""
        office = self.office
        when = time.time() if now is None else now
        done = []
        for subject, why in office.people.due(when, office.cfg.template_days, office.cfg.site.zone):
            try:
                receipt = self.deactivate(subject, RETENTION, f"retention: {why}")
            except RemovalError as exc:  # another instance took it first
                log.info("retention of %s: %s", subject, exc)
                continue
            log.info("retention: %s's templates purged (%s), receipt %s", subject, why, receipt["purge_id"])
            done.append(str(receipt["purge_id"]))
        office.pusher.sync_online(lagging_only=True)
        return done
