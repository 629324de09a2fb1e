"""How the challenge talks to the person: prompt state published through a small hook interface.

The service forwards prompts to a local topic (the terminal's screen or speaker subscribes). With no prompt
channel there can be no challenge: the pipeline then says it runs without one (see pipeline.py).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Literal, Protocol, TextIO

PROMPT_SCHEMA = 1

Step = Literal["turn_left", "turn_right", "blink"]
PromptState = Literal["prompt", "passed", "failed", "feedback"]  # feedback: device.identity.feedback

TEXT = {
    "turn_left": "Please turn your head slowly to your left",
    "turn_right": "Please turn your head slowly to your right",
    "blink": "Please blink",
}


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


class ConsolePromptSink:
    """Writes prompts as JSON lines to a text stream (a console is a prompt channel for trying things out)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def publish(self, prompt: Prompt) -> None:
        self._stream.write(json.dumps({"prompt": prompt.to_dict()}) + "\n")
        self._stream.flush()


def prompt_text(step: Step | None, state: PromptState) -> str:
    if state == "passed":
        return "Thank you"
    if state == "failed":
        return "Sorry, please step back and try again"
    return TEXT[step] if step else ""
