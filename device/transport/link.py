"""The broker connection (paho-mqtt 2.x, CallbackAPIVersion.VERSION2), MQTT 5 or 3.1.1.

paho runs its network loop in its own thread; every callback here only turns what happened into a
frozen value on `inbox` (the service loop owns all state). Before each connection attempt the birth and
the last will are made afresh for that moment (signed by the caller), so each connection's pair is dated
by its own connect time. Command requests get their own bounded
queue (count and bytes), so a flood of them can neither crowd out acknowledgements nor grow memory:
beyond capacity only the reply address is kept (bounded too) for a `busy` reply, and past that the
request is counted and dropped (a QoS 0 one before paho even parses it: BufferedClient's `shed`). The exceptions, as paho recommends, are
the non-blocking subscribe and birth publish in on_connect, so a reconnect restores them at once.

A cluster (`[mqtt] broker` a list of URLs): every connection attempt goes to the node the BrokerRing names,
and every failed or lost connection moves it on, after a jittered, growing delay (device.transport.failover).

Persistent session: clean_start off and a session expiry, so command requests sent while the
terminal is offline are queued by the broker (subscribed at QoS 1; at QoS 0, for a NATS cluster, the
broker keeps only the subscriptions). paho keeps its own unacknowledged QoS 1 messages in
memory only and resends them (DUP) after a reconnect; across a process restart the outbox resends.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from device.config.mqtt import MqttConfig
from device.transport.buffered_client import BufferedClient
from device.transport.client import new_client
from device.transport.envelope import CONTENT_TYPE, SCHEMA_VERSION, Meta
from device.transport.failover import Backoff, BrokerRing, aim
from device.transport.linkevents import (
    AUTH_FAILURES,
    NOT_AUTHORIZED,
    TAKEN_OVER,
    Acked,
    CommandsWaiting,
    Connected,
    ConnectFailed,
    Disconnected,
    Inbound,
    LinkEvent,
    Overflow,
)
from device.transport.topics import Topics

# The inbox's values are part of the link's interface: importable from here as from linkevents.
__all__ = [
    "NOT_AUTHORIZED",
    "TAKEN_OVER",
    "Acked",
    "CommandsWaiting",
    "ConnectFailed",
    "Connected",
    "Disconnected",
    "Inbound",
    "Link",
    "LinkEvent",
    "Overflow",
]

log = logging.getLogger(__name__)
paho_log = logging.getLogger(f"{__name__}.paho")


class _RetryNoise(logging.Filter):
    """paho logs each failed reconnect attempt at ERROR ("Client is not connected"); the service
    already logs one line per connection change naming the broker, so these become DEBUG lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and record.getMessage().startswith("Client is not connected"):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return paho_log.isEnabledFor(logging.DEBUG)
        return True


paho_log.addFilter(_RetryNoise())

# A retained status payload made for a given wall-clock time (the connect time of the connection it is for).
StateAt = Callable[[float], bytes]


def _no_state(at: float) -> bytes:
    raise RuntimeError("Link.start was not called")


# What the kernel may hold for us unread. Inbound traffic is small (acknowledgements, commands); a
# fixed buffer stops autotuning from growing it to megabytes (tcp_rmem allows 32 MB) during a flood.
RECEIVE_BUFFER = 32 * 1024


def _tune_socket(client, userdata, sock) -> None:
    with contextlib.suppress(OSError, AttributeError):
        # Small request/reply packets: without this, Nagle + delayed ACK add ~40 ms per hop.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)


