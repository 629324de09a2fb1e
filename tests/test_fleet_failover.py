"""Terminals on a cluster: broker lists, the failover order and its jittered backoff, terminal ids that every
engine takes (checked against the pinned nats-server), and a real broker link moving to the next node."""

from __future__ import annotations

import queue
import random
import string
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from device.config import ConfigError, parse_config
from device.config.mqtt import MqttConfig
from device.transport.client import parse_broker_url
from device.transport.failover import Backoff, BrokerRing
from device.transport.link import Connected, Link, LinkEvent
from device.transport.topics import Topics, check_terminal_id
from tests.broker import free_port
from tests.nats_parts import Client311, nats_cluster, port_of, wait_for

URLS = [parse_broker_url(f"mqtt://127.0.0.1:{p}") for p in (1883, 1884, 1885)]


@given(st.floats(0.05, 5), st.floats(5, 120), st.integers(0, 40), st.integers(0, 2**32))
def test_backoff_grows_to_its_cap_with_jitter_never_below_half(min_s, max_s, attempts, seed) -> None:
    backoff = Backoff(min_s, max_s, random.Random(seed))
    delays = [backoff.next_delay() for _ in range(attempts + 1)]
    for n, delay in enumerate(delays):
        ceiling = min(max_s, min_s * 2**n)
        assert ceiling / 2 <= delay <= ceiling
    backoff.reset()
    assert min_s / 2 <= backoff.next_delay() <= min_s


def test_jitter_spreads_a_fleet_that_lost_a_node_at_once() -> None:
    firsts = [Backoff(0.5, 30, random.Random(i)).next_delay() for i in range(1000)]
    assert max(firsts) - min(firsts) > 0.2  # not all at the same instant
    assert len({round(d, 3) for d in firsts}) > 200


def test_terminals_spread_over_the_nodes_and_move_to_the_next() -> None:
    starts = [BrokerRing(URLS, f"t-{i:05d}").index for i in range(3000)]
    assert all(800 < starts.count(i) < 1200 for i in range(3))
    ring = BrokerRing(URLS, "gate-01")
    first = ring.current
    assert [ring.advance(), ring.advance(), ring.advance()][-1] == first
    assert BrokerRing(URLS, "gate-01").current == first  # the same node after a restart


def test_broker_list_in_the_config() -> None:
    cfg = parse_config({"mqtt": {"broker": ["mqtt://a:1883", "mqtt://b:1884"], "protocol": "3.1.1"}})
    assert [str(u) for u in cfg.mqtt.brokers] == ["mqtt://a:1883", "mqtt://b:1884"]
    assert cfg.mqtt.address.host == "a"
    for bad, why in (
        ([], "empty"),
        (["mqtt://a:1883", "mqtts://b:8883"], "all mqtt:// or all mqtts://"),
        (["mqtt://a:1883", "mqtt://a:1883"], "twice"),
        (["a:1883"], "no scheme"),
    ):
        with pytest.raises(ConfigError, match=why):
            parse_config({"mqtt": {"broker": bad}})
    assert parse_config({"mqtt": {"subscription_qos": 0}}).mqtt.subscription_qos == 0
    with pytest.raises(ConfigError):
        parse_config({"mqtt": {"subscription_qos": 2}})


# What NATS refuses in a client id or reads as a separator or wildcard in a subject, and what MQTT reserves.
FORBIDDEN = [" ", "\t", "\n", "\r", "\f", ".", "*", ">", "/", "+", "#", "\x7f", "\x00", "é"]


@pytest.mark.parametrize("char", FORBIDDEN)
def test_terminal_ids_with_what_nats_or_mqtt_reserve_are_refused(char: str) -> None:
    for tid in (f"gate{char}01", f"{char}gate"):
        with pytest.raises(ValueError, match="terminal id"):
            check_terminal_id(tid)
        with pytest.raises(ConfigError, match="NATS"):
            parse_config({"terminal_id": tid})


@settings(max_examples=200)
@given(st.text(string.ascii_letters + string.digits + "_-", min_size=1, max_size=64))
def test_accepted_ids_are_one_topic_level_and_one_subject_token(tid: str) -> None:
    try:
        check_terminal_id(tid)
    except ValueError:
        assert not tid[0].isalnum()
        return
    topic = Topics("faceonly", tid).event_face
    assert topic.split("/")[3] == tid
    from device.transport.natsmqtt import topic_to_subject

    assert topic_to_subject(topic).split(".")[3] == tid


def test_the_pinned_nats_server_refuses_what_the_id_rule_refuses(tmp_path: Path) -> None:
    """The rule checked against the server itself: an id it accepts connects, one with a '.' or '*' is refused."""
    with nats_cluster(tmp_path / "nats", nodes=1) as cluster:
        url = cluster.mqtt_urls[0]
        for ok in ("gate-01", "A_b-9", "x" * 64):
            client = Client311(url, check_terminal_id(ok), clean=False)
            assert client.result == "Success", ok
            client.close()
        for refused in ("gate.01", "gate*", "gate>"):
            with pytest.raises(ValueError):
                check_terminal_id(refused)
            client = Client311(url, refused, clean=False)
            assert client.result == "Client identifier not valid", refused
            client.close()


def test_a_terminal_link_moves_to_the_next_node_when_its_node_dies(tmp_path: Path) -> None:
    with nats_cluster(tmp_path / "nats") as cluster:
        dead = f"mqtt://127.0.0.1:{free_port()}"  # a node that never answers, in the list too
        config = MqttConfig(
            broker=[dead, *cluster.mqtt_urls],
            protocol="3.1.1",
            subscription_qos=0,
            reconnect_min_s=0.2,
            reconnect_max_s=1.0,
        )
        inbox: queue.Queue[LinkEvent] = queue.Queue()
        link = Link(config, "gate-01", Topics("faceonly", "gate-01"), inbox)
        link.start(lambda at: b'{"state": "online"}', lambda at: b'{"state": "offline"}')
        try:
            assert wait_for(lambda: link.connected, 20)
            first = link.broker
            node = next(n for n in cluster.nodes if str(port_of(n.mqtt_url)) in first)
            cluster.kill(node.name)
            assert wait_for(lambda: not link.connected, 10)
            assert wait_for(lambda: link.connected, 20), "no other node took the terminal"
            assert link.broker != first
            events = []
            while not inbox.empty():
                events.append(inbox.get_nowait())
            assert sum(isinstance(e, Connected) for e in events) >= 2
            # On the new node the terminal still gets its commands (QoS 0 subscription, persistent session).
            alive = next(n for n in cluster.nodes if n.running)
            sender = Client311(alive.mqtt_url, "ops-1")
            sender.publish("faceonly/v1/dev/gate-01/cmd/req/status", b"{}", qos=1)
            assert wait_for(lambda: link.commands_pending, 10)
            sender.close()
        finally:
            link.stop(b'{"state": "offline"}', 2.0)
