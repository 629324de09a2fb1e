"""The embedder: dlib's ResNet face descriptor (npm @vladmandic/face-api) rebuilt as TFLite, measured through the
terminal's own path (device.vision: mesh, 5-point chip, flip-averaged int8 embedding, cosine) on LFW folds 1-5,
with the per-comparison thresholds the identity work uses."""

from __future__ import annotations

import math
from importlib.metadata import version
from pathlib import Path

import numpy as np

from device.contracts import ModelRef
from device.vision.embed import Embedder, FaceEncoder, aligned_chip
from device.vision.landmarks import FaceMeshModel
from faceonly_lab import farbound, lfw, thresholdcurves

from . import faceapi, faceapi_js
from . import manifest as mf
from .data import LFW_PAIRS, have_shared_data, read_bgr
from .detectors import shipped_config_detector
from .evaluate import interpreter

FILE = "embedder_dlib_resnet_int8.tflite"
PARITY_CHIPS = 16
COMPUTED_WITH_NOTE = (
    "library versions that reproduce these thresholds (within 2e-4) from the shipped files; other OpenCV "
    "releases decode and warp faces slightly differently (opencv-python-headless 5.1.0.95 moved the 1e-5 point "
    "estimate by 2.4e-4). The lock (uv.lock) pins them."
)
AGREEMENT_LFW_IMAGES = 600
LICENCE = (
    "CC0-1.0 (dlib_face_recognition_resnet_model_v1, Davis King); TFJS weights in @vladmandic/face-api: MIT"
)


def chips(frames: list[np.ndarray], found, mesh: FaceMeshModel) -> np.ndarray:
    """(N, 150, 150, 3) BGR uint8 chips of the found faces, aligned exactly as the terminal aligns them."""
    return np.stack([aligned_chip(frames[i], d, mesh.run(frames[i], d)).image for i, d in found])


def _lfw_chips(detector_path: Path, mesh: FaceMeshModel) -> np.ndarray:
    """Chips of the first LFW pair images (sorted): real faces never used for calibration or fitting."""
    det = shipped_config_detector(detector_path, "short_range")
    pairs = lfw.read_pairs(LFW_PAIRS)
    images = sorted({p.img1 for p in pairs} | {p.img2 for p in pairs})
    out = []
    for path in images[:AGREEMENT_LFW_IMAGES]:
        frame = read_bgr(path)
        face = lfw.central_face(det.detect(frame), frame.shape)
        if face is not None:
            out.append(aligned_chip(frame, face, mesh.run(frame, face)).image)
    return np.stack(out)


def _lfw_figures(detector_path: Path, mesh_path: Path, int8_path: Path, model: ModelRef, log) -> tuple:
    """LFW folds 1-5 exactly as `faceonly evaluate --lfw` runs it, on the files about to be shipped."""
    from device.config.vision import VisionConfig
    from device.vision.detect import FaceDetector

    vision = VisionConfig()
    det = FaceDetector(
        None,
        vision.detector,
        vision.detector_min_score,
        vision.nms_iou,
        interpreter=interpreter(detector_path),
    )
    encoder = FaceEncoder(
        Embedder(None, interpreter=interpreter(int8_path), model=model),
        FaceMeshModel(None, interpreter=interpreter(mesh_path)),
    )
    return lfw.verification(lfw.read_pairs(LFW_PAIRS), det, encoder, log)


def _threshold_up(threshold: float) -> float:
    return math.ceil(round(threshold * 1e5, 6)) / 1e5


def _up(value: float, digits: int) -> float:
    """`value` rounded up to `digits` significant digits (exact when it already has no more)."""
    scale = 10 ** (digits - 1 - math.floor(math.log10(value)))
    return float(f"{math.ceil(round(value * scale, 6)) / scale:.{digits}g}")


def _rounded(values: dict, digits: int = 5) -> dict:
    return {k: round(float(v), digits) for k, v in values.items()}


