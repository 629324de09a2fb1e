"""One message from the broker in, one verdict out: a record to keep, a terminal update, or quarantine.

Pure apart from the keys and the gallery it is given: no database, no MQTT. The order of the checks is the
order of trust: shape, a terminal we pinned, its signature, then freshness; only then is anything opened
(sealed biometric) or believed (the terminal's match). Every refusal names one quarantine reason:

    malformed | unknown_terminal | unsigned | forged | expired      (`duplicate` is found by the store)

Fail closed: a match whose score is missing or not a finite number is no match.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from device.backend.store import Record
from device.privacy.protector import decode_embedding
from device.privacy.seal import SealError, open_sealed
from device.privacy.signing import SignatureError, verify_payload
from device.transport.topics import API_VERSION

QUARANTINE_REASONS = ("malformed", "unknown_terminal", "unsigned", "forged", "expired", "duplicate")
_EVENT_ID = re.compile(r"^[0-9A-Za-z-]{8,64}$")
# A central 1:N search: (embedding, embedder sha256) -> (subject or None, score).
Identify = Callable[[np.ndarray, str | None], tuple[str | None, float]]


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


@dataclass(frozen=True)
class TerminalUpdate:
    terminal: str
    kind: str  # "status" | "health"
    body: dict[str, Any]
    at: float


Verdict = Quarantined | Accepted | TerminalUpdate | None  # None: not ours to handle (e.g. a prompt)


def topic_parts(prefix: str, topic: str) -> tuple[str, str] | None:
    """(terminal id, what) for `<prefix>/v1/dev/<id>/<what>`, else None."""
    head = f"{prefix}/{API_VERSION}/dev/"
    if not topic.startswith(head):
        return None
    terminal, _, what = topic[len(head) :].partition("/")
    return (terminal, what) if terminal and what else None


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


class Ingest:
    def __init__(
        self,
        prefix: str,
        keys: Callable[[], dict[str, str]],
        private_key: bytes | None,
        identify: Identify | None,
    ) -> None:
        """`keys`: the pinned terminal keys (read on each call, so a terminal added while running counts)."""
        self.prefix, self.keys, self.private_key, self.identify = prefix, keys, private_key, identify

    def handle(self, topic: str, raw: bytes, now: float) -> Verdict:  # noqa: PLR0911 - one return per quarantine reason
        parts = topic_parts(self.prefix, topic)
        if parts is None:
            return None
        terminal, what = parts
        if what not in ("event/face", "status", "health"):
            return None
        if not raw:
            return None if what == "status" else Quarantined("malformed", "empty payload")  # retained clear
        try:
            payload = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return Quarantined("malformed", f"{what} from {terminal!r} is not JSON")
        if not isinstance(payload, dict):
            return Quarantined("malformed", f"{what} from {terminal!r} is not a JSON object")
        if payload.get("terminal_id") != terminal:
            return Quarantined("forged", f"{what} on {terminal!r}'s topic names another terminal")
        key = self.keys().get(terminal)
        if key is None:
            return Quarantined("unknown_terminal", f"terminal {terminal!r} is not registered")
        if what != "event/face":
            at = _finite(payload.get("created_at"))
            if at is None:
                return Quarantined("malformed", f"{what} from {terminal!r} has no created_at")
            return TerminalUpdate(terminal, what, payload, at)
        return self._event(terminal, payload, key, raw, now)

    def _event(self, terminal: str, payload: dict[str, Any], key: str, raw: bytes, now: float) -> Verdict:
        if payload.get("type") != "event.face":
            return Quarantined("malformed", f"face event from {terminal!r} has type {payload.get('type')!r}")
        if "signature" not in payload:
            return Quarantined("unsigned", f"face event from {terminal!r} is not signed")
        try:
            verify_payload(payload, key)
        except (SignatureError, ValueError, binascii.Error) as exc:
            return Quarantined("forged", f"face event from {terminal!r}: {exc}")
        event_id, created = payload.get("id"), _finite(payload.get("created_at"))
        if not isinstance(event_id, str) or not _EVENT_ID.match(event_id) or created is None:
            return Quarantined("malformed", f"signed face event from {terminal!r} lacks an id or created_at")
        expires = payload.get("expires_at")
        if expires is not None and (_finite(expires) is None or float(expires) < now):
            return Quarantined("expired", f"face event {event_id} expired at {expires}")
        obs = payload.get("observation")
        if not isinstance(obs, dict) or obs.get("decision") not in ("accepted", "rejected"):
            return Quarantined("malformed", f"face event {event_id} has no observation decision")
        bio, note = self._biometric(payload)
        subject, score, source, why = self._identity(payload, bio, obs["decision"])
        reasons = tuple(
            {"code": str(r.get("code")), "text": str(r.get("text"))}
            for r in obs.get("reasons") or []
            if isinstance(r, dict)
        )
        liveness = {k: float(v) for k, v in (obs.get("liveness") or {}).items() if _finite(v) is not None}
        record = Record(
            event_id, terminal, created, now, obs["decision"], subject, score, source, reasons, liveness
        )
        return Accepted(record, _thumbnail(bio), raw, note or why)

    def _biometric(self, payload: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        """The biometric section with sealed content opened (when we hold the key)."""
        bio = payload.get("biometric")
        if not isinstance(bio, dict):
            return {}, None
        if "sealed" not in bio:
            return bio, None
        if self.private_key is None:
            return {k: v for k, v in bio.items() if k != "sealed"}, "sealed, and no backend private key"
        try:
            content = open_sealed(self.private_key, payload)
        except (SealError, ValueError) as exc:
            return {k: v for k, v in bio.items() if k != "sealed"}, f"cannot open the sealed biometric: {exc}"
        return {**{k: v for k, v in bio.items() if k != "sealed"}, **content}, None

    def _identity(
        self, payload: dict[str, Any], bio: dict[str, Any], decision: str
    ) -> tuple[str | None, float | None, str, str | None]:
        """(subject, score, source, note): the terminal's match, else the central gallery's, else unknown."""
        if decision != "accepted":
            return None, None, "none", None
        match = payload.get("match")
        if isinstance(match, dict) and match.get("subject") is not None:
            score = _finite(match.get("score"))
            if score is None or not isinstance(match.get("subject"), str):
                return None, None, "terminal", "the terminal's match has no finite score: no match"
            return match["subject"], score, "terminal", None
        embedding = bio.get("embedding")
        if not isinstance(embedding, str) or self.identify is None:
            score = _finite(match.get("score")) if isinstance(match, dict) else None
            return None, score, "terminal" if isinstance(match, dict) else "none", None
        try:
            vector = decode_embedding(embedding)
        except (ValueError, binascii.Error):
            return None, None, "none", "the embedding does not decode"
        embedder = bio.get("embedder")
        sha = embedder.get("sha256") if isinstance(embedder, dict) else None
        subject, score = self.identify(vector, sha if isinstance(sha, str) else None)
        return subject, score if math.isfinite(score) else None, "backend", None


def _thumbnail(bio: dict[str, Any]) -> bytes | None:
    text = bio.get("thumbnail")
    if not isinstance(text, str):
        return None
    try:
        return base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error):
        return None
