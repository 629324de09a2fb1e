"""A closed-loop flood of one unsigned read-only command, for tests and scripts/benchmark_control.py.

`flood_command(host, port, base, "models.verify", 1000)` keeps `window` requests outstanding (MQTT 5,
QoS 1, each with its own ResponseTopic + CorrelationData), sends a request again when the terminal
answered it `busy` or it got no answer within `resend_s` (dropped at a full queue), and returns once
`count` requests were answered ok (a request still unanswered after `resend_s` counts as dropped). So the terminal's command queue stays full for the whole flood, and
every request is answered in the end: what a client that retries does.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


@dataclass
class FloodResult:
    started: float  # time.monotonic() (system-wide on Linux: comparable across processes)
    ended: float
    ok: int = 0
    busy: int = 0
    resent_unanswered: int = 0
    other_errors: dict[str, int] = field(default_factory=dict)
    rehashed_models: int = 0  # model files hashed again by the terminal (0: every answer came from the cache)

    @property
    def seconds(self) -> float:
        return self.ended - self.started

    def as_dict(self) -> dict:
        return {**self.__dict__, "seconds": round(self.seconds, 3)}


def flood_command(  # noqa: PLR0913 - the flood's shape
    host: str,
    port: int,
    base: str,
    name: str,
    count: int,
    *,
    window: int = 100,
    resend_s: float = 60.0,
    timeout_s: float = 120.0,
) -> FloodResult:
    """Send `name` (no args, unsigned) until `count` were answered ok; AssertionError after `timeout_s`."""
    reply_topic = f"{base}/cmd/res/flood-{uuid.uuid4().hex[:8]}"
    replies: queue.Queue[tuple[bytes, dict]] = queue.Queue()
    subscribed = threading.Event()
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=f"flood-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5
    )
    client.max_inflight_messages_set(window + 10)
    client.max_queued_messages_set(0)
    client.on_subscribe = lambda *a: subscribed.set()

    def on_message(c, u, msg) -> None:
        corr = getattr(msg.properties, "CorrelationData", None) or b""
        replies.put((bytes(corr), json.loads(msg.payload)))

    client.on_message = on_message
    client.connect(host, port)
    client.subscribe(reply_topic, qos=1)
    client.loop_start()
    try:
        assert subscribed.wait(10), "flood client could not subscribe"
        sent_at: dict[bytes, float] = {}  # outstanding: correlation -> when (re)sent
        result = FloodResult(time.monotonic(), 0.0)

        def send() -> None:
            corr = uuid.uuid4().bytes
            props = Properties(PacketTypes.PUBLISH)
            props.ResponseTopic = reply_topic
            props.CorrelationData = corr
            sent_at[corr] = time.monotonic()
            client.publish(f"{base}/cmd/req/{name}", b"{}", qos=1, properties=props)

        deadline = result.started + timeout_s
        while result.ok < count:
            assert time.monotonic() < deadline, f"flood not answered within {timeout_s} s: {result}"
            while len(sent_at) < min(window, count - result.ok):
                send()
            try:
                corr, reply = replies.get(timeout=0.2)
            except queue.Empty:
                now = time.monotonic()
                for corr in [c for c, t in sent_at.items() if now - t > resend_s]:
                    del sent_at[corr]  # dropped at a full queue: the next round sends another
                    result.resent_unanswered += 1
                continue
            if sent_at.pop(corr, None) is None:
                continue  # a late answer to a request already given up on
            if reply.get("ok"):
                result.ok += 1
                models = (reply.get("result") or {}).get("models") or []
                result.rehashed_models += sum(1 for m in models if m.get("rehashed"))
                continue
            code = (reply.get("error") or {}).get("code", "?")
            if code == "busy":
                result.busy += 1
            else:
                result.other_errors[code] = result.other_errors.get(code, 0) + 1
        result.ended = time.monotonic()
        return result
    finally:
        client.disconnect()
        client.loop_stop()
