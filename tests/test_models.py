"""Shipped models: manifest, integrity, op set, size; every model runs on real faces with sane outputs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from device.modelstore import ModelError, ModelStore

MODELS = Path(__file__).resolve().parent.parent / "models"
REQUIRED = (
    "detector_short_range",
    "detector_full_range",
    "face_landmark",
    "iris_landmark",
    "embedder",
    "embedder_stats",
)


@pytest.fixture(scope="module")
def store() -> ModelStore:
    return ModelStore(MODELS)


def test_manifest_lists_every_required_model(store):
    assert set(REQUIRED) <= set(store.entries)
    assert store.entry("embedder_stats").kind == "data"
    raw = json.loads((MODELS / "manifest.json").read_text())
    assert "antispoof" in raw["not_shipped"] and "antispoof" not in raw["models"]
    if "liveness" not in raw["models"]:
        assert "liveness" in raw["not_shipped"]
    for name in REQUIRED:
        info = store.entry(name).info
        assert info.get("source") and info.get("licence"), name


def test_every_model_verifies_and_loads(store):
    assert all(r.ok for r in store.verify()), [r.problem for r in store.verify() if not r.ok]
    for name, entry in store.entries.items():
        if entry.kind == "tflite":
            interp = store.interpreter(name)
            assert interp.get_input_details() and interp.get_output_details()
    assert store.array("embedder_stats")["mean"].shape == (1024,)


def test_no_flex_or_custom_ops(store):
    for name, entry in store.entries.items():
        if entry.kind != "tflite":
            continue
        ops = {d["op_name"] for d in store.interpreter(name)._get_ops_details()}
        bad = [op for op in ops if "flex" in op.lower() or "custom" in op.lower()]
        assert not bad, f"{entry.file}: {bad}"
        assert ops, entry.file


def test_models_dir_within_budget():
    total = sum(p.stat().st_size for p in MODELS.iterdir() if p.is_file())
    assert total <= 25_000_000, total


def test_embedder_manifest_meets_acceptance(store):
    info = store.entry("embedder").info
    assert info["agreement"]["cosine_int8_vs_float_mean"] >= 0.99
    assert info["agreement"]["crops"] >= 200
    lat = info["latency_ms_1thread"]
    assert lat["int8"] <= lat["float32"] * 1.05


def _flip_one_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("name", ["embedder", "detector_short_range", "embedder_stats"])
def test_tampered_model_is_refused_naming_the_file(tmp_path, name):
    copy = tmp_path / "models"
    shutil.copytree(MODELS, copy)
    entry = ModelStore(copy).entry(name)
    _flip_one_byte(copy / entry.file)
    store = ModelStore(copy)
    with pytest.raises(ModelError, match=entry.file.replace(".", r"\.")):
        store.read_verified(name)
    bad = [r for r in store.verify() if not r.ok]
    assert [r.name for r in bad] == [name]
    proc = subprocess.run(
        [sys.executable, "-m", "device", "models", "verify", "--models-dir", str(copy)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0
    assert entry.file in proc.stdout


def test_truncated_model_is_refused(tmp_path):
    copy = tmp_path / "models"
    shutil.copytree(MODELS, copy)
    entry = ModelStore(copy).entry("face_landmark")
    path = copy / entry.file
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ModelError, match="face_landmark"):
        ModelStore(copy).interpreter("face_landmark")


def test_models_verify_cli_passes_on_shipped_models():
    proc = subprocess.run(
        [sys.executable, "-m", "device", "models", "verify", "--models-dir", str(MODELS)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("OK ") >= len(REQUIRED)


def test_float_embedding_crop_values_are_finite(store):
    from device.vision.embed import Embedder

    emb = Embedder(store)
    rng = np.random.default_rng(1)
    v = emb.embed_crop(rng.integers(0, 255, (224, 224, 3), dtype=np.uint8))
    assert np.all(np.isfinite(v)) and abs(float(np.linalg.norm(v)) - 1.0) < 1e-4


@pytest.mark.parametrize("name", ["detector_short_range", "detector_full_range"])
def test_detector_manifest_records_the_quantization_decision(store, name):
    q = store.entry(name).info["quantization"]
    shipped, reference = q["candidates"][q["kind"]], q["candidates"]["float32"]
    assert {"static_int8", "dynamic_int8", "float16"} <= set(q["candidates"])
    assert shipped["accepted"]
    assert shipped["best_box_iou_mean"] >= 0.95 and shipped["best_box_iou_min"] >= 0.5
    assert shipped["detection_rate"] == shipped["detection_rate_float32"]
    assert shipped["lfw_detection_rate"] == reference["lfw_detection_rate"]
    assert shipped["negatives_false_faces"] <= reference["negatives_false_faces"]
    assert shipped["size_bytes"] == store.entry(name).size_bytes


def test_embedder_stats_are_not_fitted_on_lfw(store):
    info = store.entry("embedder").info
    assert "No LFW image is used" in info["scoring"]["stats_fitted_on"]
    lfw = info["accuracy"].get("lfw_view2_folds_1_5")
    if lfw is not None:  # built with ../shared/data: measured with exactly the shipped stats
        assert {"lfw_accuracy", "lfw_tar_at_far_0.01", "lfw_tar_at_far_0.001"} <= set(lfw)
