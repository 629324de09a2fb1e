"""The audit's checks on real protector output and on deliberately bad payloads; the CLI on real mosquitto."""

from __future__ import annotations

import base64
import json
import threading
import time
import zlib

import cv2
import numpy as np
import paho.mqtt.client as mqtt
import pytest
import skimage.data
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.public import PrivateKey

from device.cli import main as cli_main
from device.config import parse_config
from device.contracts import FaceObservation
from device.privacy.audit import AuditPolicy, audit_result, inspect_message
from device.privacy.protector import UNSAFE_TEST_ENV, build_protector
from device.privacy.signing import key_id
from device.transport.envelope import encode, envelope
from tests.broker import Broker

TOPIC = "faceonly/v1/dev/t1/event/face"


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    return np.ascontiguousarray(skimage.data.astronaut()[:, :, ::-1])


@pytest.fixture(scope="module")
def observation(frame) -> FaceObservation:
    embedding = np.random.default_rng(3).standard_normal(1024).astype(np.float32)
    return FaceObservation(
        track_id=1,
        decision="accepted",
        first_seen=1.0,
        last_seen=2.0,
        best_frame_time=1.5,
        box=(170.0, 20.0, 290.0, 180.0),
        quality={},
        liveness={},
        reasons=(),
        embedding=embedding / np.linalg.norm(embedding),
        face_crop=frame[0:240, 140:320].copy(),
        crop_face_box=(30.0, 20.0, 150.0, 180.0),
    )


@pytest.fixture(autouse=True)
def unsafe_test_settings(monkeypatch):
    # Some payloads here are made with the test-only oversized thumbnail on purpose.
    monkeypatch.setenv(UNSAFE_TEST_ENV, "1")


def event_bytes(tmp_path, observation, **privacy) -> tuple[bytes, object]:
    cfg = parse_config({"terminal_id": "t1", "service": {"state_dir": str(tmp_path)}, "privacy": privacy})
    protector = build_protector(cfg, tmp_path)
    payload = protector.sign(envelope("event.face", "t1", protector.protect(observation)))
    return encode(payload), protector


def verdicts(result) -> dict[str, bool | None]:
    return {v["rule"]: v["passed"] for v in result["verdicts"]}


def jpeg_b64(image: np.ndarray) -> str:
    return base64.b64encode(cv2.imencode(".jpg", image)[1].tobytes()).decode()


def test_protector_event_passes(tmp_path, observation):
    data, protector = event_bytes(tmp_path, observation)
    policy = AuditPolicy(terminal_public_key=protector.signer.public_key)
    result = audit_result([inspect_message(TOPIC, data, False, policy)], policy)
    assert result["result"] == "pass", result["verdicts"]
    (image,) = result["messages"][0]["images"]
    assert image["where"] == "biometric.thumbnail" and max(image["width"], image["height"]) <= 112


def test_oversized_test_thumbnail_fails_and_says_why(tmp_path, observation):
    data, _ = event_bytes(tmp_path, observation, unsafe_test_thumbnail_size=200)
    result = audit_result([inspect_message(TOPIC, data, False, AuditPolicy())], AuditPolicy())
    assert result["result"] == "fail"
    detail = next(v["detail"] for v in result["verdicts"] if v["rule"] == "image_size")
    assert "larger than 112px" in detail and "biometric.thumbnail" in detail and "x200" in detail


def test_whole_frame_anywhere_is_caught(frame):
    # A frame hidden in a data: URL inside a list, and another in the middle of an unrelated blob.
    hidden = b"junk-prefix" + base64.b64decode(jpeg_b64(frame))
    doc = {
        "type": "event.face",
        "extra": [{"preview": "data:image/jpeg;base64," + jpeg_b64(frame)}],
        "blob": base64.b64encode(hidden).decode(),
    }
    result = audit_result(
        [inspect_message(TOPIC, json.dumps(doc).encode(), False, AuditPolicy())], AuditPolicy()
    )
    images = result["messages"][0]["images"]
    assert sorted(i["where"] for i in images) == ["blob@11", "extra[0].preview"]
    assert all((i["width"], i["height"]) == (512, 512) and i["outside_ellipse_nonzero"] > 0 for i in images)
    assert verdicts(result)["image_size"] is False and verdicts(result)["face_only"] is False


