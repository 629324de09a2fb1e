"""[gate]: what a live match opens (a relay on a GPIO pin, or a local MQTT decision), and for how long."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from device.config.base import Section

# A decision older than this never opens anything (the person may have walked away; a queue may lag).
MAX_DECISION_AGE_S = 1.0


class GateConfig(Section):
    kind: Literal["none", "gpio", "mqtt"] = Field(
        "none",
        description="none; gpio: pulse a relay (gpiozero, lgpio on the Pi); mqtt: a local decision message.",
    )
    gpio_pin: int = Field(17, ge=0, le=27, description="BCM pin of the relay (gpio).")
    active_high: bool = Field(True, description="Relay energised by a high level (gpio).")
    pulse_s: float = Field(0.5, ge=0.05, le=10.0, description="How long the relay stays energised (gpio).")
    decision_ttl_s: float = Field(
        1.0,
        ge=0.2,
        le=5.0,
        description="Message expiry of the local decision (mqtt): a late opener ignores it.",
    )
    max_decision_age_s: float = Field(
        MAX_DECISION_AGE_S,
        gt=0.0,
        le=MAX_DECISION_AGE_S,
        description="A decision older than this (seconds, at most 1) opens nothing.",
    )