def build_entry(  # noqa: PLR0913 - the build step's inputs, passed explicitly
    py: Path,
    face_api_tgz: Path,
    cache: Path,
    work: Path,
    calib: np.ndarray,
    calib_desc: str,
    detector_path: Path,
    mesh_path: Path,
    log,
) -> dict:
    """The manifest entry of the shipped embedder (with `_path`: the int8 file to ship)."""
    calib_path = work / "calib_embedder.npy"
    np.save(calib_path, calib)
    emb_work = work / "dlib"
    float_path, int8_path = faceapi.convert(py, face_api_tgz, emb_work, calib_path, log)
    mesh = FaceMeshModel(None, interpreter=interpreter(mesh_path))
    if have_shared_data():
        agreement_chips, agreement_set = (
            _lfw_chips(detector_path, mesh),
            (f"chips of the first {AGREEMENT_LFW_IMAGES} LFW pair images (sorted), mesh 5-point alignment"),
        )
    else:
        agreement_chips = np.concatenate([calib, calib[:, :, ::-1]])
        agreement_set = "the calibration chips and their mirror images (no ../shared/data)"
    jsref = faceapi_js.install(face_api_tgz, cache / "jsref", log)
    report = faceapi.validate(
        float_path,
        int8_path,
        calib[:PARITY_CHIPS],
        agreement_chips,
        jsref,
        log,
        rebuild=lambda: faceapi.convert(py, face_api_tgz, emb_work / "rebuild", calib_path, log),
    )
    inputs, outputs = mf.tensor_specs(int8_path)
    inputs[0].update(
        {
            "value_range": "0..255 pixels as int8 (pixel - 128)",
            "colour_order": "BGR",
            "note": "face-api's input normalisation ((rgb - [122.782, 117.001, 104.298]) / 255) is folded "
            "into the first convolution, its channels reversed for BGR",
        }
    )
    outputs[0].update({"meaning": "128-d descriptor (dlib face descriptor, unnormalised)"})
    parity, agree = report["js_parity_cosine"], report["int8_vs_float_cosine"]
    entry: dict = {
        "_path": str(int8_path),
        "file": FILE,
        "kind": "tflite",
        "role": "face embedding: dlib's ResNet face descriptor (128-d), rebuilt from @vladmandic/face-api weights",
        "source": mf.face_api_source("package/model/face_recognition_model-weights_manifest.json + .bin"),
        "licence": LICENCE,
        "inputs": inputs,
        "outputs": outputs,
        "conversion": {
            "tool": "scripts/modelbuild/faceapi_convert.py: weights decoded like tf.io.decodeWeights (uint8 "
            "entries q * scale + min), network rebuilt as a TensorFlow function (face-api's "
            "src/faceRecognitionNet, its down-block zero padding reproduced), scale layers and input "
            "normalisation folded into the convolutions; TFLiteConverter (TF 2.19), builtin ops only",
            "deterministic": report["deterministic"],
            "float_sha256": report["sha256"]["float"],
            "float_size_bytes": report["size_bytes"]["float"],
        },
        "quantization": {
            "kind": "int8 (full integer, int8 input, float32 output)",
            "calibration": {
                "set": calib_desc + "; mesh 5-point chips as the terminal makes them",
                "count": len(calib),
            },
            "input_quantization_asserted": report["int8_input_quantization"],
        },
        "js_parity": {
            "reference": "dist/face-api.node-wasm.js in node with @tensorflow/tfjs 4.22.0, cpu backend, fed RGB",
            "chips": parity["n"],
            "cosine_min": round(parity["min"], 7),
            "cosine_mean": round(parity["mean"], 7),
            "chips_set": "the first calibration chips (non-LFW development faces)",
        },
        "agreement": {
            "cosine_int8_vs_float_mean": round(agree["mean"], 5),
            "cosine_int8_vs_float_min": round(agree["min"], 5),
            "crops": agree["n"],
            "crops_set": agreement_set,
        },
        "xnnpack_partitions": report["xnnpack"]["int8"]["partitions"],
        "xnnpack": report["xnnpack"],
        "latency_ms_1thread": {
            "int8": report["latency_ms_1thread"]["int8"],
            "float32": report["latency_ms_1thread"]["float"],
        },
        "preprocessing": {
            "chip": "150x150, least-squares similarity (no reflection) from face-mesh points 263, 362, 33, 133, "
            "2 onto dlib's 5-point template at padding 0.25; BlazeFace keypoints 0, 1, 3 when no mesh is found; "
            "area-averaged first when the face shrinks > 2x (device.vision.align)",
            "colour_order": "BGR uint8 straight from the frame",
        },
        "scoring": {
            "method": "normalise(normalise(d(chip)) + normalise(d(mirrored chip))), cosine; no mean descriptor "
            "(it costs this model about a point on LFW, ../shared/MODELS.md) (device.vision.embed)",
        },
    }
    if have_shared_data():
        log("  LFW folds 1-5 through the terminal's own path (what `faceonly evaluate --lfw` runs)")
        model = ModelRef("embedder", FILE, report["sha256"]["int8"])
        results, calibration = _lfw_figures(detector_path, mesh_path, int8_path, model, log)
        entry.update(lfw_sections(results, calibration, log))
    return entry


