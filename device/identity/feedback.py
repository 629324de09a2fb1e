"""What the person at the terminal is told, on the liveness prompt channel (screen or speaker).

The display name comes from the gallery only (never from a command or the broker).
"""

from __future__ import annotations

from typing import Literal

from device.contracts import Prompt

Feedback = Literal["welcome", "not_recognised", "look_at_camera", "enrolled"]

TEXT: dict[str, str] = {
    "not_recognised": "Not recognised",
    "look_at_camera": "Look at the camera",
    "enrolled": "Enrolment done",
}


def feedback_text(kind: Feedback, display_name: str | None = None) -> str:
    if kind == "welcome":
        return f"Welcome, {display_name}" if display_name else "Welcome"
    return TEXT[kind]


def feedback_prompt(track_id: int, kind: Feedback, t: float, display_name: str | None = None) -> Prompt:
    return Prompt(track_id, "feedback", None, 0, 0, 0.0, feedback_text(kind, display_name), t)
