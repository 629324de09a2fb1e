"""What the liveness challenge tells the person, and where it goes: a Prompt into a PromptSink (the terminal's
screen or speaker, and the broker as one more listener)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal, Protocol

PROMPT_SCHEMA = 1

Step = Literal["turn_left", "turn_right", "blink"]
PromptState = Literal["prompt", "passed", "failed", "feedback"]  # feedback: device.identity.feedback


@dataclass(frozen=True)
class Prompt:
    track_id: int
    state: PromptState  # "prompt": do `step` now; "passed"/"failed": the whole challenge is over
    step: Step | None
    step_index: int  # 1-based position of `step` in the challenge
    steps: int
    deadline_s: float  # seconds left for this step at the time of the prompt
    text: str
    t: float  # frame time
    schema: int = PROMPT_SCHEMA

    def to_dict(self) -> dict:
        return asdict(self)


class PromptSink(Protocol):
    """Receives prompt state changes; must return quickly (enqueue, do not block the pipeline)."""

    def publish(self, prompt: Prompt) -> None: ...

    def listening(self) -> bool:
        """Whether anyone hears the prompts now (a screen, a speaker, a connected broker)."""
        ...
