"""The reference gate listener: subscribes to one terminal's gate topic and pulses a relay for each
decision that passes device.gate.check. Runs on the box next to the relay (`faceonly gate listen`).

paho's callbacks only enqueue (a bounded queue; what does not fit is counted and dropped: a decision
that waits is a late one anyway). Only the first MAX_BYTES + 1 bytes of a payload are kept, enough to
refuse it as too large; on MQTT 5 the broker is also asked (Maximum Packet Size) not to send more. The
session is clean: nothing is queued for the listener while it is away, and paho reconnects on its own
after a broker restart, subscribing again in on_connect. One message can neither stop the loop nor open
the door unless it passes every check.
"""

from __future__ import annotations

import logging
import queue
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from device.gate.check import MAX_BYTES, REFUSALS, DecisionCheck, Verdict
from device.gate.relay import Relay
from device.transport.client import ClientOptions, new_client

log = logging.getLogger(__name__)

QUEUE_SIZE = 64
LOG_EVERY_S = 10.0  # refusals of one kind: one log line per this many seconds, with the count since
PACKET_LIMIT = MAX_BYTES + 1024  # the topic and MQTT 5 properties come on top of the payload


class GateListener:
    def __init__(
        self,
        options: ClientOptions,
        topic: str,
        check: DecisionCheck,
        relay: Relay,
        client_id: str,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.options, self.topic, self.check, self.relay = options, topic, check, relay
        self.inbox: queue.Queue[bytes] = queue.Queue(QUEUE_SIZE)
        self.counts: Counter[str] = Counter()
        self.queue_dropped = 0  # written by paho's thread only
        self.connected = False
        self._clock = clock
        self._logged: dict[str, tuple[float, int]] = {}  # code -> (when last logged, refused since)
        client = new_client(options, client_id)
        client.suppress_exceptions = True
        client.reconnect_delay_set(1, 30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self.client = client

    def start(self) -> None:
        """Connect in the background, retrying until the broker answers (also after it restarts)."""
        props = None
        if self.options.v5:
            props = Properties(PacketTypes.CONNECT)
            props.MaximumPacketSize = PACKET_LIMIT
        self.client.connect_async(
            self.options.broker.host,
            self.options.broker.port,
            keepalive=30,
            clean_start=True if self.options.v5 else mqtt.MQTT_CLEAN_START_FIRST_ONLY,
            properties=props,
        )
        self.client.loop_start()

    def serve(self, stopping: Callable[[], bool], poll_s: float = 0.2) -> None:
        """Judge decisions until `stopping()`."""
        while not stopping():
            try:
                raw = self.inbox.get(timeout=poll_s)
            except queue.Empty:
                continue
            self.handle(raw)

    def handle(self, raw: bytes) -> Verdict:
        try:
            verdict = self.check.check(raw)
        except Exception:  # a bug in the check must not stop the door for the next message
            log.exception("gate decision check failed; refused")
            verdict = Verdict("internal_error")
        self.counts[verdict.code] += 1
        if verdict.opens:
            self.relay.pulse()
            log.info(
                "door %s opened for %s (decided %.2f s ago)", self.check.door, verdict.subject, verdict.age_s
            )
        else:
            self._log_refusal(verdict)
        return verdict

    def stats(self) -> dict[str, Any]:
        return {"connected": self.connected, **self.counts, "queue_dropped": self.queue_dropped}

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        self.relay.close()

    def _log_refusal(self, verdict: Verdict) -> None:
        now = self._clock()
        last, since = self._logged.get(verdict.code, (None, 0))
        if last is not None and now - last < LOG_EVERY_S:
            self._logged[verdict.code] = (last, since + 1)
            return
        more = f"; {since} more since the last such line" if since else ""
        age = f", decided {verdict.age_s:.1f} s ago" if verdict.age_s is not None else ""
        log.warning("refused a gate decision: %s%s (%s)%s", verdict.code, age, REFUSALS[verdict.code], more)
        self._logged[verdict.code] = (now, 0)

    # ---- paho's thread: enqueue only --------------------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("broker %s refused the connection: %s (retrying)", self.options.broker, reason_code)
            return
        self.connected = True
        client.subscribe(self.topic, qos=0)
        log.info("listening on %s (broker %s) for door %s", self.topic, self.options.broker, self.check.door)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if self.connected:
            log.warning("connection to broker %s lost (%s); reconnecting", self.options.broker, reason_code)
        self.connected = False

    def _on_message(self, client, userdata, message: mqtt.MQTTMessage) -> None:
        try:
            self.inbox.put_nowait(bytes(message.payload[: MAX_BYTES + 1]))
        except queue.Full:
            self.queue_dropped += 1
