"""A real terminal run against mosquitto: every message it publishes validates against the AsyncAPI
document (tests/asyncapi_contract.py), a field without a schema fails, and health states its alarms
(camera stall, duplicate id) as they happen; an auth failure is one log line, not one per retry."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from device.infra.modelstore import ModelError, ModelStore
from tests.asyncapi_contract import channels, violations
from tests.broker import Broker
from tests.conftest import missing_data
from tests.replay_faces import make_replay
from tests.test_transport_service import Terminal

TID = "t1"
BASE = f"faceonly/v1/dev/{TID}"


@pytest.fixture(autouse=True)
def _models() -> None:
    try:
        ModelStore()
    except ModelError as exc:
        missing_data(f"models are not built in this checkout: {exc}")


class Recorder:
    def __init__(self, broker: Broker, topic: str) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()
        subscribed = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="recorder", protocol=mqtt.MQTTv5)
        c.on_connect = lambda cl, u, f, rc, p: cl.subscribe(topic, qos=1)
        c.on_subscribe = lambda *a: subscribed.set()
        c.on_message = self._on_message
        c.connect(broker.host, broker.port)
        c.loop_start()
        assert subscribed.wait(5)
        self.client = c

    def _on_message(self, client, userdata, msg) -> None:
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload)))

    def decoded(self) -> list[tuple[str, dict]]:
        with self.lock:
            return [(t, json.loads(p)) for t, p in self.messages if p]

    def health(self) -> list[dict]:
        return [p for t, p in self.decoded() if t.endswith("/health")]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _stalling_replay(folder: Path) -> Path:
    make_replay(folder, appearances=2)
    doc = json.loads((folder / "replay.json").read_text())
    doc["frames"].append({"file": "empty.png", "t": doc["frames"][-1]["t"] + 3600})  # the source hangs
    (folder / "replay.json").write_text(json.dumps(doc))
    return folder


def test_live_traffic_follows_the_asyncapi_document_and_health_states_alarms(tmp_path: Path) -> None:
    chans = channels()
    with Broker(tmp_path / "mosq") as broker:
        rec = Recorder(broker, f"{BASE}/#")
        replay = _stalling_replay(tmp_path / "replay")
        term = Terminal(tmp_path, broker, replay, pace="recorded", service_extra="camera_stall_s = 2\n")
        try:
            term.wait_for(lambda: len(term.queued()) >= 2, 120)

            def alarm(name: str) -> bool:
                return any(h["alarms"][name]["active"] for h in rec.health())

            assert term.wait_for(lambda: alarm("camera_stall"), 60), term.text()[-2000:]
            # A second instance with our id announces itself on our status topic (not retained).
            other = json.dumps({"state": "online", "started_at": 1.0, "created_at": time.time() + 1})
            rec.client.publish(f"{BASE}/status", other, qos=1)
            assert term.wait_for(lambda: alarm("duplicate_id"), 30), term.text()[-2000:]
            assert term.stop() == 0
        finally:
            if term.proc.poll() is None:
                term.kill()
        time.sleep(0.5)
        rec.close()

    ours = [(t, p) for t, p in rec.decoded() if p.get("terminal_id") == TID]
    kinds = {p["type"] for _, p in ours}
    assert {"status", "health", "event.face", "config.reported"} <= kinds, kinds
    problems = [v for t, p in ours for v in violations(t, p, chans)]
    assert problems == []
    text = term.text()
    assert text.count("alarm raised: camera_stall") == 1 and text.count("alarm raised: duplicate_id") == 1
    assert "Traceback" not in text

    # The same messages, each with one field the schema does not know: every one is refused.
    for topic, payload in ours:
        assert violations(topic, {**payload, "surprise_field": 1}, chans), (topic, payload["type"])
    event = next(p for t, p in ours if p["type"] == "event.face")
    assert violations(f"{BASE}/event/face", {**event, "observation": {**event["observation"], "x": 1}}, chans)
    health = next(p for t, p in ours if p["type"] == "health")
    bent = {**health, "alarms": {**health["alarms"], "new_alarm": {"active": False}}}
    assert violations(f"{BASE}/health", bent, chans)
    assert violations(f"{BASE}/no/such/channel", health, chans)


def test_refused_credentials_are_one_line_and_an_alarm_not_a_retry_storm(tmp_path: Path) -> None:
    acl = Broker.terminal_acl()
    with Broker(tmp_path / "mosq", users={TID: "right"}, acl=acl) as broker:
        (tmp_path / "pw").write_text("wrong\n")
        conf = f'username = "{TID}"\npassword_file = "{tmp_path / "pw"}"\n'
        term = Terminal(tmp_path, broker, make_replay(tmp_path / "replay", 1), conf_extra=conf)
        try:
            # reconnect_min_s 0.2 .. max 1.0: several refused attempts within a few seconds.
            assert term.wait_for(lambda: "alarm raised: auth_failure" in term.text(), 30), term.text()
            time.sleep(4)
            text = term.text()
            assert term.stop() == 0
        finally:
            if term.proc.poll() is None:
                term.kill()
    assert text.count("cannot connect to mqtt://") == 1, text
    assert text.count("alarm raised: auth_failure") == 1
    assert "Traceback" not in text


def test_an_outage_and_a_reload_are_one_line_per_state_change(tmp_path: Path) -> None:
    with Broker(tmp_path / "mosq") as broker:
        term = Terminal(tmp_path, broker, make_replay(tmp_path / "replay", 1))
        try:
            assert term.wait_for(lambda: "connected to" in term.text(), 60), term.text()
            broker.kill()
            time.sleep(4)  # reconnect_min_s 0.2 .. max 1.0: several failed attempts
            broker.start()
            assert term.wait_for(lambda: term.text().count("connected to") == 2, 30), term.text()
            conf = tmp_path / "faceonly.toml"
            edited = conf.read_text().replace("health_interval_s = 0.5", "health_interval_s = 0.7")
            conf.write_text(edited + "\n[homeassistant]\nenabled = true\n")  # applies only after a restart
            term.proc.send_signal(signal.SIGHUP)
            assert term.wait_for(lambda: "SIGHUP: config reloaded" in term.text(), 30), term.text()
            assert term.stop() == 0
        finally:
            if term.proc.poll() is None:
                term.kill()
    text = term.text()
    url = broker.url
    assert text.count(f"connection to {url} lost") == 1, text
    assert text.count(f"cannot connect to {url}") == 1, text
    assert "Client is not connected" not in text and "Traceback" not in text
    assert (
        "SIGHUP: config reloaded: applied now: service.health_interval_s; after a restart: homeassistant.enabled"
        in text
    ), text
