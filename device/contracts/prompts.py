"""What the terminal tells the person at the door, as codes and parameters: a Prompt into a PromptSink (the
terminal's own screen and speaker, and the broker as one more listener), and the face guide the screen draws.

Codes are the contract; the words live in the screen's message catalogue (device/screen/messages), in the
terminal's language, rendered on the terminal itself. No prompt carries text, and none carries a display name:
the screen looks the name up locally from `subject` (never over the broker; see device/runtime/prompts.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal, Protocol

PROMPT_SCHEMA = 2

Step = Literal["turn_left", "turn_right", "blink"]
# prompt: do `step` now; retry: that step failed, another comes ("Let's try again"); hint: the face is not
# usable yet (`code` is the quality reason); passed/failed: the challenge is over; feedback: the outcome and
# enrolment prompts
PromptState = Literal["prompt", "retry", "hint", "passed", "failed", "feedback"]
Param = float | int | str

# Every prompt code with what it means; the screen's catalogue has a text for each (tests/test_screen_catalogue).
PROMPT_CODES: dict[str, str] = {
    "challenge.turn_left": "turn the head slowly to the left now (step, step_index, steps, deadline_s)",
    "challenge.turn_right": "turn the head slowly to the right now (step, step_index, steps, deadline_s)",
    "challenge.blink": "blink now (step, step_index, steps, deadline_s)",
    "challenge.retry": "the last step failed: another is asked after a pause (params: reason, try)",
    "challenge.passed": "the challenge passed; the decision follows",
    "challenge.failed": "the challenge failed (params: reason, a reason code)",
    "result.welcome": "recognised on the terminal: welcome (params: subject, the subject id)",
    "result.accepted": "live face accepted; no gallery on the terminal, the backend decides",
    "result.not_recognised": "live, but not in the gallery: the site's alternative way in",
    "result.rejected": "not let through (params: reason, a reason code)",
    "access.look": "a credential was accepted: now look at the camera, the face is checked against it (1:1)",
    "access.checking": "a credential (a PIN) is being checked",
    "access.claim_first": "this door needs a credential first (badge, QR code or number and PIN), then the face",
    "enrol.started": "an enrolment at the door waits for the next good live face (params: subject)",
    "enrol.done": "the enrolment took its face (params: subject)",
    "enrol.failed": "the enrolment ended without a face (params: subject, reason: an enrol.* code)",
}
# Why an enrolment at the door ended without a face (the `reason` of enrol.failed; device/identity/enrolment.py).
ENROL_REASON_CODES: dict[str, str] = {
    "enrol.timeout": "no good live face came in time",
    "enrol.no_live_face": "a face came and failed the liveness challenge",
    "enrol.two_faces": "another face was in view at the same time",
}
STEP_CODES: dict[Step, str] = {
    "turn_left": "challenge.turn_left",
    "turn_right": "challenge.turn_right",
    "blink": "challenge.blink",
}


@dataclass(frozen=True)
class Prompt:
    track_id: int
    state: PromptState
    step: Step | None
    step_index: int  # 1-based position of `step` in the challenge
    steps: int
    deadline_s: float  # seconds left for this step at the time of the prompt
    code: str  # a key of PROMPT_CODES, or a quality reason code for a hint
    t: float  # frame time
    # Codes and numbers only: reason (a reason code), subject (the matched or enrolled subject id; the screen
    # looks its name up locally), try (the retry's number). Never text.
    params: dict[str, Param] = field(default_factory=dict)
    schema: int = PROMPT_SCHEMA

    def __post_init__(self) -> None:
        known = self.code in PROMPT_CODES or (self.state == "hint" and self.code.startswith("quality."))
        if not known:
            raise ValueError(f"unknown prompt code {self.code!r}")  # a new prompt needs its code listed

    @property
    def reason(self) -> str | None:
        value = self.params.get("reason")
        return value if isinstance(value, str) else None

    @property
    def subject(self) -> str | None:
        value = self.params.get("subject")
        return value if isinstance(value, str) else None

    def to_dict(self) -> dict:
        return asdict(self)


class PromptSink(Protocol):
    """Receives prompt state changes; must return quickly (enqueue, do not block the pipeline)."""

    def publish(self, prompt: Prompt) -> None: ...

    def listening(self) -> bool:
        """Whether anyone hears the prompts now (a screen, a speaker, a connected broker)."""
        ...


@dataclass(frozen=True)
class FaceGuide:
    """Where the face is and what keeps it from being good enough, for the screen's face guide.

    Coordinates are normalised to the frame (0..1, x right, y down, as the camera sees it). Only geometry
    and codes: never pixels. `points` are a few dozen face-mesh landmarks (the face outline, eyes, nose,
    mouth) when the mesh ran on this frame, else the detector's 6 keypoints."""

    track_id: int
    t: float
    box: tuple[float, float, float, float]
    points: tuple[tuple[float, float], ...]
    reasons: tuple[str, ...]  # quality reason codes of this frame, in the gate's order; () = good enough
    aspect: float = 4 / 3  # frame width / height, to draw the normalised points undistorted
    mesh_presence: float | None = None  # the face mesh's face score when it ran (low: the face is covered)


class GuideSink(Protocol):
    """Receives a face guide per tracked face and frame; must return at once (the sink thins them out)."""

    def guide(self, guide: FaceGuide) -> None: ...