def lfw_sections(results: dict, calibration: thresholdcurves.Calibration, log) -> dict:
    """The embedder entry's `accuracy` and `thresholds` from `faceonly evaluate --lfw`'s figures and the
    shipped threshold recipe on the same embeddings (also used by build_models.py --thresholds-only)."""
    thresholds = calibration.thresholds
    log(f"  LFW: {_rounded(results, 4)}")
    log(f"  thresholds: {_rounded(thresholds)}")
    curve, mean_curves = calibration.curve, calibration.mean_curves

    def points(values: list[tuple[float, float]]) -> list[list[float]]:
        # Rounded the safe way: a threshold up (never looser), the end point's FAR up (never promising more).
        return [[_up(far, 4), _threshold_up(thr)] for far, thr in values]

    def by_target(prefix: str, digits: int = 5) -> dict[str, float]:
        return {
            k.removeprefix(prefix): round(v, digits)
            for k, v in thresholds.items()
            if k.startswith(prefix + "far_")
        }

    return {
        "accuracy": {
            "lfw_view2_folds_1_5": _rounded(results),
            "how": "../shared/data/verification/lfw pairs_view2_local.csv through faceonly_lab.lfw.verification "
            "(what `faceonly evaluate --lfw` runs) with the shipped short-range detector, face mesh and int8 "
            "embedder. Nothing is fitted on LFW except each fold's decision threshold, chosen on the other 4 "
            "folds; TAR@FAR pooled over the 3000 pair scores. lfw_banded_*: the pairs decided as the terminal "
            "decides a probe (img2's single view, its flip average only within the mirror band of the "
            "single-view threshold: faceonly_lab.lfw.banded_pair_results), with the share of pairs that "
            "needed the mirror; lfw_single_view_accuracy: the single view alone",
        },
        "thresholds": {
            # What the curve gives at each target: the threshold at which the FAR's upper bound is the target.
            "per_comparison": {k: _threshold_up(thresholds[k]) for k in by_target("")},
            # For reference only (no decision uses them): where the measured share of impostors is the target.
            "per_comparison_point_estimate": by_target("point_"),
            "bound": {
                "name": farbound.BOUND_NAME,
                "confidence": farbound.BOUND_CONFIDENCE,
                "replicates": farbound.BOUND_REPLICATES,
                "seed": farbound.BOUND_SEED,
                "resampled": "identities (LFW folders), with replacement; a comparison of identities a and b "
                "weighs w_a * w_b",
                "why": "impostor comparisons are not independent: every pair shares its two people with "
                "thousands of others, so Clopper-Pearson on the pair count is several times too narrow; "
                "resampling people bounds the FAR over the population of people the images sample "
                "(faceonly_lab.farbound, docs/identification.md)",
            },
            # A test that recomputes these compares like with like only on the same libraries: it names them.
            "computed_with": {
                **{name: version(name) for name in lfw.THRESHOLD_LIBRARIES},
                "note": COMPUTED_WITH_NOTE,
            },
            "genuine_accept_at_threshold": by_target("tar_at_", 4),
            # Monotone (far falling, threshold never falling): 1:N and 1:1 read any per-comparison target off it.
            "curve": points(curve),
            "curve_smallest_far": _up(curve[-1][0], 4),
            # A mean template meets strangers at higher scores than one photo: one curve per photo count.
            "mean_curves": {str(k): points(c) for k, c in sorted(mean_curves.items())},
            "mean_curves_how": "the same, over the cosine of every mean-of-k template (disjoint runs of k of "
            "an identity's images, sorted by file name, the mean L2-normalised) against every image of another "
            "identity (faceonly_lab.thresholdcurves.mean_template_curves); `faceonly gallery build` makes such "
            "templates and the terminal applies the highest threshold its gallery's template kinds need",
            "single_view": single_view_section(calibration, points),
            "impostor_pairs": int(thresholds["impostor_pairs"]),
            "genuine_pairs": int(thresholds["genuine_pairs"]),
            "how": "over EVERY cross-identity pair of the 3811 LFW folds 1-5 images (identity = folder), so that "
            "1e-5 has enough impostors. curve: [far, threshold] from FAR "
            f"{thresholdcurves.CURVE_TOP_FAR:g} down, {thresholdcurves.CURVE_POINTS_PER_DECADE} points per "
            "decade; each threshold is the lowest at which the 95% upper confidence bound of the FAR (see "
            "bound) is at most far, so far is a promise over people the curve was not fitted on, not a "
            "measured share. It ends at the bound at the threshold with "
            f"{thresholdcurves.MIN_IMPOSTORS_ABOVE} impostors above (curve_smallest_far): on-device 1:N and 1:1 "
            "read their per-comparison target off it (the next stricter point, never interpolated looser) and "
            "clamp there, reporting so. per_comparison: the curve's thresholds at 1e-2..1e-5; "
            "per_comparison_point_estimate: where the measured share of impostors is the target (for reference). "
            "Fitted on LFW: the LFW accuracy above does not use them. genuine_accept_at_threshold: every "
            "same-identity pair of those images at the per_comparison thresholds (harder than pairs.txt's "
            "same pairs)",
        },
    }


