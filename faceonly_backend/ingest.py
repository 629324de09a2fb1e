"""One message from the broker in, one verdict out: a record to keep, a terminal update, or quarantine.

Pure apart from the keys and the gallery it is given: no database, no MQTT. The order of the checks is the
order of trust: size and nesting depth on the raw bytes (device/wire/bounded.py, before any parsing), JSON,
a terminal we pinned, its signature, then shape and freshness (faceonly_backend/views.py); only then is
anything opened (sealed biometric) or believed (the terminal's match, its state). Status and health are
signed like events: an unsigned, forged or future-dated one changes nothing. Every refusal names one
quarantine reason (QUARANTINE_REASONS; `duplicate` and `stale` are found by the store, `internal` by the
service when judging a message raised).

Fail closed: a match whose score is missing is no match.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from device.contracts import ProbeKind
from device.identity.gallery import DIM
from device.privacy.protector import decode_embedding
from device.privacy.seal import SealError, open_sealed
from device.privacy.signing import SignatureError, verify_payload
from device.transport.topics import API_VERSION
from device.wire.base import validate
from device.wire.bounded import PAYLOAD_CODES, PayloadError, loads_bounded
from faceonly_backend.config import IngestSection
from faceonly_backend.gallery_authority import CentralMatch
from faceonly_backend.passback import Passage, access_of, passage_of
from faceonly_backend.store import Record
from faceonly_backend.views import BiometricView, EventView, HealthView, StatusView

QUARANTINE_REASONS = (
    *PAYLOAD_CODES,  # refused before parsing: payload.too_large | too_deep | not_utf8 | not_json
    "malformed",  # JSON, but not the shape the backend reads (a field of the wrong type, say)
    "unknown_terminal",
    "unsigned",
    "forged",
    "expired",
    "future",  # status or health dated beyond the allowed clock skew
    "stale",  # status or health older than the terminal's stored state (the store says)
    "duplicate",
    "internal",  # judging or storing this one message raised: logged once, acknowledged, the next goes on
)
KINDS = ("event/face", "event/access", "status", "health")
# A central 1:N search: (embedding, embedder sha256) -> the decision and the nearest subject.
Identify = Callable[[np.ndarray, str | None, ProbeKind], CentralMatch]


@dataclass(frozen=True)
class Quarantined:
    reason: str  # one of QUARANTINE_REASONS
    detail: str  # for the log: never payload content


@dataclass(frozen=True)
class Accepted:
    record: Record
    thumbnail: bytes | None  # PNG (JPEG from older terminals), for the in-memory live view only
    raw: bytes  # the exact bytes that crossed the broker (live view only)
    note: str | None = None  # e.g. why no identification was possible
    embedding: np.ndarray | None = None  # an unknown face's, opened: live view only (enrol from the event)
    embedder_sha256: str | None = None


@dataclass(frozen=True)
class TerminalUpdate:
    """A signed, checked state message: the store applies it only if it is newer than what it holds."""

    terminal: str
    kind: str  # "status" | "health"
    at: float  # the terminal's created_at
    state: str | None = None  # status: online | offline
    gallery_version: int | None = None  # status
    health: dict[str, Any] | None = None  # health: the summary the page shows
    gallery_sha256: str | None = None  # status
    gallery_authority: str | None = None  # status


@dataclass(frozen=True)
class Passed:
    """A signed door decision (event/access); `passage` when someone went through a door with a direction;
    `attendance` when a credential decided it and the door counts it (a face decision is recorded from its own
    face event)."""

    passage: Passage | None
    attendance: tuple[Accepted, ...] = ()


Verdict = Quarantined | Accepted | TerminalUpdate | Passed | None  # None: not ours to handle (e.g. a prompt)


def attendance_of(terminal: str, event_id: str, payload: dict[str, Any], now: float) -> Record | None:
    """The attendance record of a door decision a credential made (a badge, PIN or pass: the way in of people
    who do not use the face, who must be on the timesheet too); None for face-only decisions and for what the
    door does not count. ValueError when the access part is not one."""
    access = access_of(payload)
    if not access.attendance or access.subject is None or access.credential is None:
        return None
    created = payload.get("created_at")
    when = (
        float(created)
        if isinstance(created, int | float) and not isinstance(created, bool)
        else access.decided_at
    )
    face = access.face
    return Record(
        event_id,
        terminal,
        when,
        now,
        # Counted means the person was established (the credential held): a punch, even where the door stayed
        # shut for the schedule (its reason says so).
        "accepted",
        access.subject,
        _finite(face.score) if face is not None and face.score is not None else None,
        "credential",
        ({"code": access.reason.code, "text": access.reason.text},) if access.reason is not None else (),
        {},
        _finite(face.threshold) if face is not None and face.threshold is not None else None,
    )


def topic_parts(prefix: str, topic: str) -> tuple[str, str] | None:
    """(terminal id, what) for `<prefix>/v1/dev/<id>/<what>`, else None."""
    head = f"{prefix}/{API_VERSION}/dev/"
    if not topic.startswith(head):
        return None
    terminal, _, what = topic[len(head) :].partition("/")
    return (terminal, what) if terminal and what else None


class Ingest:
    def __init__(
        self,
        prefix: str,
        keys: Callable[[], dict[str, str]],
        private_key: bytes | None,
        identify: Identify | None,
        limits: IngestSection | None = None,
    ) -> None:
        """`keys`: the pinned terminal keys (read on each call, so a terminal added while running counts)."""
        self.prefix, self.keys, self.private_key, self.identify = prefix, keys, private_key, identify
        self.limits = limits or IngestSection()

    def handle(self, topic: str, raw: bytes, now: float) -> Verdict:  # noqa: PLR0911 - one return per quarantine reason
        parts = topic_parts(self.prefix, topic)
        if parts is None or parts[1] not in KINDS:
            return None
        terminal, what = parts
        if not raw:
            return None if what == "status" else Quarantined("malformed", "empty payload")  # retained clear
        try:
            payload = loads_bounded(raw, self.limits.max_payload_bytes, self.limits.max_depth)
        except PayloadError as exc:
            return Quarantined(exc.code, f"{what} on {terminal!r}'s topic: {exc}")
        if not isinstance(payload, dict):
            return Quarantined("malformed", f"{what} from {terminal!r} is not a JSON object")
        if payload.get("terminal_id") != terminal:
            return Quarantined("forged", f"{what} on {terminal!r}'s topic names another terminal")
        key = self.keys().get(terminal)
        if key is None:
            return Quarantined("unknown_terminal", f"terminal {terminal!r} is not registered")
        if "signature" not in payload:
            return Quarantined("unsigned", f"{what} from {terminal!r} is not signed")
        try:
            verify_payload(payload, key)
        except (SignatureError, ValueError, binascii.Error) as exc:
            return Quarantined("forged", f"{what} from {terminal!r}: {exc}")
        if what == "event/face":
            return self._event(terminal, payload, raw, now)
        if what == "event/access":
            try:
                event_id = str(payload.get("id"))
                passage = passage_of(terminal, event_id, payload)
                record = attendance_of(terminal, event_id, payload, now)
            except ValueError as exc:
                return Quarantined("malformed", f"signed access event from {terminal!r}: {exc}")
            return Passed(passage, (Accepted(record, None, raw),) if record is not None else ())
        return self._state(terminal, what, payload, now)

    def _state(self, terminal: str, what: str, payload: dict[str, Any], now: float) -> Verdict:
        view, problems = validate(StatusView if what == "status" else HealthView, payload)
        if view is None:
            return Quarantined("malformed", f"signed {what} from {terminal!r}: {'; '.join(problems)[:300]}")
        if not 0 < view.created_at <= now + self.limits.max_clock_skew_s:
            return Quarantined(
                "future" if view.created_at > now else "malformed",
                f"{what} from {terminal!r} dated {view.created_at:.3f}, the backend's clock says {now:.3f}",
            )
        if isinstance(view, StatusView):
            g = view.gallery
            if g is None:
                return TerminalUpdate(terminal, what, view.created_at, view.state)
            return TerminalUpdate(
                terminal, what, view.created_at, view.state, g.version, None, g.sha256, g.authority or "lab"
            )
        # The skew is allowed either way: a terminal clock that runs behind does not expire every health.
        if view.expires_at is not None and view.expires_at + self.limits.max_clock_skew_s < now:
            return Quarantined("expired", f"health from {terminal!r} expired at {view.expires_at}")
        return TerminalUpdate(terminal, what, view.created_at, health=view.summary())

    def _event(self, terminal: str, payload: dict[str, Any], raw: bytes, now: float) -> Verdict:
        event, problems = validate(EventView, payload)
        if event is None:
            return Quarantined(
                "malformed", f"signed face event from {terminal!r}: {'; '.join(problems)[:300]}"
            )
        if event.expires_at is not None and event.expires_at < now:
            return Quarantined("expired", f"face event {event.id} expired at {event.expires_at}")
        bio, note = self._biometric(payload)
        found, why = self._identity(event, bio)
        obs = event.observation
        reasons = tuple({"code": r.code, "text": r.text} for r in obs.reasons)
        liveness = {k: v for k, v in obs.liveness.items() if v is not None}
        record = Record(
            event.id,
            terminal,
            event.created_at,
            now,
            obs.decision,
            found.subject,
            _finite(found.score),
            found.source,
            reasons,
            liveness,
            _finite(found.threshold),
            _finite(found.margin),
            found.nearest,
            _finite(found.nearest_score),
        )
        # An unknown face's, to enrol it from here; only a flip average (what templates are), never a single view.
        vector = found.vector if found.subject is None and bio.probe == "flip" else None
        sha = bio.embedder.sha256 if bio.embedder is not None else None
        return Accepted(record, _thumbnail(bio), raw, note or why, vector, sha)

    def _biometric(self, payload: dict[str, Any]) -> tuple[BiometricView, str | None]:
        """The biometric section with sealed content opened (when we hold the key)."""
        bio = payload.get("biometric")
        if not isinstance(bio, dict):
            return BiometricView(), None
        plain = {k: v for k, v in bio.items() if k != "sealed"}
        note = None
        if "sealed" in bio:
            if self.private_key is None:
                note = "sealed, and no backend private key"
            else:
                try:
                    plain.update(open_sealed(self.private_key, payload))
                except (SealError, ValueError) as exc:
                    note = f"cannot open the sealed biometric: {exc}"
        view, problems = validate(BiometricView, plain)
        if view is None:
            return BiometricView(), f"the biometric section is not usable: {'; '.join(problems)[:200]}"
        return view, note

    def _identity(self, event: EventView, bio: BiometricView) -> tuple[Identified, str | None]:
        """The terminal's match, else the central gallery's, else unknown; with the note why, if any."""
        if event.observation.decision != "accepted":
            return Identified("none"), None
        match = event.match
        vector, why = self._vector(bio)
        if match is not None and match.subject is not None:
            if match.score is None:
                return Identified("terminal"), "the terminal's match has no finite score: no match"
            return Identified(
                "terminal",
                match.subject,
                match.score,
                match.threshold,
                match.margin,
                match.subject,
                match.score,
            ), None
        if vector is None or self.identify is None:
            if match is None:
                return Identified("none"), why
            # The terminal's unknown: how near it came, without the nearest subject's id (never sent).
            return Identified("terminal", None, match.score, match.threshold, match.margin), why
        sha = bio.embedder.sha256 if bio.embedder is not None else None
        central = self.identify(vector, sha, bio.probe)
        return Identified(
            "backend",
            central.subject,
            central.score,
            central.threshold,
            central.margin,
            central.nearest,
            central.nearest_score,
            vector,
        ), None

    @staticmethod
    def _vector(bio: BiometricView) -> tuple[np.ndarray | None, str | None]:
        if bio.embedding is None:
            return None, None
        try:
            vector = decode_embedding(bio.embedding)
        except (ValueError, binascii.Error):
            return None, "the embedding does not decode"
        if vector.shape != (DIM,) or not np.isfinite(vector).all():
            return None, f"the embedding is not {DIM} finite numbers"
        return vector, None


@dataclass(frozen=True)
class Identified:
    """Who the record names (None: unknown), how it was decided, and how near it came."""

    source: str  # "terminal", "backend" or "none"
    subject: str | None = None
    score: float | None = None
    threshold: float | None = None
    margin: float | None = None
    nearest: str | None = None
    nearest_score: float | None = None
    vector: np.ndarray | None = None


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _thumbnail(bio: BiometricView) -> bytes | None:
    text = bio.thumbnail
    if text is None:
        return None
    try:
        return base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error):
        return None
