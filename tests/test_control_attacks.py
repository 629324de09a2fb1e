"""The attacks of issue 11 against a running terminal and a real mosquitto: each refused, no effect.

An attacker here has publish rights on the broker and nothing else (no command key); the operator
has the key (tests/control_keys.py). Replies come back on `<base>/cmd/res/fz` (Requester).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from tests.broker import Broker
from tests.control_keys import CommandKey
from tests.replay_faces import make_replay
from tests.test_transport_service import BASE, Backend, Requester, Terminal, _models_ready


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory):
    _models_ready()
    tmp = tmp_path_factory.mktemp("attacks")
    broker = Broker(tmp / "mq")
    key = CommandKey.generate(tmp / "key")
    term = Terminal(tmp, broker, make_replay(tmp / "replay", 2), conf_extra=key.toml())
    req = Requester(broker)
    assert term.wait_for(lambda: "source finished" in term.text(), 60)
    yield term, req, key, broker
    assert term.stop() == 0
    req.client.disconnect()
    req.client.loop_stop()
    broker.kill()


def _send(req: Requester, name: str, payload: bytes) -> dict:
    return req.send(f"{BASE}/cmd/req/{name}", payload, uuid.uuid4().bytes)


def _config(req: Requester) -> dict:
    return _send(req, "config.get", b"{}")["result"]["config"]


def test_unsigned_config_set_is_refused(running) -> None:
    _, req, _, _ = running
    before = _config(req)
    reply = _send(
        req, "config.set", json.dumps({"args": {"config": {"service": {"health_interval_s": 9}}}}).encode()
    )
    assert reply["error"]["code"] == "unauthenticated"
    assert _config(req) == before


def test_switching_liveness_off_is_refused_even_signed(running) -> None:
    _, req, key, _ = running
    off = {"config": {"vision": {"liveness": {"policy": "off"}}}}
    reply = _send(req, "config.set", key.request("config.set", off))
    assert reply["error"]["code"] == "invalid_config"
    assert "vision.liveness.policy: not settable remotely" in reply["error"]["details"][0]
    assert _config(req)["vision"]["liveness"]["policy"] == "challenge"


def test_desired_must_be_signed_and_allowed(running, tmp_path: Path) -> None:
    """Nothing but an authenticated config/desired gets a (retained) config/reported answer: unreadable,
    unsigned and forged ones are refused silently and counted in health; a signed one that asks for what
    may not be set remotely is answered with the problem. The running config stays throughout."""
    term, req, key, broker = running
    before = _config(req)
    reported: list[dict] = []
    health: list[dict] = []
    got = threading.Event()

    def on_message(client, userdata, msg) -> None:
        if msg.topic.endswith("/health"):
            health.append(json.loads(msg.payload))
        else:
            reported.append(json.loads(msg.payload))
            got.set()

    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="desired-watch", protocol=mqtt.MQTTv5)
    sub.on_message = on_message
    sub.connect(broker.host, broker.port)
    sub.subscribe([(f"{BASE}/config/reported", 1), (f"{BASE}/health", 0)])
    sub.loop_start()
    time.sleep(0.5)  # the retained config/reported of the terminal's start has arrived
    reported.clear()
    got.clear()
    try:
        change = {"service": {"health_interval_s": 9}}
        forger = CommandKey.generate(tmp_path / "forger")
        hostile = [
            json.dumps({"schema": 1, "version": 11, "config": change}).encode(),  # unsigned
            forger.desired(change, 11),  # signed by a key the terminal does not trust
            b"[" * 100_000,
            b'{"schema": 1, "version": 11, "config": ' + b"[" * 600 + b"]" * 600 + b"}",
            b"\xff\xfe not UTF-8",
        ]
        for payload in hostile:
            req.client.publish(f"{BASE}/config/desired", payload, qos=1, retain=True).wait_for_publish(5)
        # Then the backend's own, signed, asking for what may not be set remotely: the first answer is its.
        req.client.publish(
            f"{BASE}/config/desired",
            key.desired({"vision": {"liveness": {"policy": "off"}}}, 11),
            qos=1,
            retain=True,
        )
        assert got.wait(10), "no config/reported for the signed desired config"
        first = reported[0]
        assert first["desired_version"] == 11 and first["applied"] is False
        assert "not settable remotely" in first["problems"][0]
        assert len(reported) == 1, reported
        # 100,000 brackets are beyond mqtt.max_command_bytes (64 KiB) before they are too deep.
        refused = {"unauthenticated": 2, "payload.too_large": 1, "payload.too_deep": 1, "payload.not_utf8": 1}
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (not health or health[-1]["config_desired_refused"] != refused):
            time.sleep(0.2)
        assert health[-1]["config_desired_refused"] == refused
        assert _config(req) == before
    finally:
        req.client.publish(f"{BASE}/config/desired", b"", qos=1, retain=True)  # clear the retained one
        sub.disconnect()
        sub.loop_stop()
    assert term.proc.poll() is None


def test_replayed_and_expired_signed_commands_are_refused(running) -> None:
    _, req, key, _ = running
    change = {"config": {"service": {"health_interval_s": 2}}}
    signed = key.request("config.set", change)
    assert _send(req, "config.set", signed)["ok"]
    assert _send(req, "config.set", signed)["error"]["code"] == "replayed"
    month_ago = time.time() - 30 * 86400
    stale = key.request("config.set", {"config": {"service": {"health_interval_s": 3}}}, now=month_ago)
    assert _send(req, "config.set", stale)["error"]["code"] == "expired"
    assert _config(req)["service"]["health_interval_s"] == 2


@pytest.mark.parametrize("own", ["event/face", "status", "config/desired", "cmd/req/restart"])
def test_a_reply_aimed_at_the_terminals_own_topics_is_refused(running, own: str) -> None:
    _, req, _, broker = running
    seen: list[bytes] = []
    spy = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=f"spy-{uuid.uuid4().hex[:6]}", protocol=mqtt.MQTTv5
    )
    ready = threading.Event()
    spy.on_subscribe = lambda *a: ready.set()
    spy.on_message = lambda c, u, m: None if m.retain else seen.append(bytes(m.payload))
    spy.connect(broker.host, broker.port)
    spy.subscribe(f"{BASE}/{own}", 1)
    spy.loop_start()
    assert ready.wait(5)
    replies: list[dict] = []
    got = threading.Event()
    res = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=f"res-{uuid.uuid4().hex[:6]}", protocol=mqtt.MQTTv5
    )
    res.on_message = lambda c, u, m: (replies.append(json.loads(m.payload)), got.set())
    res.connect(broker.host, broker.port)
    res.subscribe(f"{BASE}/cmd/res", 1)
    res.loop_start()
    try:
        time.sleep(0.3)
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = f"{BASE}/{own}"
        props.CorrelationData = b"aimed"
        req.client.publish(f"{BASE}/cmd/req/status", b"{}", qos=1, properties=props)
        assert got.wait(10), "the refusal did not arrive on cmd/res"
        assert replies[-1]["error"]["code"] == "bad_reply_topic"
        time.sleep(0.5)
        assert seen == [], seen
        health = _send(req, "status", b"{}")
        assert health["ok"]
    finally:
        for c in (spy, res):
            c.disconnect()
            c.loop_stop()


def test_brick_attempt_and_the_terminal_comes_back(running) -> None:
    term, req, key, _ = running
    brick = {"config": {"vision": {"source": "replay:/nonexistent"}}}
    reply = _send(req, "config.set", key.request("config.set", brick))
    assert reply["error"]["code"] == "invalid_config"
    assert _send(req, "restart", key.request("restart", {"reason": "brick attempt"}))["ok"]
    assert term.wait_for(lambda: term.text().count("source finished") >= 2, 60)
    status = _send(req, "status", b"{}")
    assert status["ok"] and status["result"]["state"] == "online" and status["result"]["uptime_s"] < 60


def test_retained_commands_never_run_and_stored_brick_is_set_aside(tmp_path: Path) -> None:
    """A backlog waits in the outbox; a retained, validly signed `outbox.purge` and `restart` wait on
    the broker, and a stored override points the source at nothing. The next start: the terminal
    comes up on its file config, refuses both retained requests, delivers the whole backlog."""
    _models_ready()
    broker = Broker(tmp_path / "mq")
    key = CommandKey.generate(tmp_path / "key")
    backend = Backend(broker)
    broker.stop()  # an outage: run 1 queues everything in its outbox
    first = Terminal(tmp_path, broker, make_replay(tmp_path / "r1", 4), conf_extra=key.toml())
    try:
        assert first.wait_for(lambda: "source finished" in first.text(), 60)
        backlog = first.queued()
        assert first.stop() == 0
    finally:
        if first.proc.poll() is None:
            first.kill()
    assert len(backlog) == 4
    (tmp_path / "state" / "config-overrides.json").write_text(
        json.dumps({"version": 5, "overrides": {"vision": {"source": "replay:/nonexistent"}}})
    )
    broker.start()
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="attacker", protocol=mqtt.MQTTv5)
    pub.connect(broker.host, broker.port)
    pub.loop_start()
    for name in ("outbox.purge", "restart"):
        body = json.loads(key.request(name, ttl_s=120))
        body["reply_to"] = f"{BASE}/cmd/res/retained"
        pub.publish(f"{BASE}/cmd/req/{name}", json.dumps(body), qos=1, retain=True).wait_for_publish(5)
    second = Terminal(tmp_path, broker, make_replay(tmp_path / "r2", 1), conf_extra=key.toml())
    try:
        assert second.wait_for(lambda: set(backlog) <= backend.event_ids(), 60), "backlog not delivered"
        assert second.wait_for(lambda: len(backend.payloads("/cmd/res/retained")) >= 2, 20)
        codes = sorted(p["error"]["code"] for p in backend.payloads("/cmd/res/retained"))
        assert codes == ["retained", "retained"]
        assert second.wait_for(lambda: "source finished" in second.text(), 60)
        time.sleep(1.0)
        text = second.text()
        assert "restart requested" not in text and "restarting: exec" not in text
        assert "stored remote config not applied" in text and "vision.source" in text
        health = [h for h in backend.payloads("/health") if "config_problem" in h]
        assert health and "vision.source" in health[-1]["config_problem"]
        assert health[-1]["outbox"].get("purged", 0) == 0
        status = [s for s in backend.payloads("/status") if s.get("state") == "online"][-1]
        assert "vision.source" in status["config_problem"]
        assert second.stop() == 0
    finally:
        for name in ("outbox.purge", "restart"):
            pub.publish(f"{BASE}/cmd/req/{name}", b"", qos=1, retain=True)
        pub.disconnect()
        pub.loop_stop()
        backend.close()
        if second.proc.poll() is None:
            second.kill()
        broker.kill()
