"""What a door decision becomes besides the gate: the person's prompt (codes only) and the `access` part of
its signed event.access (device/wire/access.py: codes and ids, never a name, a PIN, a badge or a QR text)."""

from __future__ import annotations

import math
from typing import Any

from device.access.decide import Decision
from device.contracts import CODES, Prompt, Reason
from device.contracts.prompts import Param
from device.wire.access import Access, FaceFactor
from device.wire.payloads import ReasonItem


def event_body(decision: Decision, gate: str, policy_version: int) -> dict[str, Any]:
    """The body of the decision's event.access; `gate`: opened | shut | dropped | none."""
    reason = None
    if decision.reason is not None and decision.reason in CODES:
        reason = ReasonItem.of(Reason(decision.reason, CODES[decision.reason]))
    face = None
    if decision.face_check is not None and decision.track_id is not None:
        face = FaceFactor(
            track_id=decision.track_id,
            check=decision.face_check,
            score=_finite(decision.score),
            threshold=_finite(decision.threshold),
        )
    part = Access(
        door=decision.door,
        mode=decision.mode,
        direction=decision.direction,
        decision="granted" if decision.granted else "refused",
        reason=reason,
        subject=decision.subject,
        credential=decision.credential,
        factors=decision.factors,
        face=face,
        pass_id=decision.token.id if decision.token is not None else None,
        attendance=decision.attendance and gate != "dropped",
        gate=gate,
        policy_version=policy_version,
        decided_at=round(decision.wall, 3),
    )
    return {"access": part.model_dump(mode="json")}


def prompt_for(
    code: str, track: int, t: float, subject: str | None = None, reason: str | None = None
) -> Prompt:
    """A feedback prompt: the outcome (result.*) or the door's own step (access.*)."""
    params: dict[str, Param] = {k: v for k, v in (("reason", reason), ("subject", subject)) if v is not None}
    return Prompt(track, "feedback", None, 0, 0, 0.0, code, t, params)


def _finite(value: float | None) -> float | None:
    return round(value, 6) if value is not None and math.isfinite(value) else None
