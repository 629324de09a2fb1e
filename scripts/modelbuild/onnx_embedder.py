"""The embedder for ONNX Runtime: the shipped int8 TFLite network written out as ONNX (faceonly_lab.modelexport),
checked to give bit-identical outputs on real faces, and timed against LiteRT in the same run."""

from __future__ import annotations

import hashlib
import statistics
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np

from device.infra.inference import OnnxRunner
from device.vision.embed import Embedder
from device.vision.landmarks import FaceMeshModel
from faceonly_lab.modelexport import export_embedder

from . import embedder as emb
from .data import calibration_frames, have_shared_data
from .detectors import shipped_config_detector
from .evaluate import interpreter

FILE = "embedder_dlib_resnet_u8.onnx"
LATENCY_RUNS = 100
# The two runtimes round a requantization tie differently now and then (TFLite's fixed-point multiplier against
# ONNX Runtime's float scale): a difference of an output step or two on a few chips in a thousand is that, and
# scores then move by < 3e-4. Anything more is a different network.
MAX_STEPS = 2
MIN_COSINE = 0.9995


def _session(path: Path, threads: int = 1):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _output_step(tflite) -> float:
    """What one step of the int8 output is worth: the scale of the tensor the final DEQUANTIZE reads."""
    (output,) = tflite.get_output_details()
    details = {t["index"]: t for t in tflite.get_tensor_details()}
    for op in tflite._get_ops_details():
        if op["op_name"] == "DEQUANTIZE" and list(op["outputs"]) == [output["index"]]:
            return float(details[op["inputs"][0]]["quantization"][0])
    raise SystemExit("the embedder's output is not a DEQUANTIZE of an int8 tensor")


def _chips(detector_path: Path, mesh_path: Path) -> tuple[np.ndarray, str]:
    mesh = FaceMeshModel(None, interpreter=interpreter(mesh_path))
    if have_shared_data():
        chips = emb._lfw_chips(detector_path, mesh)
        return (
            chips,
            f"chips of the first {emb.AGREEMENT_LFW_IMAGES} LFW pair images (sorted) and their mirror images",
        )
    frames, desc = calibration_frames()
    detector = shipped_config_detector(detector_path, "short_range")
    found = [(i, d) for i, frame in enumerate(frames) for d in detector.detect(frame)]
    return emb.chips(frames, found, mesh), f"every face in {desc}, and their mirror images"


