"""The backend's MQTT side: one MQTT 5 shared subscription (`$share/<group>/...`) per kind of message.

Instances in one group split the terminals' messages between them. The session is persistent
(clean_start off, a session expiry), so the broker queues what arrives while an instance is away,
and messages are acknowledged by hand only after the store committed them: a crash between receipt
and commit makes the broker deliver the message again, and the store's unique event id turns that
into a counted duplicate, never a second row. ReceiveMaximum bounds the unacknowledged messages in
flight, and so this queue: the broker holds the rest.

Callbacks only enqueue (paho's network thread must never wait on the database). A message larger than
the ingest limit is enqueued cut to one byte past it (ingest refuses it as too large, unparsed), so the
queue holds at most ReceiveMaximum x that limit however large what the broker delivers. An ack carries the
connection generation it was received on: a message from a connection that has since dropped is not
acked on the new one (its packet id may name another message there); the broker redelivers it.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass, field
from typing import Any, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from device.transport.client import ClientOptions, new_client
from device.transport.topics import API_VERSION

log = logging.getLogger(__name__)
SUBSCRIBED = ("event/face", "event/access", "status", "health")


@dataclass(frozen=True)
class Incoming:
    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int
    token: Any = field(default=None, compare=False)  # a source's own handle to acknowledge it by


class Source(Protocol):
    """Where the service's messages come from: it judges and stores them, then acknowledges each."""

    inbox: queue.Queue[Incoming]
    connected: threading.Event

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def ack(self, message: Incoming) -> None: ...

    def stats(self) -> dict[str, Any] | None: ...


def shared_filters(group: str, prefix: str) -> list[str]:
    return [f"$share/{group}/{prefix}/{API_VERSION}/dev/+/{what}" for what in SUBSCRIBED]


class Consumer:
    def __init__(
        self,
        options: ClientOptions,
        client_id: str,
        group: str,
        prefix: str,
        session_expiry_s: int,
        receive_maximum: int,
        max_payload_bytes: int,
    ) -> None:
        if not options.v5:
            raise ValueError("the backend needs MQTT 5 (shared subscriptions, manual acknowledgement)")
        self.options, self.filters = options, shared_filters(group, prefix)
        self.session_expiry_s, self.receive_maximum = session_expiry_s, receive_maximum
        self.keep_bytes = max_payload_bytes + 1
        # Bounded by ReceiveMaximum in practice; the bound here is only a backstop.
        self.inbox: queue.Queue[Incoming] = queue.Queue(maxsize=receive_maximum + 1000)
        self.generation = 0
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self._lock = threading.Lock()
        client = new_client(options, client_id, manual_ack=True)
        # Back quickly after a broker restart: mosquitto 2.0 does not restore `$share` subscriptions from its
        # persistence, so until an instance of the group has subscribed again the broker drops (after
        # acknowledging them to the terminal) the events it receives. Terminals back off from 0.5 s.
        client.reconnect_delay_set(0.1, 1.0)  # type: ignore[arg-type]  # paho annotates int; sleeps any number
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        self.client = client

    def start(self) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.session_expiry_s
        props.ReceiveMaximum = self.receive_maximum
        self.client.connect_async(
            self.options.broker.host,
            self.options.broker.port,
            keepalive=30,
            clean_start=False,
            properties=props,
        )
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def stats(self) -> dict[str, Any] | None:
        return None  # the broker's queue for this instance is not visible to an MQTT client

    def ack(self, message: Incoming) -> None:
        """Acknowledge a committed message, if its connection is still the current one."""
        with self._lock:
            if message.qos > 0 and message.generation == self.generation and self.connected.is_set():
                self.client.ack(message.mid, message.qos)

    # ---- paho callbacks: enqueue and flag only ----------------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning("broker %s refused the backend: %s", self.options.broker, reason_code)
            return
        with self._lock:
            self.generation += 1
            self.connected.set()
        log.info("connected to broker %s (session present: %s)", self.options.broker, flags.session_present)
        client.subscribe([(f, 1) for f in self.filters])

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        failed = [str(rc) for rc in reason_codes if rc.is_failure]
        if failed:
            log.error("broker %s refused the shared subscription: %s", self.options.broker, ", ".join(failed))
        else:
            log.info("subscribed: %s", " ".join(self.filters))
            self.subscribed.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._lock:
            self.connected.clear()
        log.warning("connection to broker %s lost (%s); reconnecting", self.options.broker, reason_code)

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = ""  # not ours: ingest passes it over and the loop acknowledges it like any other
            log.warning("a message whose topic is not UTF-8 is dropped")
        try:
            payload = bytes(msg.payload[: self.keep_bytes])
            self.inbox.put_nowait(Incoming(topic, payload, msg.mid, msg.qos, self.generation))
        except queue.Full:
            # Not acked, so not lost: the broker redelivers it on the next connection.
            log.warning("backend inbox full: a message waits at the broker")
