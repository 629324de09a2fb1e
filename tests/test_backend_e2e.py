"""Backend end to end: real mosquitto, real terminals on replays, two `faceonly backend` processes in one
shared-subscription group, the broker SIGKILLed and restarted twice (and PostgreSQL restarted too), on
SQLite and on PostgreSQL.

Every event id a terminal queued lands exactly once in the attendance store; injected duplicates, forged,
unsigned, expired, malformed and unknown-terminal events add no row and are counted in quarantine; both
instances took a share of the work; `GET /api/events` lists the records newest first.

Known broker limits, arranged for here: mosquitto 2.0.11 (Debian 12) does not restore `$share` subscriptions
from its persistence (checked: a persistent shared subscriber gets nothing published after a restart until it
subscribes again, a plain one does), so an event published after a restart and before any instance of the
group subscribed again is acknowledged and dropped by the broker; the backend reconnects within 0.1-1 s, the
terminals here back off 3-5 s. And mosquitto acknowledges a message before its persistence saved it, so the
second SIGKILL comes once everything is in, not within a terminal's reconnect burst.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from nacl.signing import SigningKey

from device.infra.modelstore import ModelError, ModelStore
from device.privacy.signing import Signer
from faceonly_backend.store import Store
from tests.backend_parts import BackendProc, TerminalProc, face_event, public_key, register, terminal_key
from tests.broker import Broker
from tests.conftest import missing_data
from tests.postgres import Postgres
from tests.replay_faces import make_replay

APPEARANCES = 30


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path: Path):
    """(target, the PostgreSQL server or None)."""
    if request.param == "sqlite":
        yield str(tmp_path / "attendance.sqlite"), None
    else:
        with Postgres() as pg:
            yield pg.url, pg


def _models_ready() -> None:
    try:
        ModelStore()
    except ModelError as exc:
        missing_data(f"models are not built in this checkout: {exc}")


def _publisher(broker: Broker) -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="injector", protocol=mqtt.MQTTv5)
    c.connect(broker.host, broker.port)
    c.loop_start()
    return c


def _inject(broker: Broker, injector: Signer, ghost: Signer) -> tuple[list[str], dict[str, int]]:
    """Publish hostile and valid events; returns (valid event ids, least quarantine count per reason)."""
    client = _publisher(broker)
    topic = "faceonly/v1/dev/{}/event/face"
    valid = [face_event("inj", injector) for _ in range(3)]
    forged = face_event("inj", injector)
    forged["observation"]["decision"] = "rejected"  # altered after signing
    hostile = [
        forged,
        face_event("inj", None),  # unsigned
        face_event("inj", injector, ttl_s=60, now=time.time() - 3600),  # expired an hour ago
    ]
    sent = [(topic.format("inj"), json.dumps(e)) for e in valid + hostile]
    sent += [(topic.format("ghost"), json.dumps(face_event("ghost", ghost)))]  # not registered
    sent += [(topic.format("inj"), json.dumps(e)) for e in valid * 2]  # each valid event twice more
    sent += [(topic.format("inj"), b"{not json")]
    for t, payload in sent:
        client.publish(t, payload, qos=1).wait_for_publish(10)
    client.disconnect()
    client.loop_stop()
    least = {
        "forged": 1,
        "unsigned": 1,
        "expired": 1,
        "unknown_terminal": 1,
        "duplicate": 6,
        "payload.not_json": 1,
    }
    return [e["id"] for e in valid], least


def _recorded(db: str, ids: set[str], timeout: float) -> bool:
    store = Store(db)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ids <= set(store.event_ids()):
                return True
            time.sleep(0.3)
        return False
    finally:
        store.close()


def test_exactly_once_two_instances_broker_killed(tmp_path: Path, db) -> None:
    _models_ready()
    db, pg = db
    broker = Broker(tmp_path / "mq")
    injector, ghost = Signer(SigningKey.generate()), Signer(SigningKey.generate())
    for tid in ("t1", "t2"):
        register(db, tid, terminal_key(tmp_path / f"state-{tid}"))
    register(db, "inj", public_key(injector))
    backends = [BackendProc(tmp_path, broker.url, db, name) for name in ("a", "b")]
    terminals: list[TerminalProc] = []
    try:
        for b in backends:
            assert b.wait_for(lambda b=b: "subscribed:" in b.text(), 20), b.text()
        for tid in ("t1", "t2"):
            replay = make_replay(tmp_path / f"replay-{tid}", APPEARANCES)
            # Terminals come back after the backends (see the module doc: mosquitto 2.0 and `$share`).
            terminals.append(TerminalProc(tmp_path, broker.url, tid, replay, reconnect_s=(3.0, 5.0)))
        valid, least = _inject(broker, injector, ghost)
        # 1. The broker is SIGKILLed while the terminals stream events.
        assert terminals[0].wait_for(lambda: len(terminals[0].queued()) >= 5, 60)
        broker.kill()
        time.sleep(1.0)
        broker.start()
        for t in terminals:
            assert t.wait_for(lambda t=t: "source finished" in t.text(), 120), t.text()[-3000:]
        queued = {e for t in terminals for e in t.queued()}
        assert _recorded(db, queued | set(valid), 60)
        # 2. Killed again once all is in; then more events (and their duplicates) through the restored
        # sessions. (Not within a terminal's reconnect burst: mosquitto acknowledges a message before its
        # persistence has saved it, so a SIGKILL a few ms later can lose it whoever the subscriber is.)
        broker.kill()
        time.sleep(1.0)
        broker.start()
        for b in backends:  # subscribed again (mosquitto does not restore `$share` subscriptions itself)
            assert b.wait_for(lambda b=b: b.text().count("subscribed:") >= 3, 20), b.text()[-2000:]
        more, more_least = _inject(broker, injector, ghost)
        valid += more
        least = {k: v + more_least[k] for k, v in least.items()}
        if pg is not None:
            # The database restarts too: batches wait (unacknowledged) and are written when it is back.
            pg.stop()
            time.sleep(2.0)
            pg.start()
        expected = set(valid) | {e for t in terminals for e in t.queued()}
        store = Store(db)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not expected <= set(store.event_ids()):
            time.sleep(0.3)
        time.sleep(1.5)  # anything late (a redelivery) would show now
        ids = store.event_ids()
        quarantine = store.quarantine()
        store.close()
        listed = backends[0].json("/api/events?limit=1000")
        shares = [b.json("/api/health")["recorded"] for b in backends]
    finally:
        for t in terminals:
            t.stop()
        for b in backends:
            b.stop()
        broker.kill()
    assert len(expected) == 2 * APPEARANCES + 6
    assert len(ids) == len(set(ids)) == len(expected), f"{len(ids)} rows for {len(expected)} events"
    assert set(ids) == expected
    for reason, count in least.items():
        assert quarantine.get(reason, 0) >= count, (reason, quarantine)
    assert all(share > 0 for share in shares), f"one instance did all the work: {shares}"
    assert [e["event_id"] for e in listed] and {e["event_id"] for e in listed} == expected
    assert all({"event_id", "terminal", "decision", "subject"} <= set(e) for e in listed)
    times = [e["created_at"] for e in listed]
    assert times == sorted(times, reverse=True)
