"""The `access` part of an `event.access` message (topic .../event/access): one door decision, which mode
decided it and which factors passed. Codes and ids only: the subject id (a member's or a visitor pass's),
never a name, a PIN, a badge number or a QR code's text. Its JSON Schema (device/api/schemas/access.json) is
generated from this model.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from device.wire.payloads import ReasonItem

Factor = Literal["face", "pin", "badge", "qr", "pass"]


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FaceFactor(_Part):
    track_id: int = Field(ge=0, description="the face's track: its event/face has the same track_id")
    check: Literal["search", "claim"] = Field(
        description="search: 1:N over the gallery; claim: 1:1 against the person a credential named"
    )
    score: float | None = Field(description="cosine of the best template (null: none usable)")
    threshold: float | None = Field(description="the threshold in force for this check")


class Access(_Part):
    """A door decision. `granted` opened the gate (or would have: see `gate`)."""

    door: str = Field(description="[gate] door of the terminal")
    mode: Literal["face", "credential+face", "credential", "face|credential"] = Field(
        description="the door's mode in the signed door policy that decided"
    )
    direction: Literal["in", "out"] | None = Field(description="the door's direction (null: both ways)")
    decision: Literal["granted", "refused"]
    reason: ReasonItem | None = Field(description="why refused (an access.* or a face's reason code)")
    subject: str | None = Field(description="the person (or visitor pass holder) id; null: nobody known")
    credential: Literal["pin", "badge", "qr", "pass"] | None = Field(
        description="the credential presented (pass: a visitor's QR pass; qr: a member's QR code)"
    )
    factors: dict[Factor, Literal["passed", "failed"]] = Field(
        description="each factor the decision weighed and whether it passed"
    )
    face: FaceFactor | None = Field(description="the face factor's check, when a face was weighed")
    pass_id: str | None = Field(description="the visitor pass's or member code's token id")
    attendance: bool = Field(
        description="counts as attendance: granted, or refused only for its schedule where the door says so"
    )
    gate: Literal["opened", "shut", "dropped", "none"] = Field(
        description="opened; shut (refused); dropped (granted, but the gate output could not take it now); "
        "none (granted, the terminal drives no gate)"
    )
    policy_version: int = Field(ge=0, description="version of the signed door policy")
    decided_at: float = Field(description="unix seconds (terminal clock)")


EVENT_ACCESS_PARTS: dict[str, type[_Part]] = {"access": Access}
