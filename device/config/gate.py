"""[gate]: what a live match opens (a relay on a GPIO pin, or a signed MQTT decision for a relay elsewhere)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from device.config.base import Section

# A decision older than this never opens anything (the person may have walked away; a queue may lag).
MAX_DECISION_AGE_S = 1.0


class GateConfig(Section):
    kind: Literal["none", "gpio", "mqtt"] = Field(
        "none",
        description="none; gpio: pulse a relay (gpiozero, lgpio on the Pi); mqtt: a signed decision message "
        "for `faceonly gate listen` next to a relay elsewhere.",
    )
    door: str = Field(
        "main",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
        description="Which door this terminal opens (mqtt: signed into each decision; the listener's --door).",
    )
    gpio_pin: int = Field(17, ge=0, le=27, description="BCM pin of the relay (gpio).")
    active_high: bool = Field(True, description="Relay energised by a high level (gpio).")
    pulse_s: float = Field(0.5, ge=0.05, le=10.0, description="How long the relay stays energised (gpio).")
    decision_ttl_s: float = Field(
        1.0,
        ge=0.2,
        le=5.0,
        description="Validity of a decision (mqtt): its message expiry and signed expires_at. It is sent at "
        "once (QoS 0) or dropped and counted, never queued across an outage.",
    )
    max_decision_age_s: float = Field(
        MAX_DECISION_AGE_S,
        gt=0.0,
        le=MAX_DECISION_AGE_S,
        description="A decision older than this (seconds, at most 1) opens nothing.",
    )
