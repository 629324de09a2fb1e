"""The decision output at the gate: open on a LIVE MATCH only, never on an unknown or rejected face, and
never from a decision older than `max_decision_age_s` (at most 1 s).

`GpioGate` pulses a relay through gpiozero (lgpio on the Pi; tests use gpiozero's MockFactory), `MqttGate`
publishes a local decision (subject id and score, no name, no biometric) with a short message expiry. The
check lives in `Gate.offer` so that no output can skip it.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from device.config.gate import GateConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GateDecision:
    subject: str | None
    score: float
    live: bool  # the observation passed quality and liveness (decision "accepted")
    decided_at: float  # time.monotonic() when the match was decided


class Gate:
    """Base: `offer(decision)` opens when it may and returns whether it did; outputs implement `_open`."""

    kind = "none"

    def __init__(self, max_age_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_age_s, self._clock = max_age_s, clock
        self.opened = 0

    def offer(self, decision: GateDecision) -> bool:
        age = self._clock() - decision.decided_at
        if decision.subject is None or not decision.live or not math.isfinite(decision.score):
            return False
        if not 0.0 <= age <= self.max_age_s:
            log.warning("gate: decision %.2f s old, not opening", age)
            return False
        self._open(decision)
        self.opened += 1
        return True

    def _open(self, decision: GateDecision) -> None:
        """No output (kind none)."""

    def close(self) -> None:
        """Release the output."""


class GpioGate(Gate):
    kind = "gpio"

    def __init__(
        self, config: GateConfig, pin_factory: Any = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__(config.max_decision_age_s, clock)
        from gpiozero import DigitalOutputDevice  # optional extra `gate`; only imported for kind gpio

        self.pulse_s = config.pulse_s
        self.device = DigitalOutputDevice(
            config.gpio_pin, active_high=config.active_high, initial_value=False, pin_factory=pin_factory
        )

    def _open(self, decision: GateDecision) -> None:
        # gpiozero's own background thread ends the pulse: the service loop never sleeps.
        self.device.blink(on_time=self.pulse_s, off_time=0.01, n=1, background=True)

    def close(self) -> None:
        self.device.close()


class MqttGate(Gate):
    kind = "mqtt"

    def __init__(
        self,
        config: GateConfig,
        publish: Callable[[dict[str, Any], float], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(config.max_decision_age_s, clock)
        self._publish, self.ttl_s = publish, config.decision_ttl_s

    def _open(self, decision: GateDecision) -> None:
        self._publish(
            {"open": True, "subject": decision.subject, "score": round(decision.score, 6)}, self.ttl_s
        )


def build_gate(
    config: GateConfig,
    publish: Callable[[dict[str, Any], float], None] | None = None,
    pin_factory: Any = None,
) -> Gate:
    if config.kind == "gpio":
        return GpioGate(config, pin_factory)
    if config.kind == "mqtt":
        if publish is None:
            raise ValueError("gate kind mqtt needs an MQTT connection")
        return MqttGate(config, publish)
    return Gate(config.max_decision_age_s)