def build_entry(
    embedder_entry: dict, tflite_path: Path, detector_path: Path, mesh_path: Path, out: Path, log
) -> dict:
    """Write out/FILE and return its manifest entry; SystemExit when its outputs are not LiteRT's."""
    onnx_path = out / FILE
    onnx_path.write_bytes(export_embedder(tflite_path.read_bytes()))
    tflite = interpreter(tflite_path)
    litert = Embedder(None, interpreter=tflite)
    onnx = Embedder(None, interpreter=OnnxRunner(_session(onnx_path)))
    chips, chips_set = _chips(detector_path, mesh_path)
    chips = np.concatenate([chips, chips[:, :, ::-1]])
    diffs, cosines = [], []
    for chip in chips:
        chip = np.ascontiguousarray(chip)
        a, b = onnx.descriptor(chip), litert.descriptor(chip)
        diffs.append(float(np.max(np.abs(a - b))))
        cosines.append(float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b))))
    step = _output_step(tflite)
    agreement = {
        "chips": len(chips),
        "chips_set": chips_set,
        "identical": sum(d == 0.0 for d in diffs),
        "max_abs_difference": max(diffs),
        "max_difference_in_output_steps": round(max(diffs) / step),
        "cosine_min": round(min(cosines), 7),
    }
    log(f"  ONNX Runtime vs LiteRT: {agreement}")
    if max(diffs) > MAX_STEPS * step or min(cosines) < MIN_COSINE:
        raise SystemExit(f"{FILE}: outputs differ from the TFLite embedder's ({agreement}): refusing to ship")
    times: dict[str, list[float]] = {"litert": [], "onnxruntime": []}
    chip = np.ascontiguousarray(chips[0])
    for _ in range(5):
        litert.descriptor(chip), onnx.descriptor(chip)
    for _ in range(LATENCY_RUNS):  # interleaved: both see the same machine
        for name, run in (
            ("litert", lambda: litert.descriptor(chip)),
            ("onnxruntime", lambda: onnx.descriptor(chip)),
        ):
            t0 = time.perf_counter()
            run()
            times[name].append((time.perf_counter() - t0) * 1000.0)
    latency = {name: round(statistics.median(t), 3) for name, t in times.items()}
    log(f"  1 thread, median of {LATENCY_RUNS} interleaved: {latency}")
    return {
        "file": FILE,
        "kind": "onnx",
        "role": 'the face embedder\'s network for ONNX Runtime ([vision] embedder_runtime = "onnxruntime")',
        "same_outputs_as": {
            "model": "embedder",
            "file": embedder_entry["file"],
            "sha256": hashlib.sha256(tflite_path.read_bytes()).hexdigest(),
        },
        "source": {
            **embedder_entry["source"],
            "exported_from": embedder_entry["file"],
            "exporter": f"faceonly_lab.modelexport (onnx {version('onnx')}, tflite {version('tflite')})",
        },
        "licence": embedder_entry["licence"],
        "conversion": "the int8 TFLite graph as ONNX QDQ, weights and activations as uint8 (+128, the same real "
        "numbers), every scale and zero point the TFLite file's own: nothing re-quantized",
        "inputs": [
            {
                "name": "image",
                "shape": [1, 150, 150, 3],
                "dtype": "uint8",
                "colour_order": "BGR",
                "value_range": "0..255, the aligned chip's bytes",
            }
        ],
        "outputs": [
            {"name": "embedding", "shape": [1, 128], "dtype": "float32", "meaning": "as the embedder's"}
        ],
        "agreement": {
            "runtime": f"onnxruntime {version('onnxruntime')} (CPU) vs ai-edge-litert {version('ai-edge-litert')}",
            **agreement,
        },
        "quantization": {
            "kind": "uint8 (the int8 embedder's weights and activations + 128: nothing re-quantized)",
        },
        "latency_ms_1thread": {
            **latency,
            "shipped": latency["onnxruntime"],
            "how": f"median of {LATENCY_RUNS} invokes each, interleaved, one chip",
        },
        "_path": str(onnx_path),
    }


def lfw_sections(models_dir: Path, log) -> dict:
    """LFW folds 1-5 through the terminal's path with the embedder on ONNX Runtime (the shipped files, checked
    against the manifest): its own accuracy, and how far the shipped thresholds would move were they fitted on
    its embeddings instead of LiteRT's. Nothing without ../shared/data."""
    from device.config.vision import VisionConfig
    from device.infra.modelstore import ModelStore
    from device.vision.detect import FaceDetector
    from device.vision.embed import Embedder, FaceEncoder
    from faceonly_lab import lfw

    from .data import LFW_PAIRS

    if not have_shared_data():
        log("  no ../shared/data: the ONNX Runtime embedder's LFW figures are not measured")
        return {}
    store, vision = ModelStore(models_dir), VisionConfig()
    detector = FaceDetector(store, vision.detector, vision.detector_min_score, vision.nms_iou)
    encoder = FaceEncoder(Embedder(store, runtime="onnxruntime"), FaceMeshModel(store))
    shipped = store.entry("embedder").info["thresholds"]
    band = shipped["single_view"]["mirror_band"]["value"]
    log("  LFW folds 1-5 with the embedder on ONNX Runtime")
    results, calibration = lfw.verification(lfw.read_pairs(LFW_PAIRS), detector, encoder, log, band=band)
    moved = {
        key: round(calibration.thresholds[key] - shipped["per_comparison"][key], 6)
        for key in shipped["per_comparison"]
    }
    log(f"  LFW on ONNX Runtime: {results}; thresholds moved by {moved}")
    return {
        "accuracy": {
            "lfw_view2_folds_1_5": {k: round(float(v), 5) for k, v in results.items()},
            "how": "as the embedder's accuracy, with the embedder on ONNX Runtime",
        },
        "thresholds_moved": {
            "per_comparison": moved,
            "how": "the shipped recipe on this runtime's LFW embeddings, minus the embedder's shipped thresholds "
            "(which both runtimes use)",
        },
    }
