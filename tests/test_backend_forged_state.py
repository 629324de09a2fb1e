"""The independent check of issue 19, end to end: a real terminal (`faceonly run` on a replay) and a real
`faceonly backend` on mosquitto. The backend shows the terminal's own signed state (its birth, health, its
last will when it is killed, its clean-stop offline); deep-JSON messages and a forged unsigned status
(`state: online`, `gallery.version: 999999`) leave it up, recording the next valid event, and
`GET /api/terminals` never shows the forged state.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from nacl.signing import SigningKey

from device.infra.modelstore import ModelError, ModelStore
from device.privacy.signing import Signer
from faceonly_backend.store import Store
from tests.backend_parts import BackendProc, TerminalProc, face_event, public_key, register, terminal_key
from tests.broker import Broker
from tests.conftest import missing_data
from tests.replay_faces import make_replay

TID = "gate-01"
TOPIC = "faceonly/v1/dev/{}/{}"


@pytest.fixture(autouse=True)
def _models() -> None:
    try:
        ModelStore()
    except ModelError as exc:
        missing_data(f"models are not built in this checkout: {exc}")


def _terminal(backend: BackendProc) -> dict:
    return {t["id"]: t for t in backend.json("/api/terminals")}[TID]


def _publish(broker: Broker, messages: list[tuple[str, bytes]]) -> None:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="attacker", protocol=mqtt.MQTTv5)
    c.connect(broker.host, broker.port)
    c.loop_start()
    for topic, payload in messages:
        c.publish(topic, payload, qos=1).wait_for_publish(10)
    c.disconnect()
    c.loop_stop()


def _attack(broker: Broker) -> None:
    deep_event = face_event(TID, None)
    deep_event["observation"]["box"] = json.loads("[" * 600 + "]" * 600)
    deep_event["signature"] = {"alg": "Ed25519", "key_id": "0" * 16, "value": "A" * 88}
    forged = {
        "schema": 1,
        "id": "5b1c2f0e-0000-4000-8000-000000000000",
        "type": "status",
        "terminal_id": TID,
        "created_at": time.time(),
        "expires_at": None,
        "state": "online",
        "software": "9.9.9",
        "started_at": time.time(),
        "models": {},
        "gallery": {"loaded": True, "version": 999999},
    }
    _publish(
        broker,
        [
            (TOPIC.format(TID, "event/face"), b"[" * 100_000),
            (TOPIC.format("anyone", "event/face"), b"[" * 100_000),
            (TOPIC.format(TID, "event/face"), json.dumps(deep_event).encode()),
            (TOPIC.format(TID, "status"), json.dumps(forged).encode()),
            (
                TOPIC.format(TID, "health"),
                json.dumps({**forged, "type": "health", "created_at": 1e18}).encode(),
            ),
        ],
    )


def test_backend_believes_only_the_terminals_signed_state(tmp_path: Path) -> None:
    with Broker(tmp_path / "mq") as broker:
        db = str(tmp_path / "attendance.sqlite")
        register(db, TID, terminal_key(tmp_path / f"state-{TID}"))
        injector = Signer(SigningKey.generate())
        register(db, "inj", public_key(injector))
        backend = BackendProc(tmp_path, broker.url, db, "a")
        terminal = None
        try:
            assert backend.wait_for(lambda: "subscribed:" in backend.text(), 20), backend.text()
            terminal = TerminalProc(tmp_path, broker.url, TID, make_replay(tmp_path / "replay", 3))
            # 1. Its signed birth and health are believed.
            assert backend.wait_for(lambda: _terminal(backend)["state"] == "online", 60), backend.text()[
                -3000:
            ]
            assert backend.wait_for(lambda: _terminal(backend)["health_at"] is not None, 30)
            assert terminal.wait_for(lambda: "source finished" in terminal.text(), 90), terminal.text()[
                -3000:
            ]
            # 2. Killed: the broker publishes its last will, signed at connect time, dated like its birth.
            terminal.proc.send_signal(signal.SIGKILL)
            terminal.proc.wait(10)
            assert backend.wait_for(lambda: _terminal(backend)["state"] == "offline", 20), backend.text()[
                -3000:
            ]
            held = _terminal(backend)
            # 3. The attack: deep JSON and a forged unsigned status with a huge gallery version.
            _attack(broker)
            event = face_event("inj", injector)
            _publish(broker, [(TOPIC.format("inj", "event/face"), json.dumps(event).encode())])
            store = Store(db)
            deadline = time.monotonic() + 5
            while event["id"] not in store.event_ids() and time.monotonic() < deadline:
                time.sleep(0.02)
            recorded = event["id"] in store.event_ids()
            quarantine = store.quarantine()
            store.close()
            assert backend.proc.poll() is None, backend.text()[-3000:]
            assert recorded, backend.text()[-3000:]
            after = _terminal(backend)
            assert after == held, (held, after)
            assert after["state"] == "offline" and after["gallery_version"] != 999999
            assert quarantine.get("payload.too_deep", 0) == 3 and quarantine.get("unsigned", 0) == 2, (
                quarantine
            )
            # 4. The terminal again: its new birth is believed, and its clean stop.
            terminal = TerminalProc(tmp_path, broker.url, TID, make_replay(tmp_path / "replay2", 1))
            assert backend.wait_for(lambda: _terminal(backend)["state"] == "online", 60), backend.text()[
                -3000:
            ]
            assert terminal.stop() == 0
            assert backend.wait_for(lambda: _terminal(backend)["state"] == "offline", 20)
            assert _terminal(backend)["status_at"] > held["status_at"]
            assert "Traceback" not in backend.text()
        finally:
            if terminal is not None and terminal.proc.poll() is None:
                terminal.stop()
            assert backend.stop() == 0, backend.text()[-3000:]
