"""The broker dies while an enrolled face is at the gate and comes back later: nothing opens late.

A real mosquitto, the real terminal (its Service in this process, passive liveness so the enrolled
astronaut's photo passes, with her gallery), and the reference listener (`faceonly gate listen`'s
GateListener) on gpiozero's MockFactory. The broker is SIGKILLed on the first frame with her face, before
the terminal has decided, and restarted OUTAGE_S later.

- [gate] kind = "mqtt": the decision made during the outage is dropped and counted (health gate.dropped);
  the listener opens nothing, neither during the outage nor after the broker is back. With the broker up
  the same replay opens the listener's relay exactly once (the rig can open: the test is not vacuous).
- [gate] kind = "gpio": the terminal's own relay opens when it decides, a fresh decision (the terminal
  decides at the gate itself, also when the network is down), never again after the broker is back.
"""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory

from device.gate.check import DecisionCheck
from device.gate.listener import GateListener
from device.gate.relay import Relay
from device.transport.client import ClientOptions, parse_broker_url
from device.transport.topics import Topics
from tests.broker import Broker
from tests.gate_rig import (
    FPS,
    TID,
    Terminal,
    enrol_astronaut,
    install_gallery,
    standing_replay,
    terminal_config,
    terminal_signer,
)
from tests.vision_helpers import model_store

LEAD_S, FACE_S, TAIL_S = 4.0, 6.0, 2.0
OUTAGE_S = 10.0
RELAY_PIN, LISTENER_PIN = 17, 22


def rising_times(pin) -> list[float]:
    """When (time.monotonic) the relay was energised. A MockPin records each change as the time since the
    one before; its last change is at `_last_change` (monotonic)."""
    at, times = pin._last_change, []
    for state in reversed(pin.states):
        times.append(at)
        at -= state.timestamp
    absolute = list(reversed(times))
    return [
        t
        for (a, b), t in zip(itertools.pairwise(pin.states), absolute[1:], strict=True)
        if not a.state and b.state
    ]


def wait(predicate, timeout_s: float, step_s: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step_s)
    return False


@pytest.fixture
def pins():
    Device.pin_factory = MockFactory()
    yield Device.pin_factory
    Device.pin_factory.close()
    Device.pin_factory = None


class Listener:
    def __init__(self, broker: Broker, cfg, factory) -> None:
        check = DecisionCheck(TID, cfg.gate.door, terminal_signer(cfg).public_key)
        relay = Relay(LISTENER_PIN, True, 0.05, factory)
        self.listener = GateListener(
            ClientOptions(parse_broker_url(broker.url)), Topics("faceonly", TID).gate, check, relay, "door"
        )
        self.pin = factory.pin(LISTENER_PIN)
        self.listener.start()
        assert wait(lambda: self.listener.connected, 10)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self.listener.serve, args=(self._stop.is_set,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self._stop.set()
        self.thread.join(5)
        self.listener.close()


def _run(tmp: Path, pins, kind: str, outage: bool) -> dict:
    model_store()
    fog, pub = enrol_astronaut(tmp)
    replay = standing_replay(tmp / "replay", LEAD_S, FACE_S, TAIL_S)
    face_from = round(LEAD_S * FPS)
    with Broker(tmp / "mq") as broker:
        gate = {"kind": kind, "gpio_pin": RELAY_PIN, "pulse_s": 0.05}
        cfg = terminal_config(tmp, broker.url, replay, pub, gate, policy="passive")
        install_gallery(cfg, fog)
        listener = Listener(broker, cfg, pins)
        terminal = Terminal(cfg)
        service = terminal.service
        try:
            assert wait(lambda: service.link.connected, 15)
            assert wait(lambda: service.frames_done >= face_from, 30)
            killed = time.monotonic()
            if outage:
                broker.kill()
            assert wait(lambda: service.identity.counts["matched"] >= 1, 20)  # she was recognised
            decided = time.monotonic()
            restarted = None
            if outage:
                assert decided - killed < OUTAGE_S
                time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - killed)))
                broker.start()
                restarted = time.monotonic()
                assert wait(lambda: service.link.connected and listener.listener.connected, 20)
            time.sleep(5.0)  # anything late would have arrived by now
            gate_stats = service.identity.gate.stats()
        finally:
            terminal.stop()
            listener.close()
    relay_opens = rising_times(pins.pin(RELAY_PIN)) if kind == "gpio" else []
    return {
        "killed": killed,
        "decided": decided,
        "restarted": restarted,
        "gate": gate_stats,
        "listener": dict(listener.listener.counts),
        "listener_opens": rising_times(listener.pin),
        "relay_opens": relay_opens,
    }


@pytest.mark.slow
def test_mqtt_gate_with_the_broker_up_opens_the_listener_once(tmp_path: Path, pins) -> None:
    run = _run(tmp_path, pins, "mqtt", outage=False)
    assert run["gate"] == {"kind": "mqtt", "opened": 1, "dropped": 0}
    assert len(run["listener_opens"]) == 1 and run["listener"] == {"opened": 1}


@pytest.mark.slow
def test_mqtt_gate_decision_during_an_outage_is_dropped_and_nothing_opens_later(tmp_path: Path, pins) -> None:
    run = _run(tmp_path, pins, "mqtt", outage=True)
    print(
        f"decided {run['decided'] - run['killed']:.2f} s after the broker was killed; broker back after "
        f"{run['restarted'] - run['killed']:.1f} s; terminal gate {run['gate']}; listener {run['listener']}"
    )
    assert run["gate"] == {"kind": "mqtt", "opened": 0, "dropped": 1}
    assert run["listener_opens"] == [] and run["listener"].get("opened", 0) == 0


@pytest.mark.slow
def test_gpio_gate_opens_when_it_decides_and_never_after_the_broker_is_back(tmp_path: Path, pins) -> None:
    run = _run(tmp_path, pins, "gpio", outage=True)
    opens = run["relay_opens"]
    print(
        f"decided {run['decided'] - run['killed']:.2f} s after the broker was killed; relay opened at "
        f"{[round(t - run['killed'], 2) for t in opens]} s; broker back at {run['restarted'] - run['killed']:.1f} s"
    )
    assert run["gate"] == {"kind": "gpio", "opened": 1, "dropped": 0}
    assert len(opens) == 1 and run["killed"] < opens[0] < run["restarted"]
    assert opens[0] <= run["decided"] + 0.05  # at the decision (polled every 10 ms), not later
    assert run["listener_opens"] == []
