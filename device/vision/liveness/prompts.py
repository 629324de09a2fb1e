"""How the challenge talks to the person: prompt state published through a small hook interface.

The service forwards prompts to a local topic (the terminal's screen or speaker subscribes). With no prompt
channel there can be no challenge: the pipeline then says it runs without one (see pipeline.py).
"""

from __future__ import annotations

import json
from typing import TextIO

from device.contracts import Prompt, PromptState, Step

TEXT = {
    "turn_left": "Please turn your head slowly to your left",
    "turn_right": "Please turn your head slowly to your right",
    "blink": "Please blink",
}


class ConsolePromptSink:
    """Writes prompts as JSON lines to a text stream (a console is a prompt channel for trying things out)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def publish(self, prompt: Prompt) -> None:
        self._stream.write(json.dumps({"prompt": prompt.to_dict()}) + "\n")
        self._stream.flush()

    def listening(self) -> bool:
        return not self._stream.closed


def prompt_text(step: Step | None, state: PromptState) -> str:
    if state == "passed":
        return "Thank you"
    if state == "failed":
        return "Sorry, please step back and try again"
    return TEXT[step] if step else ""
