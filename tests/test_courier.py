"""The courier: lost acknowledgements age out and the record is sent again, so the outbox keeps draining;
paho's return code is checked, so a message paho did not take never occupies the window.

A property test drives the courier with a scripted link (acknowledgements delivered, lost, late;
disconnects) and an injected clock; the rest runs against a real mosquitto, through a proxy that
loses the broker's PUBACKs.
"""

from __future__ import annotations

import contextlib
import json
import queue
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from hypothesis import given, settings
from hypothesis import strategies as st

from device.config.mqtt import MqttConfig, OutboxConfig
from device.transport.courier import Courier
from device.transport.envelope import Meta, encode, envelope
from device.transport.link import Acked, Connected, Disconnected, Link, LinkEvent
from device.transport.outbox import Outbox
from device.transport.topics import Topics
from tests.ack_proxy import AckDroppingProxy
from tests.broker import Broker

TOPIC = "faceonly/v1/dev/c1/event/face"


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class ScriptedLink:
    """What the courier needs of a Link; the test decides what happens to each message."""

    def __init__(self) -> None:
        self.connected = True
        self.next_mid = 1
        self.held: dict[int, str] = {}  # mid -> payload id, as paho would hold them
        self.abandoned: list[int] = []
        self.refuse_next = False

    def publish(
        self, topic: str, payload: bytes, *, qos: int, retain: bool = False, meta: Meta | None = None
    ):
        if self.refuse_next:  # paho's queue full, say
            self.refuse_next = False
            return None
        mid, self.next_mid = self.next_mid, self.next_mid + 1
        self.held[mid] = json.loads(payload)["id"]
        return mid

    def abandon(self, mid: int) -> bool:
        self.abandoned.append(mid)
        return self.held.pop(mid, None) is not None


def _event(i: int) -> dict:
    return envelope("event.face", "c1", {"n": i}, ttl_s=3600)


OPS = st.lists(
    st.tuples(
        st.sampled_from(["put", "ack", "lose", "late_ack", "tick", "disconnect", "connect", "refuse"]),
        st.integers(0, 40),
    ),
    max_size=60,
)


@settings(max_examples=60, deadline=None)
@given(OPS)
def test_no_event_is_lost_and_the_window_never_leaks(tmp_path_factory, ops) -> None:
    clock = Clock()
    box = Outbox(tmp_path_factory.mktemp("ob"), OutboxConfig(), monotonic=clock)
    link = ScriptedLink()
    window, timeout = 4, 5.0
    courier = Courier(box, link, window, timeout, clock=clock)  # type: ignore[arg-type]
    ids: list[str] = []
    lost: set[int] = set()  # mids whose PUBACK the broker sent and the network lost: never acknowledged
    for op, k in ops:
        live = sorted(set(link.held) - lost)
        if op == "put":
            payload = _event(len(ids))
            ids.append(payload["id"])
            assert courier.queue(TOPIC, payload)
        elif op in ("ack", "lose", "late_ack") and live:
            mid = live[k % len(live)]
            if op == "ack":
                del link.held[mid]
                courier.handle(Acked(mid, True, "Success"))
            elif op == "lose":
                lost.add(mid)
            else:  # an acknowledgement that arrives after the courier gave up: must be harmless
                link.held.pop(mid, None)
                courier.handle(Acked(mid, True, "Success"))
        elif op == "tick":
            clock.t += k / 4
            courier.pump()
        elif op == "disconnect":
            link.connected = False
            courier.handle(Disconnected("Unspecified error"))
        elif op == "connect":
            link.connected = True
            courier.handle(Connected(True))
        elif op == "refuse":
            link.refuse_next = True
            courier.pump()
        assert courier.inflight <= window
        assert set(link.held) >= set(courier._inflight)  # every slot is a message paho still holds
    # Whatever happened, once acknowledgements flow again every event is delivered and retired.
    link.connected, link.refuse_next = True, False
    courier.handle(Connected(True))
    for _ in range(4 * len(ids) + 10):
        clock.t += timeout
        courier.pump()
        for mid in sorted(set(link.held) & set(courier._inflight) - lost):
            del link.held[mid]
            courier.handle(Acked(mid, True, "Success"))
    assert len(box) == 0 and courier.inflight == 0
    assert box.stats()["acked"] == len(ids) and box.stats()["expired"] == 0
    assert lost <= set(link.abandoned) and not set(link.held) & lost  # paho was told to forget each lost one