def single_view_section(calibration: thresholdcurves.Calibration, points) -> dict:
    """The curves for single-view probes (the chip alone: the terminal embeds its mirror image only when the
    decision is close, device.identity.probe), made by the same recipe."""
    thresholds = calibration.single_thresholds
    curve = calibration.single_curve
    if not curve:
        raise ValueError("no single-view curve: the LFW pass must keep each image's single view")

    def by_target(prefix: str, digits: int = 5) -> dict[str, float]:
        return {
            k.removeprefix(prefix): round(v, digits)
            for k, v in thresholds.items()
            if k.startswith(prefix + "far_")
        }

    return {
        "curve": points(curve),
        "curve_smallest_far": _up(curve[-1][0], 4),
        "mean_curves": {str(k): points(c) for k, c in sorted(calibration.single_mean_curves.items())},
        "per_comparison": {k: _threshold_up(thresholds[k]) for k in by_target("")},
        "per_comparison_point_estimate": by_target("point_"),
        "genuine_accept_at_threshold": by_target("tar_at_", 4),
        "impostor_comparisons": int(thresholds["impostor_pairs"]),
        "genuine_comparisons": int(thresholds["genuine_pairs"]),
        "how": "the same recipe and bound over the cosine of each image's SINGLE-VIEW embedding (the chip "
        "alone, one invoke, L2-normalised) against every image of another identity as a flip-averaged "
        "template, both ways (3811 x 3810 ordered comparisons less same-identity ones), and against every "
        "mean-of-k template (mean_curves); genuine: each image's single view against every other image of its "
        "identity. A probe states its kind (events: biometric.probe) and is matched off its own family",
    }
