"""Consent: which text people agree to (versioned), and who agreed, when, how, and who collected it.

Under the site profiles `gdpr` and `bipa` a template is made only for a subject with a consent on record
that is not withdrawn (checked before a walk-up `enroll` is sent to a terminal, before photos are turned into
templates, before an unknown event's template is used). The text is the file the config names, stored with
its SHA-256 under its version the first time the backend sees it; a version is never given another text.
Under `none` (a lab) no consent is asked.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass
from typing import Any

from faceonly_backend.audit import Actor
from faceonly_backend.config import SiteSection
from faceonly_backend.db import INTEGRITY_ERRORS, Database

METHODS = ("paper", "electronic")  # a signed paper form, or an electronic signature: a written release
MAX_CLOCK_AHEAD_S = 300.0


class ConsentError(ValueError):
    """No usable consent (or a consent record that cannot be made); the message says what is missing."""


@dataclass(frozen=True)
class Consent:
    id: str
    subject: str
    person_name: str
    text_version: str
    text_sha256: str
    method: str
    given_at: float
    collected_by: str
    recorded_at: float
    withdrawn_at: float | None

    def as_json(self) -> dict[str, Any]:
        return self.__dict__ | {"withdrawn": self.withdrawn_at is not None}


COLUMNS = (
    "id, subject, person_name, text_version, text_sha256, method, given_at, collected_by, recorded_at, "
    "withdrawn_at"
)


class ConsentBook:
    def __init__(self, db: Database, site: SiteSection) -> None:
        self.db, self.site = db, site
        self.text: tuple[str, str, str] | None = None  # (version, sha256, text) of the configured text
        if site.consent_text_file is not None and site.consent_version is not None:
            text = site.consent_text_file.read_text(encoding="utf-8")
            self.text = (site.consent_version, hashlib.sha256(text.encode()).hexdigest(), text)
            self._register(*self.text)

    def _register(self, version: str, sha: str, text: str) -> None:
        held = self.db.query("SELECT sha256 FROM consent_texts WHERE version = ?", (version,))
        if held and held[0][0] != sha:
            raise ConsentError(
                f"consent version {version} is on record with another text: give the new text a new version"
            )
        if not held:
            try:
                self.db.write(
                    "INSERT INTO consent_texts (version, sha256, text, added_at) VALUES (?, ?, ?, ?)",
                    (version, sha, text, time.time()),
                )
            except INTEGRITY_ERRORS:  # another instance registered it at the same moment
                self._register(version, sha, text)

    def texts(self) -> list[dict[str, Any]]:
        rows = self.db.query("SELECT version, sha256, text, added_at FROM consent_texts ORDER BY added_at")
        return [{"version": v, "sha256": h, "text": t, "added_at": a} for v, h, t, a in rows]

    def record(
        self, subject: str, person_name: str, method: str, given_at: float | None, by: Actor
    ) -> Consent:
        """Record a consent to the configured text's current version."""
        if self.text is None:
            raise ConsentError(
                "no consent text is configured: set [site] consent_text_file and consent_version"
            )
        name = " ".join(str(person_name).split())
        if not name or len(name) > 128:
            raise ConsentError("the consent needs the person's name (at most 128 characters)")
        if method not in METHODS:
            raise ConsentError(f"method must be one of {', '.join(METHODS)} (a written release)")
        now = time.time()
        when = now if given_at is None else float(given_at)
        if not 0 < when <= now + MAX_CLOCK_AHEAD_S:
            raise ConsentError("the consent cannot be dated in the future")
        version, sha, _ = self.text
        consent = Consent(uuid.uuid4().hex, subject, name, version, sha, method, when, str(by), now, None)
        self.db.write(
            f"INSERT INTO consents ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            tuple(consent.__dict__.values()),
        )
        return consent

    def for_subject(self, subject: str) -> list[Consent]:
        rows = self.db.query(
            f"SELECT {COLUMNS} FROM consents WHERE subject = ? ORDER BY recorded_at DESC", (subject,)
        )
        return [Consent(*r) for r in rows]

    def active(self, subject: str) -> Consent | None:
        return next((c for c in self.for_subject(subject) if c.withdrawn_at is None), None)

    def require(self, subject: str) -> Consent | None:
        """The subject's consent in force; ConsentError when the site profile requires one and there is none.
        None under the `none` profile without a consent on record."""
        found = self.active(subject)
        if found is None and self.site.consent_required:
            raise ConsentError(
                f"no consent on record for {subject} (site profile {self.site.profile}): record the person's "
                "consent before any template is made"
            )
        return found

    def withdraw(self, subject: str) -> int:
        """Every consent of the subject withdrawn now; how many were in force."""
        return self.db.write(
            "UPDATE consents SET withdrawn_at = ? WHERE subject = ? AND withdrawn_at IS NULL",
            (time.time(), subject),
        )
