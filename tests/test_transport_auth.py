"""The broker link against real mosquitto: anonymous (v5 and 3.1.1), password + ACL, TLS client certs."""

from __future__ import annotations

import contextlib
import queue
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from device.config.mqtt import MqttConfig, OutboxConfig
from device.transport.courier import Courier
from device.transport.envelope import envelope
from device.transport.link import Connected, ConnectFailed, Disconnected, Link
from device.transport.outbox import Outbox
from device.transport.topics import Topics
from tests.broker import Broker, make_ca


class Terminal:
    """Link + outbox + courier driven by a tiny loop, as the service drives them."""

    def __init__(self, tmp: Path, tid: str, **mqtt_cfg) -> None:
        self.cfg = MqttConfig(**mqtt_cfg)
        self.topics = Topics("faceonly", tid)
        self.inbox: queue.Queue = queue.Queue()
        self.link = Link(self.cfg, tid, self.topics, self.inbox)
        self.outbox = Outbox(tmp / f"outbox-{tid}", OutboxConfig())
        self.courier = Courier(self.outbox, self.link, 10, ack_timeout_s=30.0)
        self.events: list = []
        self.link.start(lambda at: b'{"state":"online"}', lambda at: b'{"state":"offline"}')

    def drive(self, until, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                ev = self.inbox.get(timeout=0.05)
            except queue.Empty:
                ev = None
            if ev is not None:
                self.events.append(ev)
                self.courier.handle(ev)
            self.courier.pump()
            if until():
                return True
        return False

    def emit(self, n: int, topic: str | None = None) -> list[str]:
        ids = []
        for _ in range(n):
            p = envelope(
                "event.face", self.topics.terminal_id, {"observation": {}, "biometric": {}}, ttl_s=600
            )
            self.courier.queue(topic or self.topics.event_face, p)
            ids.append(p["id"])
        return ids

    def close(self) -> None:
        self.link.stop(b'{"state":"offline"}', 2)


class Sub:
    def __init__(self, broker: Broker, topic: str, cid: str = "backend", **auth) -> None:
        self.got: queue.Queue = queue.Queue()
        self.granted: queue.Queue = queue.Queue()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv5)
        if auth.get("user"):
            c.username_pw_set(auth["user"], auth["pw"])
        if broker.tls:
            c.tls_set(ca_certs=str(broker.ca_cert), certfile=auth.get("cert"), keyfile=auth.get("key"))
        c.on_message = lambda cl, u, m: self.got.put((m.topic, bytes(m.payload)))
        c.on_subscribe = lambda cl, u, mid, rcs, p: self.granted.put(rcs)
        c.connect(broker.host, broker.port)
        c.loop_start()
        c.subscribe(topic, qos=1)
        self.rcs = self.granted.get(timeout=5)
        self.client = c

    def ids(self, wait: float = 1.0) -> set[str]:
        import json

        out, deadline = set(), time.monotonic() + wait
        while time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty, KeyError, ValueError):
                out.add(json.loads(self.got.get(timeout=0.05)[1])["id"])
        return out

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_anonymous_events_delivered_and_acked(tmp_path: Path, protocol: str) -> None:
    with Broker(tmp_path / "mq") as broker:
        sub = Sub(broker, "faceonly/v1/dev/t1/event/face")
        term = Terminal(tmp_path, "t1", broker=broker.url, protocol=protocol)
        try:
            ids = term.emit(30)
            assert term.drive(lambda: len(term.outbox) == 0)
            assert set(ids) <= sub.ids()
        finally:
            term.close()
            sub.close()


def test_password_and_acl_confine_each_terminal(tmp_path: Path) -> None:
    users = {"t1": "pw1", "t2": "pw2", "backend": "pwb"}
    with Broker(
        tmp_path / "mq", users=users, acl=Broker.terminal_acl("faceonly", admins=["backend"])
    ) as broker:
        backend = Sub(broker, "faceonly/#", "backend", user="backend", pw="pwb")
        spy = Sub(broker, "faceonly/v1/dev/t1/#", "t2", user="t2", pw="pw2")  # t2 tries to read t1
        t1 = Terminal(tmp_path, "t1", broker=broker.url, username="t1", password="pw1")
        try:
            assert t1.drive(lambda: t1.link.connected)
            ids = t1.emit(5)
            assert t1.drive(lambda: len(t1.outbox) == 0)
            assert set(ids) <= backend.ids()
            assert spy.ids(0.5) == set()  # mosquitto grants the subscription but delivers nothing
            # t1 writing into t2's namespace: the broker refuses (MQTT 5 PUBACK "Not authorized").
            forged = t1.emit(1, topic="faceonly/v1/dev/t2/event/face")
            assert t1.drive(lambda: t1.courier.stats_counts["refused"] >= 1)
            assert forged[0] in t1.outbox and forged[0] not in backend.ids(0.5)
        finally:
            t1.close()
            backend.close()
            spy.close()
        bad = Terminal(tmp_path, "t1", broker=broker.url, username="t1", password="wrong")
        try:
            assert bad.drive(lambda: any(isinstance(e, ConnectFailed) and e.auth for e in bad.events), 5)
            assert not bad.link.connected
        finally:
            bad.close()


def test_tls_client_certificates(tmp_path: Path) -> None:
    with Broker(tmp_path / "mq", tls=True, acl=Broker.terminal_acl("faceonly", admins=["backend"])) as broker:
        cert, key = broker.client_cert("t1")
        bcert, bkey = broker.client_cert("backend")
        backend = Sub(broker, "faceonly/#", "backend", cert=str(bcert), key=str(bkey))
        term = Terminal(tmp_path, "t1", broker=broker.url, tls_ca=broker.ca_cert, tls_cert=cert, tls_key=key)
        try:
            ids = term.emit(3)
            assert term.drive(lambda: len(term.outbox) == 0)
            assert set(ids) <= backend.ids()
        finally:
            term.close()
            backend.close()
        # No client certificate: the handshake is refused.
        nocert = Terminal(tmp_path, "t1", broker=broker.url, tls_ca=broker.ca_cert)
        # A broker certificate from a CA we do not trust: refused by the terminal.
        rogue_ca, _ = make_ca(tmp_path / "rogue")
        wrong = Terminal(tmp_path, "t9", broker=broker.url, tls_ca=rogue_ca, tls_cert=cert, tls_key=key)
        try:
            for t in (nocert, wrong):
                # TLS 1.3 reports a missing client certificate after the handshake, as a dropped connection.
                assert t.drive(
                    lambda t=t: any(isinstance(e, ConnectFailed | Disconnected) for e in t.events), 5
                )
                t.drive(lambda: False, 1.0)
                assert not any(isinstance(e, Connected) for e in t.events) and not t.link.connected
        finally:
            nocert.close()
            wrong.close()
