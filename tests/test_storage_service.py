"""Storage bad days end to end: `faceonly run` (real models, real pipeline) against real mosquitto, its
state dir on a small tmpfs that fills up or is remounted read-only under it."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import paho.mqtt.client as mqtt

from tests.broker import Broker
from tests.replay_faces import make_replay
from tests.test_transport_service import BASE, Backend, Requester, Terminal, _models_ready
from tests.tmpfs import tmpfs


def _reap(*terminals: Terminal) -> None:
    """A failed assertion must not leave a service running behind the test."""
    for t in terminals:
        if t.proc.poll() is None:
            t.proc.kill()
            t.proc.wait(10)


def _health(backend: Backend) -> list[dict]:
    return backend.payloads("/health")


def _publish(broker: Broker, topic: str, payload: bytes, retain: bool = False) -> None:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="operator", protocol=mqtt.MQTTv5)
    c.connect(broker.host, broker.port)
    c.loop_start()
    c.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)
    c.loop_stop()
    c.disconnect()


def test_outage_on_a_small_tmpfs_drops_the_oldest_counts_it_and_survives_a_full_disk(tmp_path: Path) -> None:
    _models_ready()
    replay = make_replay(tmp_path / "replay", 40)
    broker = Broker(tmp_path / "mq")
    backend = Backend(broker)
    broker.stop()  # the outage (a clean stop keeps the backend's persistent session)
    with tmpfs(tmp_path / "state", "128k") as fs:  # records of ~1 KB take a 4 KB page each
        t = Terminal(tmp_path, broker, replay, conf_extra="[outbox]\nreserve_bytes = 32768\n")
        try:
            assert t.wait_for(lambda: "source finished" in t.text(), 90)
            assert len(t.queued()) == 40, t.text()[-3000:]
            assert fs.free_bytes() >= 32768 - 8192  # the reserve held (within a page or two)
            sizes = [p.stat().st_size for p in (fs.path / "outbox").glob("*.evt")]
            print(f"outbox: {len(sizes)} records of {min(sizes)}..{max(sizes)} bytes")
            broker.start()
            assert t.wait_for(lambda: any(h["outbox"]["depth"] == 0 for h in _health(backend)), 30)
            drained = [h for h in _health(backend) if h["outbox"]["depth"] == 0][-1]["outbox"]
            delivered = backend.event_ids()
            kept = len(delivered)
            print(f"tmpfs 128k, reserve 32k: 40 events, {kept} kept and delivered, {40 - kept} expired")
            assert 0 < kept < 40
            assert delivered == set(t.queued()[-kept:]), "not the oldest that were dropped"
            assert drained["expired_space"] == 40 - kept and drained["storage_fault"] is None
            # Now someone fills the disk, and a config/desired arrives: it is refused, nothing crashes.
            fs.fill()
            desired = {"schema": 1, "version": 7, "config": {"service": {"health_interval_s": 0.7}}}
            _publish(broker, f"{BASE}/config/desired", json.dumps(desired).encode(), retain=True)
            before = len(_health(backend))
            assert t.wait_for(lambda: len(_health(backend)) > before + 3, 20)
            assert t.proc.poll() is None
            assert t.stop() == 0, t.text()[-3000:]
        finally:
            _reap(t)
            backend.close()
            broker.kill()
            fs.unfill()


def test_starting_on_a_full_disk_drains_the_backlog(tmp_path: Path) -> None:
    _models_ready()
    broker = Broker(tmp_path / "mq")
    backend = Backend(broker)
    broker.stop()
    with tmpfs(tmp_path / "state", "1m") as fs:
        no_reserve = "[outbox]\nreserve_bytes = 0\n"
        t = again = Terminal(tmp_path, broker, make_replay(tmp_path / "r1", 6), conf_extra=no_reserve)
        try:
            assert t.wait_for(lambda: "source finished" in t.text(), 90)
            assert t.stop() == 0
            kept = set(t.queued())
            assert len(list((fs.path / "outbox").glob("*.evt"))) == len(kept) > 0
            (fs.path / "outbox" / "x.evt").mkdir()  # not a record: it used to prevent the start
            fs.fill()  # full to the last byte
            again = Terminal(tmp_path, broker, make_replay(tmp_path / "r2", 3), conf_extra=no_reserve)
            broker.start()
            assert again.wait_for(lambda: kept <= backend.event_ids(), 60), again.text()[-3000:]
            assert again.wait_for(lambda: "source finished" in again.text(), 60)
            assert "x.evt is not an outbox record; skipped" in again.text()
            assert again.stop() == 0, again.text()[-3000:]
        finally:
            _reap(t, again)
            backend.close()
            broker.kill()
            fs.unfill()


def test_read_only_remount_mid_backlog_holds_in_memory_alarms_and_delivers_everything(tmp_path: Path) -> None:
    _models_ready()
    replay = make_replay(tmp_path / "replay", 60)
    broker = Broker(tmp_path / "mq")
    backend = Backend(broker)
    counts: Counter[str] = Counter()
    broker.stop()
    with tmpfs(tmp_path / "state", "8m") as fs:
        t = Terminal(tmp_path, broker, replay, conf_extra="[outbox]\nreserve_bytes = 0\n")
        try:
            assert t.wait_for(lambda: len(t.queued()) >= 8, 90)  # a backlog on disk
            fs.read_only()
            on_disk = len(list((fs.path / "outbox").glob("*.evt")))
            assert t.wait_for(lambda: len(t.queued()) >= on_disk + 8, 90)  # more, held in memory
            assert "state storage failing" in t.text() and "Read-only file system" in t.text()
            broker.start()  # acks arrive while the disk is read-only: the crash of the past
            assert t.wait_for(lambda: any(h["outbox"]["storage_fault"] for h in _health(backend)), 30)
            alarm = next(h for h in _health(backend) if h["outbox"]["storage_fault"])["outbox"]
            assert "Read-only file system" in alarm["storage_fault"] and "held" in alarm
            requester = Requester(broker)
            try:
                reply = requester.send(f"{BASE}/cmd/req/status", b"{}", b"status-ro")
            finally:
                requester.client.disconnect()
                requester.client.loop_stop()
            assert "Read-only file system" in reply["result"]["outbox"]["storage_fault"], reply
            assert t.wait_for(lambda: "source finished" in t.text(), 120)
            fs.read_write()
            queued = set(t.queued())
            assert t.wait_for(lambda: queued <= backend.event_ids(), 60), "an event was not delivered"
            assert t.wait_for(
                lambda: any(
                    h["outbox"]["depth"] == 0 and h["outbox"]["storage_fault"] is None
                    for h in _health(backend)
                ),
                30,
            )
            assert "storage works again" in t.text()
            assert t.stop() == 0, t.text()[-3000:]
            assert not list((fs.path / "outbox").glob("*.evt")), "acked records left on disk: resent later"
            counts.update(p["id"] for p in backend.payloads("/event/face"))
            dups = sum(n - 1 for n in counts.values())
            print(f"read-only remount: {len(queued)} events, all delivered, {dups} duplicates")
            assert dups <= 50  # the in-flight window
        finally:
            _reap(t)
            backend.close()
            broker.kill()
