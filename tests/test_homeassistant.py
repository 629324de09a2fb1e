"""Home Assistant MQTT discovery against a real mosquitto, read as Home Assistant reads it.

Each retained config is checked against the keys Home Assistant documents for its component
(https://www.home-assistant.io/integrations/mqtt/ and the sensor.mqtt, binary_sensor.mqtt,
button.mqtt pages), its value templates are rendered with Jinja on the real state messages, the
button's press reaches the terminal and is answered, and decommission clears every config.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import jinja2
import paho.mqtt.client as mqtt
import pytest

from device.config.homeassistant import HomeAssistantConfig
from device.infra.modelstore import ModelError, ModelStore
from device.runtime.health import cpu_temperature_c
from device.runtime.homeassistant import Discovery
from device.transport.topics import Topics
from tests.asyncapi_contract import channels, violations
from tests.broker import Broker
from tests.conftest import missing_data
from tests.replay_faces import make_replay
from tests.test_transport_service import Terminal

ROOT = Path(__file__).resolve().parent.parent
TID = "t1"
BASE = f"faceonly/v1/dev/{TID}"

# Keys Home Assistant documents (MQTT entity options shared by all components, then per component).
COMMON = {
    "availability", "availability_mode", "availability_template", "availability_topic", "device",
    "enabled_by_default", "encoding", "entity_category", "entity_picture", "icon", "json_attributes_template",
    "json_attributes_topic", "name", "default_entity_id", "object_id", "origin", "payload_available",
    "payload_not_available", "qos", "unique_id",
}  # fmt: skip
COMPONENT = {
    "sensor": {"device_class", "expire_after", "force_update", "last_reset_value_template", "options",
               "suggested_display_precision", "state_class", "state_topic", "unit_of_measurement",
               "value_template"},
    "binary_sensor": {"device_class", "expire_after", "force_update", "off_delay", "payload_off",
                      "payload_on", "state_topic", "value_template"},
    "button": {"command_template", "command_topic", "device_class", "payload_press", "retain"},
}  # fmt: skip
REQUIRED = {"sensor": {"state_topic"}, "binary_sensor": {"state_topic"}, "button": {"command_topic"}}
DEVICE = {
    "configuration_url", "connections", "hw_version", "identifiers", "manufacturer", "model", "model_id",
    "name", "serial_number", "suggested_area", "sw_version", "via_device",
}  # fmt: skip
ORIGIN = {"name", "sw_version", "support_url"}
AVAILABILITY = {"topic", "payload_available", "payload_not_available", "value_template"}
TOPIC = re.compile(r"^homeassistant/(sensor|binary_sensor|button)/([A-Za-z0-9_-]+)/([A-Za-z0-9_-]+)/config$")
JINJA = jinja2.Environment()


def render(template: str, payload: bytes) -> str:
    return JINJA.from_string(template).render(value_json=json.loads(payload), value=payload.decode())


def documented_problems(topic: str, config: dict) -> list[str]:
    m = TOPIC.match(topic)
    if m is None:
        return [f"{topic}: not <prefix>/<component>/<node_id>/<object_id>/config"]
    component = m.group(1)
    out = [f"{topic}: undocumented key {k}" for k in set(config) - COMMON - COMPONENT[component]]
    required = REQUIRED[component] | {"unique_id", "device", "origin"}
    out += [f"{topic}: missing {k}" for k in required - set(config)]
    out += [f"{topic}: device key {k}" for k in set(config.get("device", {})) - DEVICE]
    out += [f"{topic}: origin key {k}" for k in set(config.get("origin", {})) - ORIGIN]
    if "name" not in config.get("origin", {}):
        out.append(f"{topic}: origin without name")
    if not config.get("device", {}).get("identifiers"):
        out.append(f"{topic}: device without identifiers")
    for entry in config.get("availability", []):
        out += [f"{topic}: availability key {k}" for k in set(entry) - AVAILABILITY]
        if "topic" not in entry:
            out.append(f"{topic}: availability entry without topic")
    for key, value in config.items():
        if key.endswith("_template"):
            JINJA.parse(value)  # a template HA could not parse fails here
    return out


class HomeAssistantLike:
    """Subscribes as Home Assistant does: the discovery prefix, then each config's own topics."""

    def __init__(self, broker: Broker) -> None:
        self.retained: dict[str, bytes] = {}
        self.lock = threading.Lock()
        ready = threading.Event()
        c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"ha-{time.monotonic_ns()}", protocol=mqtt.MQTTv5
        )
        c.on_connect = lambda cl, u, f, rc, p: cl.subscribe([("homeassistant/#", 1), (f"{BASE}/#", 1)])
        c.on_subscribe = lambda *a: ready.set()
        c.on_message = self._on_message
        c.connect(broker.host, broker.port)
        c.loop_start()
        assert ready.wait(5)
        self.client = c

    def _on_message(self, client, userdata, msg) -> None:
        with self.lock:
            self.retained[msg.topic] = bytes(msg.payload)  # the latest per topic (what HA acts on)

    def latest(self, topic: str) -> bytes | None:
        with self.lock:
            return self.retained.get(topic)

    def configs(self) -> dict[str, dict]:
        with self.lock:
            items = list(self.retained.items())
        return {t: json.loads(p) for t, p in items if t.startswith("homeassistant/") and p}

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def wait(pred, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    return False


def test_discovery_states_button_and_decommission(tmp_path: Path) -> None:
    try:
        ModelStore()
    except ModelError as exc:
        missing_data(f"models are not built in this checkout: {exc}")
    with Broker(tmp_path / "mosq") as broker:
        term = Terminal(
            tmp_path,
            broker,
            make_replay(tmp_path / "replay", 2),
            conf_extra="[homeassistant]\nenabled = true\n",
        )
        try:
            assert term.wait_for(lambda: len(term.queued()) >= 2, 120), term.text()[-2000:]
            ha = HomeAssistantLike(broker)  # comes later, as HA after a restart: everything is retained
            # last_subject is off by default; the temperature exists only where the board reports one.
            expected = 7 if cpu_temperature_c() is not None else 6
            assert wait(lambda: len(ha.configs()) == expected, 10), ha.configs().keys()
            configs = ha.configs()
            assert [p for t, c in configs.items() for p in documented_problems(t, c)] == []
            assert len({c["unique_id"] for c in configs.values()}) == len(configs)
            assert len({json.dumps(c["device"], sort_keys=True) for c in configs.values()}) == 1
            objects = {TOPIC.match(t).group(3): c for t, c in configs.items()}
            assert "last_subject" not in objects  # the policy default keeps subjects off HA

            status = ha.latest(f"{BASE}/status")
            for config in configs.values():
                for entry in config.get("availability", []):
                    assert entry["topic"] == f"{BASE}/status"
                    assert render(entry["value_template"], status) == entry["payload_available"]
            assert render(objects["online"]["value_template"], status) == "ON"

            state_topic = objects["fps"]["state_topic"]
            assert wait(lambda: ha.latest(state_topic) is not None, 10)
            assert wait(lambda: json.loads(ha.latest(state_topic))["decision"] is not None, 10)
            state = ha.latest(state_topic)
            assert render(objects["last_decision"]["value_template"], state) in {"accepted", "rejected"}
            float(render(objects["fps"]["value_template"], state))
            assert int(render(objects["outbox_depth"]["value_template"], state)) >= 0
            assert render(objects["disk_alarm"]["value_template"], state) == "OFF"
            assert json.loads(state)["subject"] is None
            assert violations(state_topic, json.loads(state), channels()) == []
            assert set(json.loads(state)) == {
                "decision",
                "subject",
                "fps",
                "outbox_depth",
                "cpu_temp_c",
                "disk_alarm",
            }

            # The button, pressed as HA presses it: payload_press on command_topic, no response topic.
            button = objects["request_status"]
            replies: list[dict] = []
            ha.client.message_callback_add(
                f"{BASE}/cmd/res", lambda c, u, m: replies.append(json.loads(m.payload))
            )
            ha.client.publish(button["command_topic"], button["payload_press"], qos=button["qos"])
            assert wait(lambda: any(r.get("ok") for r in replies), 10), replies
            assert replies[-1]["result"]["state"] == "online"

            assert term.stop() == 0
            assert wait(
                lambda: render(objects["online"]["value_template"], ha.latest(f"{BASE}/status")) == "OFF", 10
            )
        finally:
            if term.proc.poll() is None:
                term.kill()

        cmd = [sys.executable, "-m", "device", "homeassistant", "remove", "--broker", broker.url, "--id", TID]
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert wait(lambda: ha.configs() == {}, 10)
        ha.close()
        fresh = HomeAssistantLike(broker)  # a new HA finds nothing retained under the prefix
        time.sleep(1.0)
        assert fresh.configs() == {} and fresh.latest(state_topic) is None
        fresh.close()


def test_subject_only_when_exposed_and_temperature_only_where_reported() -> None:
    topics = Topics("faceonly", "gate.01")
    closed = Discovery(HomeAssistantConfig(enabled=True), topics, has_temperature=False)
    shown = Discovery(HomeAssistantConfig(enabled=True, expose_subject=True), topics, has_temperature=True)
    cleared = {t for t, p in closed.messages() if p == b""}
    assert {t.split("/")[3] for t in cleared} == {"last_subject", "cpu_temperature"}
    assert all(t.split("/")[2] == "gate_01" for t, _ in closed.messages())  # HA's node_id charset
    assert all(p for _, p in shown.messages())
    assert [p for t, p in shown.messages() for p in documented_problems(t, json.loads(p))] == []
    health = {"fps": 9.5, "outbox": {"depth": 3}, "cpu_temp_c": 51.0, "alarms": {"disk": {"active": True}}}
    assert json.loads(closed.state(decision="accepted", subject="s-17", health=health))["subject"] is None
    state = json.loads(shown.state(decision="accepted", subject="s-17", health=health))
    assert state == {"decision": "accepted", "subject": "s-17", "fps": 9.5, "outbox_depth": 3, "cpu_temp_c": 51.0,
                     "disk_alarm": True}  # fmt: skip
    assert {t for t, _ in shown.removal()} == {t for t, _ in shown.messages()} | {shown.state_topic}


@pytest.mark.parametrize("prefix", ["", "home assistant", "ha/#", "a/+"])
def test_a_bad_discovery_prefix_is_refused(prefix: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        HomeAssistantConfig(discovery_prefix=prefix)


def test_an_acl_that_refuses_the_discovery_prefix_raises_the_auth_alarm(tmp_path: Path) -> None:
    try:
        ModelStore()
    except ModelError as exc:
        missing_data(f"models are not built in this checkout: {exc}")
    acl = Broker.terminal_acl(admins=["watch"])  # t1 may use its own namespace only
    with Broker(tmp_path / "mosq", users={TID: "pw", "watch": "pw"}, acl=acl) as broker:
        (tmp_path / "pw").write_text("pw\n")
        conf = f'username = "{TID}"\npassword_file = "{tmp_path / "pw"}"\n[homeassistant]\nenabled = true\n'
        term = Terminal(tmp_path, broker, make_replay(tmp_path / "replay", 1), conf_extra=conf)
        health: list[dict] = []
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="watch", protocol=mqtt.MQTTv5)
        c.username_pw_set("watch", "pw")
        c.on_connect = lambda cl, u, f, rc, p: cl.subscribe(f"{BASE}/health", qos=1)
        c.on_message = lambda cl, u, m: health.append(json.loads(m.payload))
        c.connect(broker.host, broker.port)
        c.loop_start()
        try:
            auth = lambda: any(h["alarms"]["auth_failure"]["active"] for h in health)  # noqa: E731
            assert term.wait_for(auth, 60), term.text()[-2000:]
            assert term.stop() == 0
        finally:
            c.disconnect()
            c.loop_stop()
            if term.proc.poll() is None:
                term.kill()
    reason = next(h for h in health if h["alarms"]["auth_failure"]["active"])["alarms"]["auth_failure"][
        "reason"
    ]
    assert "refused a publish: Not authorized" in reason
    assert term.text().count("alarm raised: auth_failure") == 1
