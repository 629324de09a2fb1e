"""Home Assistant MQTT discovery: each terminal is one HA device with a handful of entities.

Follows https://www.home-assistant.io/integrations/mqtt/ (single-component discovery): one retained
config per entity on `<discovery_prefix>/<component>/<node id>/<object id>/config`, each with the
same `device` block (identifiers = the terminal id), a `unique_id`, the `origin`, and availability
from the terminal's own retained status topic (`{"state": "online" | "offline"}`, with its Last Will).

What HA reads is a small retained state topic of our own (`<base>/ha/state`), never the face events:
HA needs a decision and a few numbers, not embeddings or thumbnails. The subject id is in it only
when `expose_subject` is on. The CPU temperature entity exists only where the board reports one.

The one button sends the read-only `status` command unsigned, which the command plane already
answers for anyone who may publish there (registered read-only); a button cannot sign, so no
state-changing command is offered. Its reply goes to the terminal's cmd/res.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import device
from device.config.homeassistant import HomeAssistantConfig
from device.transport.topics import Topics

ORIGIN = {"name": "faceonly", "sw_version": device.__version__, "support_url": "https://faceonly.example/"}


@dataclass(frozen=True)
class Entity:
    component: str  # sensor | binary_sensor | button
    object_id: str
    config: dict[str, Any]


def node_id(terminal_id: str) -> str:
    """HA allows [a-zA-Z0-9_-] in topic ids; a terminal id may also hold dots."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", terminal_id)


class Discovery:
    def __init__(self, config: HomeAssistantConfig, topics: Topics, *, has_temperature: bool) -> None:
        self.config = config
        self.topics = topics
        self.node = node_id(topics.terminal_id)
        self.state_topic = f"{topics.base}/ha/state"
        self.has_temperature = has_temperature

    def topic(self, entity: Entity) -> str:
        return f"{self.config.discovery_prefix}/{entity.component}/{self.node}/{entity.object_id}/config"

    def entities(self) -> list[Entity]:
        """Every entity this terminal could have; `messages` leaves out (clears) the ones not offered."""
        state = {"state_topic": self.state_topic}
        return [
            Entity(
                "binary_sensor",
                "online",
                {
                    "name": "Online",
                    "device_class": "connectivity",
                    "entity_category": "diagnostic",
                    "state_topic": self.topics.status,
                    "value_template": "{{ 'ON' if value_json.state == 'online' else 'OFF' }}",
                },
            ),
            Entity("sensor", "last_decision", {"name": "Last decision", **state,
                   "value_template": "{{ value_json.decision }}", "icon": "mdi:face-recognition"}),
            Entity("sensor", "last_subject", {"name": "Last match subject", **state,
                   "value_template": "{{ value_json.subject }}", "icon": "mdi:account-check"}),
            Entity("sensor", "fps", {"name": "Frames per second", **state, "unit_of_measurement": "fps",
                   "state_class": "measurement", "suggested_display_precision": 1,
                   "value_template": "{{ value_json.fps }}", "entity_category": "diagnostic"}),
            Entity("sensor", "outbox_depth", {"name": "Outbox depth", **state, "unit_of_measurement": "events",
                   "state_class": "measurement", "value_template": "{{ value_json.outbox_depth }}",
                   "entity_category": "diagnostic"}),
            Entity("sensor", "cpu_temperature", {"name": "CPU temperature", **state, "device_class": "temperature",
                   "unit_of_measurement": "°C", "state_class": "measurement",
                   "value_template": "{{ value_json.cpu_temp_c }}", "entity_category": "diagnostic"}),
            Entity("binary_sensor", "disk_alarm", {"name": "Disk alarm", **state, "device_class": "problem",
                   "value_template": "{{ 'ON' if value_json.disk_alarm else 'OFF' }}",
                   "entity_category": "diagnostic"}),
            Entity("button", "request_status", {"name": "Request status", "command_topic":
                   self.topics.cmd_req("status"), "payload_press": "{}", "qos": 1, "retain": False,
                   "entity_category": "diagnostic"}),
        ]  # fmt: skip

    def offered(self, entity: Entity) -> bool:
        if entity.object_id == "last_subject":
            return self.config.expose_subject
        if entity.object_id == "cpu_temperature":
            return self.has_temperature
        return True

    def messages(self) -> list[tuple[str, bytes]]:
        """(topic, retained payload) for every entity: its config, or b"" to clear one not offered."""
        out = []
        for entity in self.entities():
            payload = json.dumps(self._full(entity)).encode() if self.offered(entity) else b""
            out.append((self.topic(entity), payload))
        return out

    def removal(self) -> list[tuple[str, bytes]]:
        """Decommission: every config cleared (HA removes the entities), and the retained state too."""
        return [(self.topic(e), b"") for e in self.entities()] + [(self.state_topic, b"")]

    def _full(self, entity: Entity) -> dict[str, Any]:
        tid = self.topics.terminal_id
        config: dict[str, Any] = {
            **entity.config,
            "unique_id": f"faceonly_{self.node}_{entity.object_id}",
            "device": {
                "identifiers": [f"faceonly_{self.node}"],
                "name": f"faceonly {tid}",
                "manufacturer": "faceonly",
                "model": "face recognition terminal",
                "sw_version": device.__version__,
            },
            "origin": ORIGIN,
        }
        if entity.object_id != "online":  # the online entity shows offline itself, never "unavailable"
            config["availability"] = [
                {
                    "topic": self.topics.status,
                    "value_template": "{{ value_json.state }}",
                    "payload_available": "online",
                    "payload_not_available": "offline",
                }
            ]
        return config

    def state(self, *, decision: str | None, subject: str | None, health: dict[str, Any]) -> bytes:
        """The retained state HA reads (no face data; the subject only when exposed)."""
        body = {
            "decision": decision,
            "subject": subject if self.config.expose_subject else None,
            "fps": health.get("fps"),
            "outbox_depth": health.get("outbox", {}).get("depth"),
            "cpu_temp_c": health.get("cpu_temp_c"),
            "disk_alarm": bool(health.get("alarms", {}).get("disk", {}).get("active")),
        }
        return json.dumps(body).encode()


class HomeAssistant:
    """The service's side: discovery on every connect, the state on every health tick and decision.

    `publish(topic, payload)` hands a retained QoS 1 message to the link; only the service loop calls in.
    While `online()` is false nothing is published (paho would queue it in memory, unbounded): the
    next connect publishes the latest state anyway.
    """

    def __init__(
        self, discovery: Discovery, publish: Callable[[str, bytes], object], online: Callable[[], bool]
    ) -> None:
        self.discovery = discovery
        self.publish = publish
        self.online = online
        self.decision: str | None = None
        self.subject: str | None = None
        self._health: dict[str, Any] = {}

    def connected(self) -> None:
        for topic, payload in self.discovery.messages():
            self.publish(topic, payload)
        self._publish_state()

    def event(self, body: dict[str, Any]) -> None:
        """A face event as it leaves: its decision, and its match subject (null when unknown or absent)."""
        self.decision = body.get("observation", {}).get("decision")
        match = body.get("match")
        self.subject = match.get("subject") if isinstance(match, dict) else None
        self._publish_state()

    def health(self, body: dict[str, Any]) -> None:
        self._health = body
        self._publish_state()

    def _publish_state(self) -> None:
        if not self.online():
            return
        self.publish(
            self.discovery.state_topic,
            self.discovery.state(decision=self.decision, subject=self.subject, health=self._health),
        )