def test_raw_binary_png_payload_is_caught(frame):
    png = cv2.imencode(".png", cv2.resize(frame, (64, 64)))[1].tobytes()
    finding = inspect_message("faceonly/v1/dev/t1/debug", png, False, AuditPolicy())
    assert [(i.format, i.width) for i in finding.images] == [("png", 64)]
    assert verdicts(audit_result([finding], AuditPolicy()))["face_only"] is False


def test_exif_is_caught():
    image = np.zeros((32, 32, 3), np.uint8)
    jpeg = base64.b64decode(jpeg_b64(image))
    with_exif = jpeg[:2] + b"\xff\xe1\x00\x10Exif\x00\x00" + b"\x00" * 8 + jpeg[2:]
    doc = {"type": "event.face", "biometric": {"thumbnail": base64.b64encode(with_exif).decode()}}
    result = audit_result(
        [inspect_message(TOPIC, json.dumps(doc).encode(), False, AuditPolicy())], AuditPolicy()
    )
    assert verdicts(result)["image_metadata"] is False
    assert "APP1" in next(v["detail"] for v in result["verdicts"] if v["rule"] == "image_metadata")


def test_png_chunks_beside_the_pixels_are_caught(tmp_path, observation):
    # The terminal's own thumbnail, then the same with a text chunk, a private chunk or bytes after its end.
    data, _ = event_bytes(tmp_path, observation)
    event = json.loads(data)
    png = base64.b64decode(event["biometric"]["thumbnail"])

    def chunk(kind: bytes, body: bytes) -> bytes:
        return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")

    variants = {
        "tEXt": png[:33] + chunk(b"tEXt", b"Author\x00gate-01") + png[33:],
        "frAm": png[:33] + chunk(b"frAm", bytes(range(256))) + png[33:],
        "bytes after IEND": png + b"\x00" * 40,
    }
    for name, tampered in variants.items():
        event["biometric"]["thumbnail"] = base64.b64encode(tampered).decode()
        finding = inspect_message(TOPIC, json.dumps(event).encode(), False, AuditPolicy())
        result = audit_result([finding], AuditPolicy())
        assert verdicts(result)["image_metadata"] is False, name
        assert verdicts(result)["face_only"] is True  # the pixels themselves are still face-only
        detail = next(v["detail"] for v in result["verdicts"] if v["rule"] == "image_metadata")
        assert name in detail and "biometric.thumbnail" in detail


def test_sealing_rules(tmp_path, observation):
    backend = PrivateKey.generate()
    pub = base64.b64encode(bytes(backend.public_key)).decode()
    sealed, _ = event_bytes(tmp_path / "a", observation, seal=True, backend_public_key=pub)
    clear, _ = event_bytes(tmp_path / "b", observation)
    policy = AuditPolicy(require_sealed=True, backend_fingerprint=key_id(bytes(backend.public_key)))
    assert audit_result([inspect_message(TOPIC, sealed, False, policy)], policy)["result"] == "pass"
    failed = audit_result([inspect_message(TOPIC, clear, False, policy)], policy)
    detail = next(v["detail"] for v in failed["verdicts"] if v["rule"] == "biometric_sealed")
    assert "biometric.embedding in the clear" in detail and "without a sealed blob" in detail
    other = AuditPolicy(require_sealed=True, backend_fingerprint="0" * 16)
    assert (
        verdicts(audit_result([inspect_message(TOPIC, sealed, False, other)], other))["biometric_sealed"]
        is False
    )


def test_backend_key_holder_audits_sealed_thumbnails(tmp_path, observation):
    backend = PrivateKey.generate()
    pub = base64.b64encode(bytes(backend.public_key)).decode()
    sealed_big, _ = event_bytes(
        tmp_path, observation, seal=True, backend_public_key=pub, unsafe_test_thumbnail_size=200
    )
    without_key = audit_result([inspect_message(TOPIC, sealed_big, False, AuditPolicy())], AuditPolicy())
    assert not without_key["messages"][0]["images"]  # nothing readable on the wire
    policy = AuditPolicy(require_sealed=True, backend_private_key=bytes(backend))
    result = audit_result([inspect_message(TOPIC, sealed_big, False, policy)], policy)
    assert result["messages"][0]["images"][0]["where"] == "biometric.sealed+sealed.thumbnail"
    assert verdicts(result)["image_size"] is False
    assert verdicts(result)["biometric_sealed"] is True


