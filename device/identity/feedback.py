"""What the person at the door is told about the outcome and about an enrolment: prompt codes only.

The screen words them in the terminal's language and, for `result.welcome` and `enrol.started`, looks the
display name up on the terminal itself (device/screen); no prompt carries a name.
"""

from __future__ import annotations

from collections.abc import Iterable

from device.contracts import FaceObservation, Prompt, Reason
from device.contracts.prompts import Param
from device.identity.runtime import MatchResult

# Reasons that say what happened along the way, never why a face was not let through.
_NOT_A_CAUSE = frozenset(
    {
        "liveness.off",
        "liveness.passive",
        "liveness.step_up",
        "liveness.replay_risk_flag",
        "liveness.blink_passed",
        "liveness.turn_left_passed",
        "liveness.turn_right_passed",
        "liveness.passed",
        "liveness.no_prompt_channel",
    }
)


def rejection_reason(reasons: Iterable[Reason]) -> str | None:
    """The code of the reason that decided a rejection: the last one that is a cause."""
    causes = [r.code for r in reasons if r.code not in _NOT_A_CAUSE]
    return causes[-1] if causes else None


def outcome_prompt(obs: FaceObservation, match: MatchResult | None, identifies: bool) -> Prompt:
    """The result for one observation. `identifies`: a gallery decides on this terminal (else the backend);
    `match` is its decision for an accepted face (subject None: not in the gallery)."""

    def result(code: str, reason: str | None = None, subject: str | None = None) -> Prompt:
        params: dict[str, Param] = {
            k: v for k, v in (("reason", reason), ("subject", subject)) if v is not None
        }
        return Prompt(obs.track_id, "feedback", None, 0, 0, 0.0, code, obs.last_seen, params)

    if obs.decision != "accepted":
        return result("result.rejected", reason=rejection_reason(obs.reasons))
    if not identifies or match is None:
        return result("result.accepted")
    if match.subject is None:
        return result("result.not_recognised")
    return result("result.welcome", subject=match.subject)


def enrolment_prompt(
    code: str, subject: str, t: float, track_id: int = 0, reason: str | None = None
) -> Prompt:
    """enrol.started / enrol.done / enrol.failed for `subject` (its name stays on the terminal)."""
    params: dict[str, Param] = {"subject": subject}
    if reason is not None:
        params["reason"] = reason
    return Prompt(track_id, "feedback", None, 0, 0, 0.0, code, t, params)
