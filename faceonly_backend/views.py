"""What the backend reads of a terminal's payloads, as strict typed views validated after the signature.

Strict where the backend acts on a field (a bool is no number, a number no text, every number finite, a
subject id is an id) and lenient about the rest: a field the backend does not read is passed over, so a
terminal of a newer version still gets its events recorded. A validation error is a `malformed` quarantine
naming the field, never the value. The terminal's own formats (device/wire/payloads.py) are stricter.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from device.identity.gallery import ID_PATTERN
from device.wire.base import Number

EVENT_ID_PATTERN = r"^[0-9A-Za-z-]{8,64}$"
# What a count or version may be: within JSON's exact integers (RFC 8785 signs nothing larger).
Count = Annotated[int, Field(ge=0, le=2**53)]
Code = Annotated[str, StringConstraints(max_length=64)]
Text = Annotated[str, StringConstraints(max_length=2000)]
SubjectId = Annotated[str, StringConstraints(pattern=ID_PATTERN.pattern)]


class _View(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)


class ReasonView(_View):
    code: Code
    text: Text


class ObservationView(_View):
    decision: Literal["accepted", "rejected"]
    reasons: list[ReasonView] = []
    liveness: dict[Code, Number | None] = {}


class MatchView(_View):
    subject: SubjectId | None = None
    score: Number | None = None
    margin: Number | None = None
    threshold: Number | None = None


class EmbedderView(_View):
    sha256: str | None = None


class BiometricView(_View):
    """The biometric section once a sealed part is opened (its content merged in)."""

    embedder: EmbedderView | None = None
    embedding: str | None = None
    thumbnail: str | None = None
    probe: Literal["single", "flip"] = "flip"  # absent: a terminal from before single-view probes


class EventView(_View):
    type: Literal["event.face"]
    id: Annotated[str, StringConstraints(pattern=EVENT_ID_PATTERN)]
    created_at: Number
    expires_at: Number | None = None
    observation: ObservationView
    match: MatchView | None = None


class GalleryView(_View):
    version: Count | None = None
    sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")] | None = None
    authority: Literal["backend", "lab"] | None = None


class StatusView(_View):
    type: Literal["status"]
    created_at: Number
    state: Literal["online", "offline"]
    gallery: GalleryView | None = None


class OutboxView(_View):
    depth: Count | None = None


class HealthView(_View):
    """Health as the page shows it: a few numbers, each optional."""

    type: Literal["health"]
    created_at: Number
    expires_at: Number | None = None
    fps: Number | None = None
    outbox: OutboxView | None = None
    cpu_temp_c: Number | None = None
    uptime_s: Number | None = None
    events: dict[Code, Count] | None = None

    def summary(self) -> dict:
        """What the page shows of it (and all the store keeps)."""
        keep = self.model_dump(include={"fps", "outbox", "cpu_temp_c", "uptime_s", "events"})
        return {k: v for k, v in keep.items() if v is not None}
