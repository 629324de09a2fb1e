"""Identity end to end: real mosquitto, real models, real faces (LFW photos through the replay source).

A gallery is built from photos with `faceonly gallery build` and pushed with `faceonly gallery push`
(chunked); the terminal (the real Service, in-process so that the gpio gate runs on gpiozero's
MockFactory) then sees, in a recorded-pace replay: an enrolled person (enroll command answered with his
template), the same person again (match, no embedding), a person not enrolled (unknown, with embedding).
The gate pulses exactly once. An enroll with no face coming is answered `timeout`.
"""

from __future__ import annotations

import base64
import itertools
import json
import queue
import shutil
import threading
import time
import uuid
from pathlib import Path

import cv2
import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from device.cli import main
from device.privacy.terminalseal import seal_for_terminal
from tests.api_schemas import errors
from tests.broker import Broker
from tests.control_keys import CommandKey
from tests.vision_helpers import model_store

TID = "gate-01"
BASE = f"faceonly/v1/dev/{TID}"
LFW = "verification/lfw/lfw-deepfunneled"
FPS = 10.0
ENROLLED, OTHER = "Tony_Blair", "Silvio_Berlusconi"
PROBE = "Tony_Blair_0086.jpg"  # not one of the gallery photos
STRANGER = ("Naomi_Campbell", "Naomi_Campbell_0001.jpg")  # not enrolled


