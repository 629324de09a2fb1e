"""The gate opens on a live match only, never on an unknown or rejected face, never from an old decision."""

from __future__ import annotations

import itertools
import math
import time

import pytest
from gpiozero.pins.mock import MockFactory

from device.config.gate import GateConfig
from device.contracts import FaceObservation, Reason
from device.identity.feedback import enrolment_prompt, outcome_prompt, rejection_reason
from device.identity.gate import GateDecision, GpioGate, MqttGate, build_gate
from device.identity.runtime import MatchResult


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _high_pulses(pin) -> int:
    states = [s.state for s in pin.states]
    return sum(1 for a, b in itertools.pairwise(states) if not a and b)


def test_gpio_gate_pulses_once_for_a_live_match_and_never_otherwise():
    factory = MockFactory()
    clock = Clock()
    gate = GpioGate(GateConfig(kind="gpio", gpio_pin=17, pulse_s=0.05), pin_factory=factory, clock=clock)
    pin = factory.pin(17)
    assert not gate.offer(GateDecision(None, 0.99, True, clock.now))  # unknown
    assert not gate.offer(GateDecision("ann", 0.99, False, clock.now))  # rejected (not live)
    assert not gate.offer(GateDecision("ann", math.nan, True, clock.now))  # no score: fail closed
    stale = GateDecision("ann", 0.99, True, clock.now)
    clock.now += 1.01
    assert not gate.offer(stale)  # older than a second
    assert _high_pulses(pin) == 0
    assert gate.offer(GateDecision("ann", 0.99, True, clock.now))
    deadline = time.monotonic() + 2
    while pin.state and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _high_pulses(pin) == 1 and not pin.state and gate.opened == 1
    gate.close()


def test_mqtt_gate_publishes_a_short_lived_decision_without_a_name():
    sent = []
    clock = Clock()
    gate = MqttGate(
        GateConfig(kind="mqtt", decision_ttl_s=1.0, door="side"),
        lambda body, ttl: sent.append((body, ttl)) is None,
        clock,
        wall=lambda: 1_700_000_000.0,
    )
    assert gate.offer(GateDecision("ann", 0.97, True, clock.now - 0.5))
    assert not gate.offer(GateDecision(None, 0.5, True, clock.now))
    assert gate.offer(GateDecision("ann", 0.97, True, clock.now))
    (first, ttl), (second, _) = sent
    assert ttl == 1.0 and first["nonce"] != second["nonce"]
    assert {k: v for k, v in first.items() if k != "nonce"} == {
        "open": True,
        "door": "side",
        "subject": "ann",
        "score": 0.97,
        "decided_at": 1_700_000_000.0 - 0.5,  # its age on the monotonic clock, restated on the wall clock
    }
    assert gate.stats() == {"kind": "mqtt", "opened": 2, "dropped": 0}


def test_an_mqtt_decision_that_cannot_be_sent_now_is_dropped_and_counted():
    clock = Clock()
    gate = MqttGate(GateConfig(kind="mqtt"), lambda body, ttl: False, clock)
    assert not gate.offer(GateDecision("ann", 0.97, True, clock.now))
    assert gate.stats() == {"kind": "mqtt", "opened": 0, "dropped": 1}


def test_gate_config_bounds():
    with pytest.raises(ValueError):
        GateConfig(max_decision_age_s=2.0)  # never older than a second
    with pytest.raises(ValueError):
        GateConfig(kind="door")
    with pytest.raises(ValueError, match="MQTT"):
        build_gate(GateConfig(kind="mqtt"))
    assert build_gate(GateConfig()).kind == "none"


def _observation(decision: str, *codes: str) -> FaceObservation:
    reasons = tuple(Reason(c, c) for c in codes)
    return FaceObservation(3, decision, 0.0, 1.5, 1.0, (0, 0, 1, 1), {}, {}, reasons, None)  # type: ignore[arg-type]


def test_outcome_prompts_carry_codes_and_never_a_name():
    ann = MatchResult("ann", 0.9, 0.2, 0.6, 1, "Ann Example")
    nobody = MatchResult(None, 0.3, 0.0, 0.6, 1, None)
    accepted = _observation("accepted", "liveness.blink_passed", "liveness.passed")
    welcome = outcome_prompt(accepted, ann, identifies=True)
    assert (welcome.code, welcome.subject, welcome.state, welcome.track_id) == (
        "result.welcome",
        "ann",
        "feedback",
        3,
    )
    assert "Ann Example" not in repr(welcome.to_dict())
    assert outcome_prompt(accepted, nobody, identifies=True).code == "result.not_recognised"
    assert outcome_prompt(accepted, None, identifies=False).code == "result.accepted"
    # The reason that decided: the last cause, never a step that passed or a note.
    rejected = _observation(
        "rejected", "liveness.turn_left_passed", "liveness.no_blink", "liveness.no_prompt_channel"
    )
    assert rejection_reason(rejected.reasons) == "liveness.no_blink"
    prompt = outcome_prompt(rejected, None, identifies=True)
    assert (prompt.code, prompt.reason) == ("result.rejected", "liveness.no_blink")
    enrol = enrolment_prompt("enrol.started", "cy", 2.0)
    assert enrol.subject == "cy" and enrol.code == "enrol.started"
    with pytest.raises(ValueError, match="unknown prompt code"):
        enrolment_prompt("enrol.sideways", "cy", 2.0)


def test_mqtt_gate_payload_is_signed_and_matches_its_schema():
    from nacl.signing import SigningKey

    from device.privacy.signing import Signer, verify_payload
    from device.transport.envelope import envelope
    from tests.api_schemas import errors

    signer = Signer(SigningKey.generate())
    sent = []
    clock = Clock()
    MqttGate(GateConfig(kind="mqtt"), lambda body, ttl: sent.append(body) is None, clock).offer(
        GateDecision("ann", 0.97, True, clock.now)
    )
    payload = signer.sign(envelope("gate.decision", "t1", sent[0], ttl_s=1.0))
    assert errors(payload) == []
    verify_payload(payload, signer.public_key)
    assert errors({**payload, "name": "Ann"})
    assert errors({k: v for k, v in payload.items() if k != "signature"})  # unsigned is not this format