def _drive(link: Link, inbox: queue.Queue[LinkEvent], courier: Courier, until, timeout_s: float) -> bool:
    """The service loop's part for the courier: hand every link event to it, pump between."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(queue.Empty):
            courier.handle(inbox.get(timeout=0.05))
        courier.pump()
        if until():
            return True
    return False


class Consumer:
    def __init__(self, broker: Broker) -> None:
        self.ids: list[str] = []
        self.lock = threading.Lock()
        ready = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="consumer", protocol=mqtt.MQTTv5)
        c.on_subscribe = lambda *a: ready.set()
        c.on_message = self._on_message
        c.connect(broker.host, broker.port)
        c.subscribe(TOPIC, qos=1)
        c.loop_start()
        assert ready.wait(5)
        self.client = c

    def _on_message(self, client, userdata, msg) -> None:
        with self.lock:
            self.ids.append(json.loads(msg.payload)["id"])

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _terminal(tmp: Path, url: str, window: int, ack_timeout_s: float, paho_queue: int = 0):
    cfg = MqttConfig(broker=url, inflight_window=window, ack_timeout_s=ack_timeout_s, reconnect_min_s=0.2)
    inbox: queue.Queue[LinkEvent] = queue.Queue()
    link = Link(cfg, "c1", Topics("faceonly", "c1"), inbox)
    link.client.max_queued_messages_set(paho_queue)  # 0: unbounded, as the terminal runs
    courier = Courier(Outbox(tmp / "outbox", OutboxConfig()), link, window, ack_timeout_s)
    link.start(lambda at: encode(envelope("status", "c1", {"state": "online"}, now=at)), lambda at: b"{}")
    return link, inbox, courier


def _connected_and_born(link: Link, inbox, courier: Courier, proxy: AckDroppingProxy) -> int:
    """Once the link is up and its birth message acknowledged: how many PUBACKs passed so far."""
    assert _drive(link, inbox, courier, lambda: link.connected and proxy.acks_seen >= 1, 10)
    return proxy.acks_seen


def test_lost_pubacks_age_out_and_the_outbox_keeps_draining(tmp_path: Path) -> None:
    n, window, lost = 120, 20, 45  # the first 45 events' PUBACKs are lost: the first window twice over
    with (
        Broker(tmp_path / "mq") as broker,
        AckDroppingProxy(broker.host, broker.port, lambda k: False) as proxy,
    ):
        consumer = Consumer(broker)
        link, inbox, courier = _terminal(tmp_path, proxy.url, window, ack_timeout_s=1.0)
        try:
            base = _connected_and_born(link, inbox, courier, proxy)
            proxy.drop = lambda k: base <= k < base + lost
            ids = []
            for i in range(n):
                payload = _event(i)
                ids.append(payload["id"])
                assert courier.queue(TOPIC, payload)
            t0 = time.monotonic()
            assert _drive(link, inbox, courier, lambda: len(courier.outbox) == 0, 30), courier.stats()
            drained_s = time.monotonic() - t0
            stats = courier.stats()
            assert proxy.dropped == lost
            assert stats["ack_timeouts"] == lost and stats["published"] == n and stats["expired"] == 0
            assert courier.inflight == 0
            assert _drive(link, inbox, courier, lambda: set(consumer.ids) >= set(ids), 10)
            assert set(consumer.ids) == set(
                ids
            )  # every event reached the consumer (some twice: dedupe by id)
            assert drained_s < 10, drained_s  # ~3 deadlines of 1 s, not a stall
            assert (
                link.client._inflight_messages == 0 and not link.client._out_messages
            )  # paho forgot them too
        finally:
            link.stop(b"{}", 1.0)
            consumer.close()


def test_without_a_deadline_lost_pubacks_stop_the_outbox(tmp_path: Path) -> None:
    """The failure the deadline prevents: one window of lost acknowledgements and nothing moves again."""
    n, window = 40, 10
    with (
        Broker(tmp_path / "mq") as broker,
        AckDroppingProxy(broker.host, broker.port, lambda k: False) as proxy,
    ):
        link, inbox, courier = _terminal(tmp_path, proxy.url, window, ack_timeout_s=3600)
        try:
            base = _connected_and_born(link, inbox, courier, proxy)
            proxy.drop = lambda k: base <= k < base + window
            for i in range(n):
                courier.queue(TOPIC, _event(i))
            assert not _drive(link, inbox, courier, lambda: len(courier.outbox) < n, 3)
            assert courier.inflight == window and proxy.dropped == window
        finally:
            link.stop(b"{}", 1.0)


def test_link_reports_what_paho_did_not_take(tmp_path: Path) -> None:
    """QoS 0 while offline is dropped and counted; QoS 1 while offline is kept by paho (a mid) and sent on
    the next connection; beyond paho's queue it is refused (None, counted by paho's error name)."""
    with Broker(tmp_path / "mq") as broker:
        link, inbox, courier = _terminal(tmp_path, broker.url, 10, ack_timeout_s=5, paho_queue=1)
        try:
            assert _drive(link, inbox, courier, lambda: link.connected and not link.client._out_messages, 10)
            broker.kill()
            assert _drive(link, inbox, courier, lambda: not link.connected, 10)
            assert link.publish("x/y", b"{}", qos=0) is None
            assert link.publish_failed == {"MQTT_ERR_NO_CONN": 1}
            kept = link.publish("x/y", b"{}", qos=1)
            assert kept is not None
            assert link.publish("x/y", b"{}", qos=1) is None
            assert link.publish_failed == {"MQTT_ERR_NO_CONN": 1, "MQTT_ERR_QUEUE_SIZE": 1}
            acked: list[int] = []
            broker.start()
            deadline = time.monotonic() + 15
            while kept not in acked and time.monotonic() < deadline:
                with_event = inbox.get(timeout=deadline - time.monotonic())
                if isinstance(with_event, Acked):
                    acked.append(with_event.mid)
            assert kept in acked
        finally:
            link.stop(b"{}", 1.0)