class Backend:
    def __init__(self, broker: Broker) -> None:
        self.messages: list[tuple[str, dict]] = []
        self.replies: queue.Queue[dict] = queue.Queue()
        self.lock = threading.Lock()
        self.reply_topic = f"{BASE}/cmd/res/backend"
        ready = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="backend", protocol=mqtt.MQTTv5)
        c.on_message = self._on_message
        c.on_subscribe = lambda *a: ready.set()
        c.connect(broker.host, broker.port)
        c.subscribe([(f"{BASE}/#", 1)])
        c.loop_start()
        assert ready.wait(5)
        self.client = c

    def _on_message(self, client, userdata, msg) -> None:
        if not msg.payload:
            return
        body = json.loads(msg.payload)
        with self.lock:
            self.messages.append((msg.topic, body))
        if msg.topic == self.reply_topic:
            self.replies.put(body)

    def of(self, suffix: str) -> list[dict]:
        with self.lock:
            return [b for t, b in self.messages if t.endswith(suffix)]

    def send(self, name: str, args: dict, timeout_s: float = 60.0, key=None) -> None:
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = self.reply_topic
        props.CorrelationData = uuid.uuid4().hex.encode()
        now = time.time()
        request = {
            "schema": 1,
            "id": str(uuid.uuid4()),
            "type": "command.request",
            "sent_at": now,
            "expires_at": now + timeout_s,
            "args": args,
        }
        if key is not None:
            request.update(key.fields(name, args, terminal=TID, ttl_s=timeout_s))
        self.client.publish(f"{BASE}/cmd/req/{name}", json.dumps(request), qos=1, properties=props)

    def wait(self, pred, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred():
                return True
            time.sleep(0.1)
        return False

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _replay(
    folder: Path, appearances: list[Path | None], lead_s: float, face_s: float = 1.0, gap_s: float = 2.5
) -> Path:
    """Frames at recorded pace: `lead_s` of empty frames, then each photo pasted for `face_s`, with gaps."""
    folder.mkdir(parents=True)
    empty = np.full((300, 400, 3), 96, np.uint8)
    cv2.imwrite(str(folder / "empty.png"), empty)
    frames, t = [], 0.0

    def hold(name: str, seconds: float) -> None:
        nonlocal t
        for _ in range(int(seconds * FPS)):
            frames.append({"file": name, "t": round(t, 3)})
            t += 1 / FPS

    hold("empty.png", lead_s)
    for k, photo in enumerate(appearances):
        if photo is not None:
            frame = empty.copy()
            frame[25:275, 75:325] = cv2.imread(str(photo))
            cv2.imwrite(str(folder / f"face{k}.png"), frame)
            hold(f"face{k}.png", face_s)
        hold("empty.png", gap_s)
    (folder / "replay.json").write_text(json.dumps({"format": 1, "frames": frames}))
    return folder


def _config(tmp: Path, broker: Broker, replay: Path, pub: Path, pace: str, key: CommandKey) -> Path:
    conf = tmp / f"terminal-{replay.name}.toml"
    conf.write_text(
        f'terminal_id = "{TID}"\n[service]\nstate_dir = "{tmp / "state"}"\nhealth_interval_s = 1.0\n'
        f'[mqtt]\nbroker = "{broker.url}"\nreconnect_min_s = 0.2\nreconnect_max_s = 1.0\n'
        f'[vision]\nsource = "replay:{replay}"\nreplay_pace = "{pace}"\n'
        '[vision.liveness]\npolicy = "off"\n'
        f'[identity]\ngallery_public_key_file = "{pub}"\nfalse_accept_per_search = 1e-3\n'
        '[gate]\nkind = "gpio"\ngpio_pin = 17\npulse_s = 0.05\n'
        "[homeassistant]\nenabled = true\nexpose_subject = true\n" + key.toml()
    )
    return conf


def _terminal_key(tmp: Path) -> bytes:
    """The terminal's public key (what a backend pins with `backend terminals add`): updates are sealed to it."""
    from device.privacy.signing import load_signer

    return load_signer(tmp / "state" / "signing.key")[0].public_key


class Terminal:
    """The real Service in a thread (gpiozero's pin factory is the test's MockFactory)."""

    def __init__(self, conf: Path) -> None:
        from device.config import load_config
        from device.runtime.compose import build
        from device.runtime.lifecycle import Lifecycle
        from device.runtime.runtime_config import RuntimeConfig
        from device.runtime.service import Service

        cfg = load_config(conf)
        self.lifecycle = Lifecycle()
        self.service = Service(RuntimeConfig(cfg), build(cfg), self.lifecycle, lambda: cfg)
        self.thread = threading.Thread(target=self.service.run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.lifecycle._on_stop(15, None)
        self.thread.join(60)
        assert not self.thread.is_alive()


@pytest.fixture
def rig(shared_data, tmp_path):
    model_store()
    from gpiozero import Device
    from gpiozero.pins.mock import MockFactory

    Device.pin_factory = MockFactory()
    photos = tmp_path / "photos"
    for sid, person, n in (("tony", ENROLLED, 3), ("silvio", OTHER, 2)):
        (photos / sid).mkdir(parents=True)
        for src in sorted((shared_data / LFW / person).glob("*.jpg"))[:n]:
            shutil.copy(src, photos / sid / src.name)
    (photos / "tony" / "display_name.txt").write_text("Tony B.")
    assert main(["gallery", "keygen", "--out", str(tmp_path / "gallery.key")]) == 0
    assert (
        main(
            [
                "gallery",
                "build",
                "--photos",
                str(photos),
                "--key",
                str(tmp_path / "gallery.key"),
                "--out",
                str(tmp_path / "v1.fog"),
            ]
        )
        == 0
    )
    with Broker(tmp_path / "mosq") as broker:
        backend = Backend(broker)
        yield tmp_path, broker, backend, Device.pin_factory.pin(17)
        backend.close()
    Device.pin_factory.close()
    Device.pin_factory = None


def _rising(pin) -> int:
    states = [s.state for s in pin.states]
    return sum(1 for a, b in itertools.pairwise(states) if not a and b)


@pytest.fixture
def subscribed(monkeypatch) -> list[tuple[str, int]]:
    """(topic, qos) of every subscription made in this process, through the real client."""
    made: list[tuple[str, int]] = []
    real_subscribe = mqtt.Client.subscribe

    def subscribe(client, topic, qos=0, *args, **kwargs):
        made.append((topic, qos))
        return real_subscribe(client, topic, qos, *args, **kwargs)

    monkeypatch.setattr(mqtt.Client, "subscribe", subscribe)
    return made


@pytest.mark.slow
def test_push_enroll_match_unknown_and_gate(rig, shared_data, subscribed):  # noqa: PLR0915 - one terminal walked through push, enrol, match and gate
    tmp, broker, backend, pin = rig
    pub = tmp / "gallery.key.pub"
    key = CommandKey.generate(tmp / "ops")
    # 1. A terminal with no face in view: the gallery is pushed (chunked) and an enroll times out.
    idle = _replay(tmp / "idle", [], lead_s=1.0)
    terminal = Terminal(_config(tmp, broker, idle, pub, "fast", key))
    try:
        assert backend.wait(lambda: any(s.get("state") == "online" for s in backend.of("/status")), 30)
        push = ["gallery", "push", "--broker", broker.url, "--id", TID, "--file", str(tmp / "v1.fog"),
                "--terminal-key", base64.b64encode(_terminal_key(tmp)).decode()]  # fmt: skip
        assert main(push) == 1  # not signed by the command key: refused, whatever the gallery's own signature
        assert main([*push, "--sign-key", str(key.private_file), "--reply-qos", "0"]) == 0  # as on NATS
        assert [qos for topic, qos in subscribed if "/cmd/res/push-" in topic] == [1, 0]
        backend.send("gallery.list", {"ids": True})
        listed = backend.replies.get(timeout=30)
        assert (
            listed["ok"]
            and listed["result"]["ids"] == ["silvio", "tony"]
            and listed["result"]["version"] == 1
        )
        backend.send("enroll", {"subject": "new", "timeout_s": 2})
        unsigned = backend.replies.get(timeout=30)
        assert not unsigned["ok"] and unsigned["error"]["code"] == "unauthenticated"
        backend.send("enroll", {"subject": "new", "timeout_s": 2}, key=key)
        timed_out = backend.replies.get(timeout=30)
        assert not timed_out["ok"] and timed_out["error"].get("details") == {"reason": "timeout"}, timed_out
    finally:
        terminal.stop()

    # 2. Restarted (the gallery loads, decrypted and verified, from the state dir): enroll, match, unknown.
    faces = [tmp / "probe.jpg", tmp / "probe.jpg", shared_data / LFW / STRANGER[0] / STRANGER[1]]
    shutil.copy(shared_data / LFW / ENROLLED / PROBE, faces[0])
    replay = _replay(tmp / "faces", faces, lead_s=6.0)
    terminal = Terminal(_config(tmp, broker, replay, pub, "recorded", key))
    try:
        status = terminal.service.status()["identity"]
        assert status["version"] == 1 and status["count"] == 2
        # One mean template per subject (gallery build's default), at the threshold of the mean-of-3 curve.
        assert status["threshold"]["comparisons"] == 2 and status["templates_averaged"] == [2, 3]
        assert not status["threshold"]["clamped"]
        name = {"display_name_sealed": seal_for_terminal(_terminal_key(tmp), b"Tony Two")}  # sealed to it
        backend.send("enroll", {"subject": "tony2", **name, "timeout_s": 30}, key=key)
        enrolled = backend.replies.get(timeout=60)
        assert enrolled["ok"], enrolled
        assert enrolled["result"]["subject"] == "tony2" and "embedding" in enrolled["result"]["biometric"]
        assert backend.wait(lambda: len(backend.of("/event/face")) >= 3, 90)
    finally:
        terminal.stop()
    events = backend.of("/event/face")
    matched = [e for e in events if e.get("match", {}).get("subject") == "tony"]
    unknown = [e for e in events if "match" in e and e["match"]["subject"] is None]
    assert len(matched) == 1 and len(unknown) == 1, [e.get("match") for e in events]
    m = matched[0]
    assert m["match"]["score"] > m["match"]["threshold"] and m["match"]["gallery_version"] == 1
    assert "embedding" not in m["biometric"] and "thumbnail" not in m["biometric"]
    assert "Tony B." not in json.dumps(events)
    ha_states = backend.of("/ha/state")  # Home Assistant's view: the subject id as the event has it
    assert "tony" in [s["subject"] for s in ha_states] and "Tony B." not in json.dumps(ha_states)
    assert "embedding" in unknown[0]["biometric"]
    assert _rising(pin) == 1  # the gate opened for the match, never for the unknown
    prompts = [p["code"] for p in backend.of("/prompt")]
    assert {"enrol.started", "enrol.done", "result.welcome", "result.not_recognised"} <= set(prompts)
    # No personal text on the wire: no prompt, no reply, no status names anyone (only the screen does).
    sent = [body for topic, body in backend.messages if "/cmd/req/" not in topic]
    assert "Tony B." not in json.dumps(sent) and '"T"' not in json.dumps(sent)
    for topic, body in backend.messages:
        if body.get("type") in ("event.face", "status", "prompt", "command.reply"):
            assert not errors(body), (topic, errors(body))
    births = [s for s in backend.of("/status") if s.get("state") == "online"]
    assert births[-1]["gallery"]["version"] == 1 and births[-1]["gallery"]["count"] == 2


@pytest.fixture
def bare_rig(tmp_path):
    """Broker, gallery key and command key, no photos: galleries made of random unit templates."""
    model_store()
    from gpiozero import Device
    from gpiozero.pins.mock import MockFactory

    Device.pin_factory = MockFactory()
    assert main(["gallery", "keygen", "--out", str(tmp_path / "gallery.key")]) == 0
    with Broker(tmp_path / "mosq") as broker:
        backend = Backend(broker)
        yield tmp_path, broker, backend, CommandKey.generate(tmp_path / "ops")
        backend.close()
    Device.pin_factory.close()
    Device.pin_factory = None


@pytest.mark.slow
def test_a_large_gallery_goes_through_the_normal_path_and_resumes_after_a_restart(bare_rig):
    """3,000 subjects in 1.5 KiB chunks: more chunks than a manifest listing their hashes could carry in
    one command at the default 64 KiB (issue 19 item 7). The manifest names their Merkle root; each chunk
    comes with its proof. Some are sent, the terminal restarts, `push` sends exactly the rest."""
    from nacl.signing import SigningKey

    from device.contracts import ModelRef
    from device.identity import gallery as gal
    from device.identity import operator as op
    from device.identity.push import Requester, push
    from device.identity.transfer import chunk_proofs
    from device.infra.modelstore import ModelStore
    from device.transport.topics import Topics
    from device.vision.embed import l2_normalise

    tmp, broker, backend, key = bare_rig
    entry = ModelStore().entry("embedder")
    model = ModelRef("embedder", entry.file, entry.sha256)
    rng = np.random.default_rng(3)
    subjects = [
        gal.Subject(f"s{i:05d}", None, l2_normalise(rng.normal(size=(1, gal.DIM)))) for i in range(3000)
    ]
    update = op.snapshot(op.load_gallery_signer(tmp / "gallery.key"), subjects, 5, model, chunk=1536)
    count, size = update.manifest["body"]["chunk_count"], update.manifest["body"]["chunk_size"]
    assert count * len(json.dumps(["0" * 64, ""])) > 64 * 1024  # a list of their hashes: too large
    assert len(json.dumps(update.manifest)) < 1024
    pub = tmp / "gallery.key.pub"
    idle = _replay(tmp / "idle", [], lead_s=1.0)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="pusher", protocol=mqtt.MQTTv5)
    client.connect(broker.host, broker.port)
    requester = Requester(client, Topics("faceonly", TID), 30.0, SigningKey(key.key.encode()))
    terminal = Terminal(_config(tmp, broker, idle, pub, "fast", key))
    try:
        assert backend.wait(lambda: any(s.get("state") == "online" for s in backend.of("/status")), 30)
        started = requester.request("gallery.sync", {"manifest": update.manifest})["result"]
        assert started["chunks"] == count and started["missing"] == list(range(count))
        proofs = chunk_proofs(update.manifest, update.body)
        first = started["missing"][:60]
        for index in first:
            data = seal_for_terminal(_terminal_key(tmp), update.body[index * size : (index + 1) * size])
            args = {"transfer": started["transfer"], "index": index, "data": data, "proof": proofs[index]}
            reply = requester.request("gallery.chunk", args)
            assert reply["ok"] and reply["result"]["missing_count"] == count - index - 1, reply
        wrong = {"transfer": started["transfer"], "index": count - 1, "data": data, "proof": proofs[-1]}
        refused = requester.request("gallery.chunk", wrong)
        assert not refused["ok"] and "does not match" in refused["error"]["message"]
        terminal.stop()  # the terminal restarts in the middle of the transfer
        terminal = Terminal(_config(tmp, broker, idle, pub, "fast", key))
        sent: list[str] = []
        summary = push(requester, update, _terminal_key(tmp), sent.append)
        assert f"{count - len(first)} of {count} chunks to send" in sent[0]
        assert summary["version"] == 5 and summary["count"] == 3000
        backend.send("gallery.list", {})  # read-only: unsigned
        listed = backend.replies.get(timeout=30)
        assert (
            listed["ok"]
            and listed["result"]["count"] == 3000
            and listed["result"]["sha256"] == summary["sha256"]
        )
        stale = requester.request("gallery.sync", {"manifest": update.manifest})
        assert not stale["ok"] and stale["error"]["details"]["reason"] == "not_newer"
    finally:
        requester.close()
        terminal.stop()
