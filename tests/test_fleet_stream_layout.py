"""What faceonly relies on in NATS's MQTT layer, checked against the pinned nats-server on a 3-node cluster.

None of it is a stable NATS interface, so this test is the tripwire: it fails when a NATS release changes
where QoS 1 messages are stored (`$MQTT_msgs`, its subjects, replicas, retention), how a topic becomes a
subject, or what a stored message holds. Also shown here: why the backend's consumer must exist before the
terminals go live (the stream keeps a message only while a consumer wants it), and what a QoS 1 subscription
of a persistent session costs there (a replicated consumer each), which is why terminals subscribe at QoS 0
on NATS (docs/fleet.md).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from device.transport.natsmqtt import (
    MQTT_STREAM_PREFIX,
    stored_subject,
    subject_to_topic,
    topic_of_stored,
    topic_to_subject,
)
from faceonly_backend.jetstream import consumer_config, filter_subjects
from faceonly_backend.natscluster import MQTT_STREAM, NATS_SERVER_VERSION, find_nats_server
from faceonly_backend.natsconfig import NatsSection
from tests.nats_parts import Client311, nats_cluster, wait_for

PREFIX = "acme.site-1"  # a '.' in the prefix: NATS carries it as '//'


async def _read(servers: list[str], durable: str | None, subjects: list[str], n: int) -> list:
    import nats
    from nats.js.api import ConsumerConfig

    nc = await nats.connect(servers=servers)
    try:
        js = nc.jetstream()
        if durable is None:
            sub = await js.pull_subscribe(
                "", durable=None, stream=MQTT_STREAM, config=ConsumerConfig(filter_subjects=subjects)
            )
        else:
            sub = await js.pull_subscribe_bind(durable=durable, stream=MQTT_STREAM)
        out: list = []
        deadline = asyncio.get_running_loop().time() + 10
        while len(out) < n and asyncio.get_running_loop().time() < deadline:
            try:
                out += await sub.fetch(batch=n - len(out), timeout=2)
            except nats.errors.TimeoutError:
                continue
            except nats.js.errors.ServiceUnavailableError:  # a new consumer's leader not elected yet
                await asyncio.sleep(0.2)
        for msg in out:
            await msg.ack()
        return out
    finally:
        await nc.close()


async def _stored(servers: list[str], subject: str) -> int:
    """How many messages the stream holds on `subject`."""
    import nats

    nc = await nats.connect(servers=servers)
    try:
        info = await nc.jetstream().stream_info(MQTT_STREAM, subjects_filter=subject)
        return sum((info.state.subjects or {}).values())
    finally:
        await nc.close()


async def _stream_and_consumer(servers: list[str]) -> tuple:
    import nats

    nc = await nats.connect(servers=servers)
    try:
        js = nc.jetstream()
        info = await js.stream_info(MQTT_STREAM)
        made = await js.add_consumer(MQTT_STREAM, consumer_config(NatsSection(consumer="layout"), PREFIX))
        return info, made
    finally:
        await nc.close()


def test_the_pinned_server_is_the_one_installed() -> None:
    try:
        binary = find_nats_server()
    except Exception as exc:  # noqa: BLE001 - reported as the missing prerequisite it is
        pytest.skip(str(exc))
    assert binary.name == "nats-server" and NATS_SERVER_VERSION == "2.15.1"


def test_topic_subject_mapping() -> None:
    assert topic_to_subject("acme.site-1/v1/dev/+/event/face") == "acme//site-1.v1.dev.*.event.face"
    assert topic_to_subject("a/#") == "a.>"
    assert (
        subject_to_topic("acme//site-1.v1.dev.gate-01.event.face") == "acme.site-1/v1/dev/gate-01/event/face"
    )
    assert topic_of_stored("$MQTT.msgs.a.b") == "a/b" and topic_of_stored("other.a") is None
    with pytest.raises(ValueError):
        topic_to_subject("a//b")


def test_mqtt_msgs_layout_on_a_three_node_cluster(tmp_path: Path) -> None:
    with nats_cluster(tmp_path / "nats") as cluster:
        terminal = Client311(cluster.mqtt_urls[0], "gate-01", clean=False)
        assert terminal.result == "Success"
        servers = cluster.nats_urls
        info, made = asyncio.run(_stream_and_consumer(servers))
        # The stream: name, what it stores, where, how long, how many copies.
        assert info.config.name == MQTT_STREAM
        assert info.config.subjects == [MQTT_STREAM_PREFIX + ">"]
        assert info.config.retention == "interest"
        assert info.config.storage == "file"
        assert info.config.num_replicas == 3
        assert sorted(made.config.filter_subjects) == sorted(filter_subjects(PREFIX))
        assert made.config.num_replicas in (0, 3)  # inherits the stream's: an interest stream demands it

        topic = f"{PREFIX}/v1/dev/gate-01/event/face"
        payload = json.dumps({"id": "e1", "bytes": "\u00e9\u00e8"}).encode()
        terminal.publish(topic, payload, qos=1)  # PUBACKed: stored on a quorum before the ack
        assert asyncio.run(_stored(servers, stored_subject(topic))) == 1  # kept: the consumer wants it
        got = asyncio.run(_read(servers, "layout", [], 1))
        assert len(got) == 1
        msg = got[0]
        assert msg.subject == stored_subject(topic) == "$MQTT.msgs.acme//site-1.v1.dev.gate-01.event.face"
        assert topic_of_stored(msg.subject) == topic
        assert msg.data == payload  # the MQTT payload as it was, byte for byte
        assert msg.metadata.stream == MQTT_STREAM and msg.metadata.num_delivered == 1
        assert "Nmqtt-Pub" in (msg.headers or {})  # the layer's own header (QoS and flags): its marker

        # Interest retention: a message stored while no consumer wants it is gone. A consumer made
        # afterwards, even one that asks for everything from the start, never sees it.
        lost = f"{PREFIX}/v1/dev/gate-01/doctor"  # no consumer's filter takes it
        terminal.publish(lost, b'{"before": "any consumer"}', qos=1)
        # Dropped once the replicas have applied it, which on a busy machine can come a moment after the
        # PUBACK: a consumer made inside that moment would still be handed the message (seen once in CI).
        assert wait_for(lambda: asyncio.run(_stored(servers, stored_subject(lost))) == 0, 15)
        later = asyncio.run(_read(servers, None, [stored_subject(lost)], 1))
        assert later == []
        terminal.close()


def test_a_qos1_subscription_of_a_persistent_session_is_a_replicated_consumer(tmp_path: Path) -> None:
    """Why terminals subscribe at QoS 0 on NATS: each QoS 1 subscription of a persistent session becomes a
    durable JetStream consumer replicated on every node (its own Raft group); at QoS 0 there is none."""
    with nats_cluster(tmp_path / "nats") as cluster:

        def consumers() -> int:
            return sum(int(n.monitor("jsz").get("consumers") or 0) for n in cluster.nodes) // 3

        base = consumers()
        at_qos0 = Client311(cluster.mqtt_urls[1], "t-qos0", clean=False)
        for topic in ("faceonly/v1/dev/t-qos0/cmd/req/+", "faceonly/v1/dev/t-qos0/config/desired"):
            at_qos0.subscribe(topic, qos=0)
        assert consumers() == base
        at_qos1 = Client311(cluster.mqtt_urls[2], "t-qos1", clean=False)
        for topic in ("faceonly/v1/dev/t-qos1/cmd/req/+", "faceonly/v1/dev/t-qos1/config/desired"):
            at_qos1.subscribe(topic, qos=1)
        # Each consumer is a Raft group to elect: on a loaded 2-core machine that has taken over 20 s.
        assert wait_for(lambda: consumers() == base + 2, 60), [n.monitor("jsz") for n in cluster.nodes]
        jsz = cluster.nodes[0].monitor("jsz?consumers=true&accounts=true")
        assert int(jsz["ha_assets"]) >= 2 + 3  # each consumer a Raft group of its own, besides the streams'
        # A command published at QoS 1 reaches the QoS 0 subscriber (delivered at QoS 0) while it is online.
        sender = Client311(cluster.mqtt_urls[0], "backend-x")
        sender.publish("faceonly/v1/dev/t-qos0/cmd/req/status", b"{}", qos=1)
        assert at_qos0.next(10).payload == b"{}"
        for c in (at_qos0, at_qos1, sender):
            c.close()
