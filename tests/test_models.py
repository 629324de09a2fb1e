"""Shipped models: manifest, integrity, op set, size; every model runs on real faces with sane outputs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from device.infra.modelstore import ModelError, ModelStore

MODELS = Path(__file__).resolve().parent.parent / "models"
REQUIRED = (
    "detector_short_range",
    "detector_full_range",
    "face_landmark",
    "iris_landmark",
    "embedder",
)


@pytest.fixture(scope="module")
def store() -> ModelStore:
    return ModelStore(MODELS)


def test_manifest_lists_every_required_model(store):
    assert set(REQUIRED) <= set(store.entries)
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


def test_embedder_manifest_records_what_the_issue_asks(store):
    info = store.entry("embedder").info
    source = info["source"]
    assert source["package"] == "@vladmandic/face-api" and source["version"] == "1.7.15"
    assert len(source["package_sha256"]) == 64 and "MIT" in info["licence"] and "CC0" in info["licence"]
    assert info["js_parity"]["cosine_min"] >= 0.9999 and info["js_parity"]["chips"] >= 10
    agreement = info["agreement"]
    assert agreement["cosine_int8_vs_float_mean"] >= 0.99 and agreement["crops"] >= 200
    assert "cosine_int8_vs_float_min" in agreement
    assert info["xnnpack_partitions"] == 1
    q = info["inputs"][0]["quantization"]
    assert (q["scale"], q["zero_point"]) == (1.0, -128)
    assert info["size_bytes"] == store.entry("embedder").size_bytes
    assert info["latency_ms_1thread"]["int8"] > 0
    thresholds = info["thresholds"]
    assert {"far_1e-2", "far_1e-3", "far_1e-4", "far_1e-5"} <= set(thresholds["per_comparison"])
    values = [thresholds["per_comparison"][k] for k in ("far_1e-2", "far_1e-3", "far_1e-4", "far_1e-5")]
    assert values == sorted(values) and len(set(values)) == 4  # stricter targets, higher thresholds
    # The dense curve 1:N reads per-comparison targets off: monotone, down to what 7.26M impostors support.
    from device.identity.thresholds import ThresholdCurve

    curve = ThresholdCurve.from_manifest(info)
    assert len(curve.fars) >= 90 and curve.fars[0] == 0.1
    assert curve.smallest_far == thresholds["curve_smallest_far"] < 4e-6
    for key, far in (("far_1e-3", 1e-3), ("far_1e-5", 1e-5)):
        assert curve.threshold(far)[0] == pytest.approx(thresholds["per_comparison"][key], abs=1e-4)
        # The curve is the 95% upper bound's: stricter than where the measured share is the target.
        assert thresholds["per_comparison"][key] > thresholds["per_comparison_point_estimate"][key]
    assert thresholds["bound"]["name"] == "identity-level (subsets) bootstrap, one-sided 95%"
    assert thresholds["bound"]["confidence"] == 0.95
    lfw = info["accuracy"]["lfw_view2_folds_1_5"]
    assert lfw["lfw_accuracy"] >= 0.99 and lfw["lfw_tar_at_far_0.001"] >= 0.96
    assert lfw["lfw_detection_failures"] == 0
    assert "LFW excluded" in info["quantization"]["calibration"]["set"]  # LFW is the test set


def test_the_embedder_for_onnx_runtime_records_its_agreement_speed_and_accuracy(store):
    """Its own accuracy bars, measured with it, beside how close its outputs are to LiteRT's."""
    info = store.entry("embedder_onnx").info
    assert info["kind"] == "onnx" and info["licence"] == store.entry("embedder").info["licence"]
    agreement = info["agreement"]
    assert agreement["chips"] >= 1000 and agreement["max_difference_in_output_steps"] <= 2
    assert agreement["cosine_min"] >= 0.9995 and agreement["identical"] >= 0.99 * agreement["chips"]
    assert info["latency_ms_1thread"]["onnxruntime"] > 0 and info["latency_ms_1thread"]["litert"] > 0
    lfw = info["accuracy"]["lfw_view2_folds_1_5"]
    assert lfw["lfw_accuracy"] >= 0.99 and lfw["lfw_tar_at_far_0.001"] >= 0.96
    assert lfw["lfw_detection_failures"] == 0
    assert max(abs(v) for v in info["thresholds_moved"]["per_comparison"].values()) < 2e-4


def _flip_one_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("name", ["embedder", "embedder_onnx", "detector_short_range", "face_landmark"])
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


def test_embedding_of_any_chip_is_finite_and_unit_length(store):
    from device.vision.embed import Embedder

    emb = Embedder(store)
    rng = np.random.default_rng(1)
    for chip in (rng.integers(0, 255, (150, 150, 3), dtype=np.uint8), np.zeros((150, 150, 3), np.uint8)):
        v = emb.embed_chip(chip)
        assert v.shape == (128,) and np.all(np.isfinite(v)) and abs(float(np.linalg.norm(v)) - 1.0) < 1e-4


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


def test_verify_hashes_again_only_what_may_have_changed(tmp_path):
    """models.verify may come unsigned and in floods: an unchanged file costs a stat, not a hash; any change
    (even the same size with the old mtime put back) is hashed again and caught."""
    copy = tmp_path / "models"
    shutil.copytree(MODELS, copy)
    fresh = ModelStore(copy)
    fresh.verify()
    assert all(r.ok and r.rehashed for r in fresh.verify())  # just written: within the racy window
    store = ModelStore(copy)
    store.racy_s = 0.0  # as if the copy were older than the timestamp tick
    assert all(r.ok and r.rehashed for r in store.verify())
    assert all(r.ok and not r.rehashed and r.hashed_at for r in store.verify())
    entry = store.entry("embedder")
    path = copy / entry.file
    before = path.stat()
    _flip_one_byte(path)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    results = {r.name: r for r in store.verify()}
    assert not results["embedder"].ok and results["embedder"].rehashed
    assert all(r.ok and not r.rehashed for n, r in results.items() if n != "embedder")
    _flip_one_byte(path)
    assert {r.name: r.ok for r in store.verify()}["embedder"]
    assert not {r.name: r.rehashed for r in store.verify()}["embedder"]