def test_signature_rule(tmp_path, observation):
    data, protector = event_bytes(tmp_path, observation)
    policy = AuditPolicy(terminal_public_key=protector.signer.public_key)
    tampered = json.loads(data)
    tampered["observation"]["decision"] = "rejected"
    result = audit_result([inspect_message(TOPIC, json.dumps(tampered).encode(), False, policy)], policy)
    assert verdicts(result)["signatures"] is False


def test_nothing_seen_is_inconclusive_and_inbound_is_not_judged(frame):
    inbound = inspect_message(
        "faceonly/v1/dev/t1/cmd/req/gallery.add",
        json.dumps({"img": jpeg_b64(frame)}).encode(),
        False,
        AuditPolicy(),
    )
    result = audit_result([inbound], AuditPolicy())
    assert result["result"] == "inconclusive" and verdicts(result)["image_size"] is True


@settings(max_examples=200, deadline=None)
@given(payload=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_any_payload_is_judged_without_crashing(payload):
    finding = inspect_message(TOPIC, payload, False, AuditPolicy(require_sealed=True))
    audit_result([finding], AuditPolicy(require_sealed=True))


# ---- the CLI against a real broker ------------------------------------------------------------------


@pytest.fixture
def broker(tmp_path):
    with Broker(tmp_path / "mosq") as b:
        yield b


def publish_after(url_port: int, messages: list[tuple[str, bytes]], delay: float = 1.0) -> threading.Thread:
    def run():
        time.sleep(delay)
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        client.connect("127.0.0.1", url_port)
        client.loop_start()
        for topic, data in messages:
            client.publish(topic, data, qos=1).wait_for_publish(5)
        client.disconnect()
        client.loop_stop()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_cli_pass_and_fail(tmp_path, broker, observation, capsys):
    good, protector = event_bytes(tmp_path / "good", observation)
    key = base64.b64encode(protector.signer.public_key).decode()
    publish_after(broker.port, [("faceonly/v1/dev/t1/status", b'{"state":"online"}'), (TOPIC, good)])
    out_json = tmp_path / "audit.json"
    argv = [
        "audit",
        "--broker",
        broker.url,
        "--id",
        "t1",
        "--count",
        "1",
        "--timeout",
        "30",
        "--terminal-key",
        key,
    ]
    assert cli_main([*argv, "--json", str(out_json)]) == 0
    assert "audit result: PASS" in capsys.readouterr().out
    assert json.loads(out_json.read_text())["result"] == "pass"

    bad, _ = event_bytes(tmp_path / "bad", observation, unsafe_test_thumbnail_size=300)
    publish_after(broker.port, [(TOPIC, bad)])
    assert cli_main(["audit", "--broker", broker.url, "--id", "t1", "--count", "1", "--timeout", "30"]) == 1
    out = capsys.readouterr().out
    assert "[FAIL] image_size: larger than 112px" in out and "audit result: FAIL" in out


def test_cli_reports_unreachable_broker(capsys):
    from tests.broker import free_port

    assert (
        cli_main(["audit", "--broker", f"mqtt://127.0.0.1:{free_port()}", "--id", "t1", "--duration", "1"])
        == 2
    )
    assert "audit:" in capsys.readouterr().err


def test_settings_named_like_biometrics_are_not_data():
    doc = {
        "type": "config.reported",
        "config": {"privacy": {"thumbnail": "face", "template_transform": True}},
    }
    assert (
        inspect_message(
            "faceonly/v1/dev/t1/config/reported", json.dumps(doc).encode(), False, AuditPolicy()
        ).clear_biometric
        == ()
    )
    vector = {"type": "event.face", "enroll": {"template": [0.1] * 128}}
    finding = inspect_message(TOPIC, json.dumps(vector).encode(), False, AuditPolicy())
    assert finding.clear_biometric == ("enroll.template",)


def test_zero_face_events_prove_nothing_and_say_so(frame):
    from device.privacy.audit import render_text

    policy = AuditPolicy(require_sealed=True, terminal_public_key=bytes(32))
    status = inspect_message("faceonly/v1/dev/t1/status", b'{"type": "status"}', True, policy)
    result = audit_result([status], policy)
    v = verdicts(result)
    assert result["result"] == "inconclusive"
    assert v["signatures"] is None and v["biometric_sealed"] is None and v["events_observed"] is None
    text = render_text(result)
    assert "[FAIL]" not in text and "validly signed" not in text and "[NONE] events_observed" in text
