"""The decision output at the gate: open on a LIVE MATCH only, never on an unknown or rejected face, and
never from a decision older than `max_decision_age_s` (at most 1 s, on the monotonic clock). Under a door
policy (device/access) a decision without a face factor (a verified credential) opens too: the policy decided.

`GpioGate` pulses a relay on this terminal (device.gate.relay). `MqttGate` hands a decision for a relay
elsewhere to `publish`: door, subject id and score (no name, no biometric), its decision time and a fresh
nonce; the service signs it with the terminal's key and sends it at once or not at all (a decision that
cannot be published now is dropped and counted in `dropped`: a late one could open a door for nobody).
`faceonly gate listen` checks it on the far side. The check lives in `Gate.offer` so that no output can
skip it.
"""

from __future__ import annotations

import logging
import math
import secrets
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
    # A door policy's decision (device/access): its mode and the factors that passed. Without a face factor
    # (door mode credential, or a credential at a face|credential door) a verified credential stands for it.
    mode: str | None = None
    factors: tuple[str, ...] = ("face",)

    @property
    def credential_only(self) -> bool:
        return "face" not in self.factors


class Gate:
    """Base: `offer(decision)` opens when it may and returns whether it did; outputs implement `_open`."""

    kind = "none"

    def __init__(self, max_age_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_age_s, self._clock = max_age_s, clock
        self.opened = 0
        self.dropped = 0  # decisions that passed every check but could not reach the output in time

    def offer(self, decision: GateDecision) -> bool:
        age = self._clock() - decision.decided_at
        if decision.subject is None or not decision.factors:
            return False
        if not decision.credential_only and (not decision.live or not math.isfinite(decision.score)):
            return False  # a face factor counts only live and with a finite score
        if not 0.0 <= age <= self.max_age_s:
            log.warning("gate: decision %.2f s old, not opening", age)
            return False
        if not self._open(decision):
            self.dropped += 1
            return False
        self.opened += 1
        return True

    def _open(self, decision: GateDecision) -> bool:
        """True if the output took the decision. Kind none has no output: the decision is only counted."""
        return True

    def stats(self) -> dict[str, Any]:
        return {"kind": self.kind, "opened": self.opened, "dropped": self.dropped}

    def close(self) -> None:
        """Release the output."""


class GpioGate(Gate):
    kind = "gpio"

    def __init__(
        self, config: GateConfig, pin_factory: Any = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__(config.max_decision_age_s, clock)
        from device.gate.relay import Relay

        self.relay = Relay(config.gpio_pin, config.active_high, config.pulse_s, pin_factory)

    def _open(self, decision: GateDecision) -> bool:
        self.relay.pulse()
        return True

    def close(self) -> None:
        self.relay.close()


class MqttGate(Gate):
    kind = "mqtt"

    def __init__(
        self,
        config: GateConfig,
        publish: Callable[[dict[str, Any], float], bool],
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(config.max_decision_age_s, clock)
        self._publish, self.ttl_s, self.door, self._wall = publish, config.decision_ttl_s, config.door, wall

    def _open(self, decision: GateDecision) -> bool:
        # The decision's moment on the wall clock (what leaves), from its age on the monotonic clock.
        decided_at = self._wall() - (self._clock() - decision.decided_at)
        body: dict[str, Any] = {
            "open": True,
            "door": self.door,
            "subject": decision.subject,
            "score": None if decision.credential_only else round(decision.score, 6),
            "decided_at": round(decided_at, 3),
            "nonce": secrets.token_urlsafe(16),
        }
        if decision.mode is not None:
            body.update({"mode": decision.mode, "factors": list(decision.factors)})
        if self._publish(body, self.ttl_s):
            return True
        log.warning("gate: not connected to the broker; the decision is dropped, never sent late")
        return False


def build_gate(
    config: GateConfig,
    publish: Callable[[dict[str, Any], float], bool] | None = None,
    pin_factory: Any = None,
) -> Gate:
    if config.kind == "gpio":
        return GpioGate(config, pin_factory)
    if config.kind == "mqtt":
        if publish is None:
            raise ValueError("gate kind mqtt needs an MQTT connection")
        return MqttGate(config, publish)
    return Gate(config.max_decision_age_s)
