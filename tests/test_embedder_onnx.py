"""The embedder's second runtime: ONNX Runtime on the same network, exported from the shipped TFLite file. Its
embeddings must be LiteRT's (so galleries and thresholds hold whichever runtime a terminal uses), its file must
be the one the exporter writes from the shipped TFLite file, and whatever is wrong with it must be refused."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data

from device.config.vision import VisionConfig
from device.infra.modelstore import ModelError, ModelStore
from device.vision.detect import FaceDetector
from device.vision.embed import ONNX_MODEL_NAME, Embedder, FaceEncoder, similarity
from device.vision.landmarks import FaceMeshModel
from device.vision.pipeline import build_pipeline
from tests.vision_helpers import deepface_faces

MODELS = Path(__file__).resolve().parent.parent / "models"


@pytest.fixture(scope="module")
def store() -> ModelStore:
    return ModelStore(MODELS)


@pytest.fixture(scope="module")
def chips(store) -> list[np.ndarray]:
    """Aligned chips of real faces from a registry package: scikit-image's astronaut and lfw_subset."""
    detector, mesh = FaceDetector(store, "short_range"), FaceMeshModel(store)
    frames = [np.ascontiguousarray(skimage.data.astronaut()[..., ::-1])]
    for face in skimage.data.lfw_subset()[:60]:
        grey = cv2.resize((face * 255).astype(np.uint8), (100, 100), interpolation=cv2.INTER_CUBIC)
        frames.append(
            cv2.copyMakeBorder(cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR), 50, 50, 50, 50, cv2.BORDER_REPLICATE)
        )
    encoder = FaceEncoder(Embedder(store), mesh)
    out = []
    for frame in frames:
        found = detector.detect(frame)
        if found:
            out.append(encoder.chip(frame, found[0], None).image)
    assert len(out) >= 40
    return out


def test_the_shipped_onnx_file_is_what_the_exporter_writes_from_the_shipped_tflite_file(store):
    from faceonly_lab.modelexport import export_embedder

    tflite, onnx = store.entry("embedder"), store.entry(ONNX_MODEL_NAME)
    written = export_embedder(store.read_verified("embedder"))
    assert (
        hashlib.sha256(written).hexdigest()
        == onnx.sha256
        == hashlib.sha256(store.read_verified(ONNX_MODEL_NAME)).hexdigest()
    )
    assert onnx.info["same_outputs_as"] == {"model": "embedder", "file": tflite.file, "sha256": tflite.sha256}


def test_both_runtimes_give_the_same_embeddings(store, chips):
    litert, onnx = Embedder(store), Embedder(store, runtime="onnxruntime")
    assert onnx.model == litert.model  # what galleries and events name: the network, not the runtime
    assert onnx.thresholds == litert.thresholds
    step = 0.003862047102302313  # one step of the int8 output (its DEQUANTIZE's scale)
    identical = 0
    for chip in chips:
        for mirrored in (False, True):
            a, b = litert.descriptor(chip, mirrored), onnx.descriptor(chip, mirrored)
            assert np.max(np.abs(a - b)) <= 2 * step + 1e-9
            assert similarity(a, b) >= 0.9995
            identical += bool(np.array_equal(a, b))
    assert identical >= 0.95 * 2 * len(chips), identical
    probe = onnx.probe(chips[0])
    assert np.isclose(np.linalg.norm(probe.single), 1.0) and np.isclose(np.linalg.norm(probe.flip()), 1.0)


def test_a_litert_template_matches_an_onnxruntime_probe_of_the_same_person(shared_data, store):
    """Real photos of the same people years apart (deepface's test set): templates made by LiteRT, probes by ONNX
    Runtime, scored against the shipped threshold, as a terminal switched to ONNX Runtime would score them."""
    detector, mesh = FaceDetector(store, "short_range"), FaceMeshModel(store)
    by_runtime = {r: FaceEncoder(Embedder(store, runtime=r), mesh) for r in ("litert", "onnxruntime")}
    items = [
        (who, *(by_runtime[r].encode(frame, face).embedding for r in ("litert", "onnxruntime")))
        for who, frame, face in deepface_faces(shared_data, detector)
    ]
    threshold = by_runtime["litert"].embedder.thresholds["far_1e-3"]
    same, diff, moved = [], [], []
    for i, (id_a, template, _) in enumerate(items):
        for id_b, litert_probe, onnx_probe in items[i + 1 :]:
            (same if id_a == id_b else diff).append(similarity(template, onnx_probe))
            moved.append(abs(similarity(template, onnx_probe) - similarity(template, litert_probe)))
    assert len(same) >= 50 and len(diff) >= 500
    assert np.mean(np.array(same) > threshold) >= 0.9
    assert np.mean(np.array(diff) > threshold) <= 0.01
    # 62 of these 63 faces embed identically; where a requantization tie went the other way, scores moved by
    # 1.3e-3 at most (2% of the pairs).
    assert np.median(moved) == 0.0 and max(moved) < 5e-3, (np.mean(np.array(moved) > 0), max(moved))


def _copy(tmp_path: Path) -> Path:
    copy = tmp_path / "models"
    shutil.copytree(MODELS, copy)
    return copy


def test_an_onnx_file_exported_from_another_embedder_is_refused(tmp_path):
    copy = _copy(tmp_path)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["models"][ONNX_MODEL_NAME]["same_outputs_as"]["sha256"] = "0" * 64
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="not from the shipped embedder"):
        Embedder(ModelStore(copy), runtime="onnxruntime")
    Embedder(ModelStore(copy))  # LiteRT does not need it


def test_a_damaged_onnx_file_is_refused_before_onnx_runtime_reads_it(tmp_path):
    copy = _copy(tmp_path)
    path = copy / ModelStore(copy).entry(ONNX_MODEL_NAME).file
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256"):
        Embedder(ModelStore(copy), runtime="onnxruntime")


def test_without_onnxruntime_the_error_says_what_to_install(store, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime raises ImportError
    with pytest.raises(ModelError, match=r"faceonly\[onnx\]"):
        Embedder(store, runtime="onnxruntime")


def test_the_terminal_runs_the_embedder_on_the_runtime_its_config_names(store):
    vision = VisionConfig.model_validate({"embedder_runtime": "onnxruntime"})
    assert build_pipeline(vision, store)._encoder.embedder.runtime == "onnxruntime"
    assert build_pipeline(VisionConfig(), store)._encoder.embedder.runtime == "litert"
    with pytest.raises(ValueError, match="embedder_runtime"):
        VisionConfig.model_validate({"embedder_runtime": "tensorrt"})


def test_doctor_says_which_runtime_runs_the_embedder_and_what_is_missing(monkeypatch):
    from device.config import Config
    from device.doctor.local import models

    onnx = Config.model_validate({"vision": {"embedder_runtime": "onnxruntime"}})
    assert models(Config()).verdict == "ok" and models(Config()).detail.endswith(
        "the embedder runs on litert"
    )
    assert models(onnx).verdict == "ok" and models(onnx).detail.endswith("the embedder runs on onnxruntime")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    check = models(onnx)
    assert check.verdict == "fail" and "not installed" in check.detail and "faceonly[onnx]" in check.fix
    assert models(Config()).verdict == "ok"  # a LiteRT terminal does not need it
