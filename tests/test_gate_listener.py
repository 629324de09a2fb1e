"""The gate listener (`faceonly gate listen`): a relay pulses exactly once for a fresh decision signed by the
pinned terminal key, and never for a forged, altered, replayed, stale, future, other-door or other-terminal
one, nor for anything that is not a gate decision. It survives every message and broker restarts.

The check is fuzzed in-process; the listener runs against a real mosquitto with gpiozero's MockFactory;
the CLI runs as a subprocess.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from gpiozero.pins.mock import MockFactory
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from device.config.gate import GateConfig
from device.gate.check import REFUSALS, DecisionCheck, NonceMemory
from device.gate.listener import GateListener
from device.gate.relay import Relay
from device.identity.gate import GateDecision, MqttGate
from device.privacy.signing import Signer
from device.transport.client import ClientOptions, parse_broker_url
from device.transport.envelope import encode, envelope
from tests.broker import Broker

TID, DOOR = "gate-01", "main"
TOPIC = f"faceonly/v1/dev/{TID}/gate"
SIGNER = Signer(SigningKey(bytes(range(32))))
KEY = base64.b64encode(SIGNER.public_key).decode()
STRANGER = Signer(SigningKey(bytes(range(1, 33))))


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def decision(
    signer: Signer = SIGNER,
    *,
    tid: str = TID,
    door: str = DOOR,
    age_s: float = 0.0,
    ttl_s: float = 1.0,
    wall: float | None = None,
) -> dict:
    """A decision exactly as the terminal makes it: MqttGate's body, the envelope, the terminal's signature."""
    now = time.time() if wall is None else wall
    bodies: list[dict] = []
    gate = MqttGate(
        GateConfig(kind="mqtt", door=door), lambda body, ttl: bodies.append(body) is None, wall=lambda: now
    )
    gate.offer(GateDecision("ann", 0.97, True, time.monotonic()))
    body = {**bodies[0], "decided_at": round(now - age_s, 3)}
    return signer.sign(envelope("gate.decision", tid, body, ttl_s=ttl_s, now=now - age_s))


def raw(payload: dict) -> bytes:
    return encode(payload)


def checker(wall: float | None = None) -> DecisionCheck:
    return DecisionCheck(TID, DOOR, SIGNER.public_key, wall=(Clock(wall) if wall is not None else time.time))


def test_each_refusal_has_its_code() -> None:
    now = 1_700_000_000.0
    check = checker(now)
    fresh = decision(wall=now)
    assert check.check(raw(fresh)).opens
    cases = {
        "replayed": raw(fresh),
        "forged": raw(decision(STRANGER, wall=now)),
        "stale": raw(decision(wall=now, age_s=2.5)),
        "future": raw(decision(wall=now, age_s=-1.5)),
        "other_door": raw(decision(door="side", wall=now)),
        "other_terminal": raw(decision(tid="gate-02", wall=now)),
        "malformed": raw({k: v for k, v in decision(wall=now).items() if k != "signature"}),
        "payload.too_large": b"[" * 100_000,
        "payload.too_deep": b"[" * 600 + b"]" * 600,
        "payload.not_utf8": b'{"open": "\xff"}',
        "payload.not_json": b'{"score": NaN}',
    }
    altered = decision(wall=now)
    altered["subject"] = "mallory"  # a valid signature over other content
    cases["forged "] = raw(altered)
    late = decision(wall=now, ttl_s=0.2, age_s=0.0)
    check_late = checker(now + 1.5)  # within --max-age-s but past the decision's own expiry
    assert check_late.check(raw(late)).code == "stale"
    for code, payload in cases.items():
        assert check.check(payload).code == code.strip(), code
    assert set(REFUSALS) >= {c.strip() for c in cases}


def test_a_wall_clock_step_back_on_the_listener_cannot_replay() -> None:
    """Nonces are remembered on the monotonic clock, far beyond the age window."""
    wall, mono = Clock(1_700_000_000.0), Clock(100.0)
    check = DecisionCheck(TID, DOOR, SIGNER.public_key, wall=wall, nonces=NonceMemory(clock=mono))
    fresh = raw(decision(wall=wall.t))
    assert check.check(fresh).opens
    wall.t += 600
    mono.t += 600
    assert check.check(fresh).code == "stale"
    wall.t -= 600  # NTP steps this box back: by age the old decision looks fresh again
    assert check.check(fresh).code == "replayed"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=6000))
def test_no_byte_string_opens_or_raises(data: bytes) -> None:
    assert not checker().check(data).opens


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=6),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_no_change_to_a_signed_decision_opens(data) -> None:
    """Any field replaced, added or removed (the signature kept): refused, never an exception."""
    now = 1_700_000_000.0
    payload = decision(wall=now)
    key = data.draw(st.sampled_from([*payload, "extra"]))
    if data.draw(st.booleans()):
        if key not in payload:
            return  # removing what is not there changes nothing
        del payload[key]
    else:
        value = data.draw(JSON)
        if payload.get(key) == value:
            return
        payload[key] = value
    verdict = checker(now).check(json.dumps(payload).encode())
    assert not verdict.opens and verdict.code in REFUSALS


# ---- the listener, with a real broker -----------------------------------------------------------------


def rising(pin) -> int:
    states = [s.state for s in pin.states]
    return sum(1 for a, b in itertools.pairwise(states) if not a and b)


def wait(predicate, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


class Publisher:
    def __init__(self, broker: Broker) -> None:
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="anyone", protocol=mqtt.MQTTv5)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def send(self, payload: bytes) -> None:
        self.client.publish(TOPIC, payload, qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture(params=["5", "3.1.1"])
def rig(request, tmp_path: Path):
    factory = MockFactory()
    with Broker(tmp_path / "mq") as broker:
        check = DecisionCheck(TID, DOOR, SIGNER.public_key)
        options = ClientOptions(parse_broker_url(broker.url), request.param)
        listener = GateListener(options, TOPIC, check, Relay(17, True, 0.05, factory), "gate-test")
        listener.start()
        assert wait(lambda: listener.connected, 10)
        time.sleep(0.2)  # the subscription
        served: list[int] = []

        def serve() -> None:
            listener.serve(lambda: bool(served))

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        yield broker, listener, factory.pin(17)
        served.append(1)
        thread.join(5)
        listener.close()
        assert not thread.is_alive()


def test_exactly_one_pulse_for_a_fresh_signed_decision_and_none_for_the_rest(rig) -> None:
    broker, listener, pin = rig
    anyone = Publisher(broker)
    try:
        fresh = raw(decision())
        hostile = [
            raw(decision(STRANGER)),
            raw(decision(age_s=5.0)),
            raw(decision(door="side")),
            raw(decision(tid="gate-02")),
            b"[" * 100_000,
            b'{"a":' * 600 + b"1" + b"}" * 600,
            b"\xff\xfe" * 10,
            os.urandom(20 * 1024 * 1024),
            raw({k: v for k, v in decision().items() if k != "signature"}),
        ]
        for payload in hostile:
            anyone.send(payload)
        anyone.send(fresh)
        anyone.send(fresh)  # the same decision again: a replay
        # On MQTT 5 the listener asks the broker (Maximum Packet Size) to keep the two oversized ones away.
        arriving = len(hostile) + 2 - (2 if listener.options.v5 else 0)
        assert wait(lambda: sum(listener.counts.values()) >= arriving, 20), listener.stats()
        time.sleep(0.3)
        assert rising(pin) == 1 and not pin.state
        counts = listener.counts
        assert counts["opened"] == 1 and counts["replayed"] == 1
        assert counts["forged"] == 1 and counts["stale"] == 1 and counts["other_door"] == 1
        assert counts["other_terminal"] == 1 and counts["malformed"] == 1
        assert counts["payload.too_deep"] == 1 and counts["payload.not_utf8"] == 1
        assert counts["payload.too_large"] == (0 if listener.options.v5 else 2)
        assert sum(counts.values()) == arriving
        assert listener.queue_dropped == 0
    finally:
        anyone.close()


def test_it_comes_back_after_a_broker_restart(rig) -> None:
    broker, listener, pin = rig
    broker.kill()
    assert wait(lambda: not listener.connected, 10)
    time.sleep(1.0)
    broker.start()
    assert wait(lambda: listener.connected, 30)
    time.sleep(0.3)
    anyone = Publisher(broker)
    try:
        anyone.send(raw(decision()))
        assert wait(lambda: listener.counts["opened"] == 1, 10), listener.stats()
        assert wait(lambda: rising(pin) == 1 and not pin.state, 5)
    finally:
        anyone.close()


# ---- the CLI --------------------------------------------------------------------------------------------


def _cli(broker_url: str, *extra: str, key: str | None = None) -> subprocess.Popen[str]:
    env = {**os.environ, "GPIOZERO_PIN_FACTORY": "mock"}
    key = key or KEY
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "device",
            "gate",
            "listen",
            "--broker",
            broker_url,
            "--id",
            TID,
            "--terminal-key",
            key,
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )


def test_cli_listens_opens_and_stops_on_sigint_from_a_background_shell(tmp_path: Path) -> None:
    with Broker(tmp_path / "mq") as broker:
        # A background job of a non-interactive shell starts with SIGINT ignored.
        proc = subprocess.Popen(
            [
                "sh",
                "-c",
                f"trap '' INT; exec {sys.executable} -m device gate listen --broker {broker.url} "
                f"--id {TID} --terminal-key {KEY}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "GPIOZERO_PIN_FACTORY": "mock"},
            start_new_session=True,
        )
        anyone = Publisher(broker)
        try:
            assert proc.stdout is not None
            lines: list[str] = []
            for line in proc.stdout:
                lines.append(line)
                if "listening on" in line:
                    break
            time.sleep(0.3)
            anyone.send(raw(decision()))
            time.sleep(1.0)
            proc.send_signal(signal.SIGINT)
            out, _ = proc.communicate(timeout=10)
        finally:
            anyone.close()
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0, "".join(lines) + out
        assert "door main opened for ann" in out and "'opened': 1" in out


def test_cli_refuses_a_bad_key_or_door_with_exit_2() -> None:
    bad_key = _cli("mqtt://127.0.0.1:1", key="not-a-key")
    assert bad_key.wait(20) == 2
    bad_door = _cli("mqtt://127.0.0.1:1", "--door", "a/b")
    assert bad_door.wait(20) == 2
