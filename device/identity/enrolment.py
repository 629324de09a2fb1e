"""Enrolment at the terminal: the `enroll` command waits for the next face that passes quality and liveness.

One enrolment at a time. It ends with exactly one outcome: the template (and thumbnail when the policy
allows it) of a live face, or the reason it could not: `timeout` (no face came), `no_live_face` (a face came
and failed the liveness challenge), `two_faces` (another face was in view at the same time: whose template
would it be?). The terminal never adds the template to its own gallery: the backend signs the delta that
does. Pure: the service feeds observations and the clock, and publishes the outcome.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from device.contracts import FaceObservation

MIN_TIMEOUT_S, MAX_TIMEOUT_S = 1.0, 300.0


@dataclass(frozen=True)
class EnrolRequest:
    subject: str
    display_name: str | None
    deadline: float  # service clock (time.monotonic)


@dataclass(frozen=True)
class Outcome:
    ok: bool
    reason: str | None  # None when ok
    observation: FaceObservation | None = field(default=None, repr=False)


def _overlaps(a: FaceObservation, b: FaceObservation) -> bool:
    return a.track_id != b.track_id and a.first_seen <= b.last_seen and b.first_seen <= a.last_seen


def _liveness_failed(obs: FaceObservation) -> bool:
    """Rejected by the challenge (not merely by image quality, which another look may fix)."""
    return (
        obs.decision == "rejected"
        and bool(obs.liveness)
        and not any(r.startswith("never good enough") for r in obs.reasons)
    )


class Enrolment:
    def __init__(self, request: EnrolRequest) -> None:
        self.request = request
        self._seen: list[FaceObservation] = []

    def offer(self, observations: list[FaceObservation]) -> Outcome | None:
        """The outcome once these observations decide it, else None (keep waiting)."""
        self._seen = [*self._seen[-16:], *observations]
        for obs in observations:
            if obs.decision == "accepted" and obs.embedding is not None:
                if any(_overlaps(obs, other) for other in self._seen):
                    return Outcome(False, "two_faces")
                return Outcome(True, None, obs)
            if _liveness_failed(obs):
                return Outcome(False, "no_live_face")
        return None

    def expired(self, now: float) -> Outcome | None:
        return Outcome(False, "timeout") if now >= self.request.deadline else None


def check_enrol_args(args: dict[str, Any], now: float, subject_pattern) -> EnrolRequest:
    """An EnrolRequest from command arguments; ValueError naming the bad argument."""
    unknown = set(args) - {"subject", "display_name", "timeout_s"}
    if unknown:
        raise ValueError(f"unknown argument(s): {', '.join(sorted(unknown))}")
    subject = args.get("subject")
    if not isinstance(subject, str) or not subject_pattern.match(subject):
        raise ValueError(f"subject must match {subject_pattern.pattern}")
    name = args.get("display_name")
    if name is not None and (not isinstance(name, str) or len(name) > 128):
        raise ValueError("display_name must be text of at most 128 characters")
    timeout = args.get("timeout_s", 30.0)
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not (MIN_TIMEOUT_S <= timeout <= MAX_TIMEOUT_S)
    ):
        raise ValueError(f"timeout_s must be a number in {MIN_TIMEOUT_S:g}..{MAX_TIMEOUT_S:g}")
    return EnrolRequest(subject, name, now + float(timeout))