class Link:
    def __init__(
        self,
        config: MqttConfig,
        client_id: str,
        topics: Topics,
        inbox: queue.Queue[LinkEvent],
        *,
        command_capacity: int = 64,
        command_bytes: int = 4 * 1024 * 1024,
    ) -> None:
        self.config = config
        self.client_id = client_id
        self.topics = topics
        self.inbox = inbox
        self.v5 = config.protocol == "5"
        self._birth: bytes | None = None
        self._make_birth: StateAt = _no_state
        self._make_will: StateAt = _no_state
        self._connected = threading.Event()
        self.inbox_dropped = 0
        self.publish_failed: dict[str, int] = {}  # paho error name -> messages paho did not take
        self.commands: queue.Queue[Inbound] = queue.Queue(command_capacity)
        self.overflow: queue.Queue[Overflow] = queue.Queue(command_capacity)
        self.command_bytes = command_bytes
        self._queued_bytes = 0
        self._bytes_lock = threading.Lock()
        self.commands_dropped = 0
        self._request_prefix = topics.cmd_req("")
        self._request_prefix_bytes = self._request_prefix.encode("utf-8")
        self._wake_sent = threading.Event()
        self.ring = BrokerRing(config.brokers, client_id)
        self.backoff = Backoff(config.reconnect_min_s, config.reconnect_max_s)
        client: BufferedClient = new_client(  # type: ignore[assignment]
            config.client_options()[0],
            client_id,
            client_class=BufferedClient,
            shed=self._shed,
            clean_session=None if self.v5 else False,
        )
        # A bug in a callback must not kill paho's network thread: log it and carry on.
        client.suppress_exceptions = True
        client.enable_logger(paho_log)
        client.max_inflight_messages_set(config.inflight_window + 20)
        client.on_pre_connect = self._on_pre_connect
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.on_socket_open = _tune_socket
        self.client = client

    # ---- called by the service loop ---------------------------------------------------------

    def start(self, birth: StateAt, will: StateAt) -> None:
        """Connect in the background (retrying forever). Before every connection attempt `birth(t)` and
        `will(t)` make, for that attempt's wall-clock time t, the retained online status published once
        connected and the retained status the broker publishes if the terminal vanishes (both signed by
        the caller: a will is fixed at CONNECT, so it is signed then, and dated like the birth it follows)."""
        self._make_birth, self._make_will = birth, will
        props = None
        if self.v5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = self.config.session_expiry_s
            # Ask the broker not to flood us: requests beyond this wait at the broker.
            props.ReceiveMaximum = 100
        self.client.connect_async(
            self.ring.current.host,
            self.ring.current.port,
            keepalive=self.config.keepalive_s,
            clean_start=False if self.v5 else mqtt.MQTT_CLEAN_START_FIRST_ONLY,
            properties=props,
        )
        self.client.loop_start()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def broker(self) -> str:
        """The broker this link uses now (the node of a cluster it is on or trying)."""
        return str(self.ring)

    @property
    def commands_pending(self) -> bool:
        return not (self.commands.empty() and self.overflow.empty())

    def woken(self) -> None:
        """The loop took the CommandsWaiting marker: the next request sends a new one."""
        self._wake_sent.clear()

    def take_command(self) -> Inbound | Overflow | None:
        """The next command request, else the next one that found the queue full, else None."""
        try:
            msg = self.commands.get_nowait()
        except queue.Empty:
            try:
                return self.overflow.get_nowait()
            except queue.Empty:
                return None
        with self._bytes_lock:
            self._queued_bytes -= len(msg.payload)
        return msg

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int,
        retain: bool = False,
        meta: Meta | None = None,
    ) -> int | None:
        """Hand a message to paho: its mid while paho holds it (sent, or a QoS 1 message kept for the next
        connection), None when paho did not take it (counted in `publish_failed` by paho's error name).

        A QoS 0 message is only ever sent now: while disconnected it is dropped here (paho would also
        drop it, but not before a connection that is still being set up could carry it late)."""
        if qos == 0 and not self.connected:
            self._refused("MQTT_ERR_NO_CONN")
            return None
        info = self.client.publish(topic, payload, qos=qos, retain=retain, properties=self._props(meta))
        if info.rc == mqtt.MQTT_ERR_SUCCESS or (info.rc == mqtt.MQTT_ERR_NO_CONN and qos > 0):
            return info.mid
        self._refused(mqtt.MQTTErrorCode(info.rc).name)
        return None

    def _refused(self, code: str) -> None:
        first = code not in self.publish_failed
        self.publish_failed[code] = self.publish_failed.get(code, 0) + 1
        if first and code != "MQTT_ERR_NO_CONN":  # offline is logged as such; the rest once, then counted
            log.warning("paho did not take a message: %s", code)

    def abandon(self, mid: int) -> bool:
        """Give up on a QoS 1 message whose acknowledgement never came (the courier sends its record again
        as a new message): paho forgets it, so it neither resends it nor keeps its in-flight slot."""
        return self.client.abandon(mid)

    def stop(self, offline_payload: bytes, timeout: float) -> bool:
        """Publish the explicit offline status, wait for it up to `timeout`, disconnect. True if delivered."""
        delivered = False
        if self.connected:
            info = self.client.publish(self.topics.status, offline_payload, qos=1, retain=True)
            try:
                info.wait_for_publish(timeout)
                delivered = info.is_published()
            except (RuntimeError, ValueError):
                delivered = False
        # paho's network loop reports its own orderly shutdown as an ERROR ("Client is not connected").
        self.client.disable_logger()
        self.client.disconnect()
        self.client.loop_stop()
        return delivered

    # ---- paho callbacks (network thread): enqueue only --------------------------------------

    def _put(self, event: LinkEvent) -> None:
        try:
            self.inbox.put_nowait(event)
        except queue.Full:
            self.inbox_dropped += 1

    def _retry_later(self, client: mqtt.Client) -> None:
        """After a failed or lost connection: the next node, after the next jittered delay. paho waits
        exactly its reconnect delay, which a reconnect_delay_set(d, d) sets to d for the next wait."""
        self.ring.advance()
        delay = self.backoff.next_delay()
        # paho annotates int but sleeps for any number: sub-second delays are what failover needs.
        client.reconnect_delay_set(delay, delay)  # type: ignore[arg-type]

    def _on_pre_connect(self, client, userdata) -> None:
        aim(client, self.ring.current)
        at = time.time()
        self._birth = self._make_birth(at)
        will_props = None
        if self.v5:
            will_props = Properties(PacketTypes.WILLMESSAGE)
            will_props.WillDelayInterval = self.config.will_delay_s
            will_props.ContentType = CONTENT_TYPE
        client.will_set(self.topics.status, self._make_will(at), qos=1, retain=True, properties=will_props)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._put(ConnectFailed(str(reason_code), str(reason_code) in AUTH_FAILURES))
            return
        self._connected.set()
        self.backoff.reset()
        # The status topic too: a second terminal with our id shows up there (device.transport.presence).
        qos = self.config.subscription_qos
        client.subscribe(
            [(self.topics.cmd_req_filter, qos), (self.topics.config_desired, qos), (self.topics.status, qos)]
            if not self.v5
            else [
                (self.topics.cmd_req_filter, mqtt.SubscribeOptions(qos=qos)),
                (self.topics.config_desired, mqtt.SubscribeOptions(qos=qos)),
                (self.topics.status, mqtt.SubscribeOptions(qos=qos, noLocal=True)),
            ]
        )
        if self._birth is not None:
            client.publish(self.topics.status, self._birth, qos=1, retain=True, properties=self._props(None))
        self._put(Connected(bool(flags.session_present)))

    def _on_connect_fail(self, client, userdata) -> None:
        self._retry_later(client)
        self._put(ConnectFailed("broker unreachable or TLS handshake failed", False))

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._connected.clear()
        self._retry_later(client)
        self._put(Disconnected(str(reason_code)))

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        failed = isinstance(reason_code, ReasonCode) and reason_code.is_failure
        self._put(Acked(mid, not failed, str(reason_code)))

    def _on_message(self, client, userdata, message: mqtt.MQTTMessage) -> None:
        try:
            topic = message.topic
        except UnicodeDecodeError:
            log.warning("dropped a message whose topic is not UTF-8")
            return
        props = message.properties
        response_topic = getattr(props, "ResponseTopic", None) if props is not None else None
        correlation = getattr(props, "CorrelationData", None) if props is not None else None
        msg = Inbound(topic, bytes(message.payload), response_topic, correlation, message.retain)
        if topic.startswith(self._request_prefix):
            self._put_command(msg)
        else:
            self._put(msg)

    def _shed(self, topic: bytes) -> bool:
        """A QoS 0 request that would only be counted and dropped: dropped before paho parses it."""
        if topic.startswith(self._request_prefix_bytes) and self.commands.full() and self.overflow.full():
            self.commands_dropped += 1
            return True
        return False

    def _put_command(self, msg: Inbound) -> None:
        with self._bytes_lock:
            # An empty queue takes any one request, so an oversized one still gets its too_large reply.
            fits = self._queued_bytes == 0 or self._queued_bytes + len(msg.payload) <= self.command_bytes
            if fits:
                self._queued_bytes += len(msg.payload)
        try:
            if not fits:
                raise queue.Full
            self.commands.put_nowait(msg)
        except queue.Full:
            if fits:
                with self._bytes_lock:
                    self._queued_bytes -= len(msg.payload)
            try:
                self.overflow.put_nowait(Overflow(msg.topic, msg.response_topic, msg.correlation))
            except queue.Full:
                self.commands_dropped += 1
                return
        if not self._wake_sent.is_set():
            self._wake_sent.set()
            self._put(CommandsWaiting())

    # ---- properties -------------------------------------------------------------------------

    def _props(self, meta: Meta | None) -> Properties | None:
        if not self.v5:
            return None
        props = Properties(PacketTypes.PUBLISH)
        props.ContentType = CONTENT_TYPE
        if meta is not None:
            props.UserProperty = [
                ("type", meta.kind),
                ("id", meta.payload_id),
                ("schema", str(SCHEMA_VERSION)),
            ]
            remaining = meta.remaining_s()
            if remaining is not None:
                props.MessageExpiryInterval = max(1, remaining)
            if meta.correlation is not None:
                props.CorrelationData = meta.correlation
        return props
