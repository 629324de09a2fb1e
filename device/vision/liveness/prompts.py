"""How the challenge talks to the person: prompt codes published through a small hook interface.

The service forwards prompts to the terminal's screen and speaker (device/screen), which word them in the
terminal's language. With no prompt channel there can be no challenge: the pipeline then says it runs
without one (see pipeline.py).
"""

from __future__ import annotations

import json
from typing import TextIO

from device.contracts import Prompt


class ConsolePromptSink:
    """Writes prompts as JSON lines to a text stream (a console is a prompt channel for trying things out)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def publish(self, prompt: Prompt) -> None:
        self._stream.write(json.dumps({"prompt": prompt.to_dict()}) + "\n")
        self._stream.flush()

    def listening(self) -> bool:
        return not self._stream.closed
