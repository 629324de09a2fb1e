"""BlazeFace detectors: quantized candidates measured against the exact float32 reference; which one ships.

MediaPipe publishes the detectors with float16 weights behind DEQUANTIZE ops (float32 compute). Folding those
weights to float32 constants gives the exact float32 reference (float16 -> float32 is lossless) and is also
what ai-edge-quantizer needs to quantize them at all. Every measure uses the shipped score threshold
(device/config/vision.py `detector_min_score`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from device.config.vision import VisionConfig
from device.vision.boxes import box_iou
from device.vision.detect import FaceDetector
from faceonly_lab.lfw import read_pairs

from .data import IMAGE_SUFFIXES, LFW_PAIRS, SHARED_DATA, have_shared_data, read_bgr
from .evaluate import interpreter, latency_ms

# Score and box heads stay float in the static int8 candidate: the score logits reach about -1000.
FLOAT_HEADS = "classificator|regressor|reshape"
QUANTIZED = ("static_int8", "dynamic_int8")  # tried in this order; float16 (upstream) is the fallback
LFW_SUBSET_STEP = 20
ACCEPTANCE = (
    "at the shipped score threshold: best-box IoU vs the float32 reference mean >= 0.95 (min >= 0.5) over the "
    "agreement frames, the same detection rate on them and on every LFW folds 1-5 image, no more false faces "
    "on ../shared/data/negatives, 1-thread latency <= 1.25x float32; first accepted of static_int8, "
    "dynamic_int8, float16 ships"
)
RECIPE_NOTES = {
    "static_int8": "ai-edge-quantizer static int8 (int8 activations and weights, calibrated), float16 weights "
    f"folded to float32 first, ops producing /{FLOAT_HEADS}/ left float (the score logits reach about -1000)",
    "dynamic_int8": "ai-edge-quantizer dynamic range (int8 weights, float activations), float16 weights "
    "folded to float32 first",
    "float16": "the upstream file as published: float16 weights, DEQUANTIZE at load, float32 compute",
}


@dataclass(frozen=True)
class DetectorSets:
    frames: list[np.ndarray]  # agreement frames
    description: str
    lfw: list[Path]  # detection rate
    negatives: list[Path]  # false faces


def detector_sets(calib_frames: list[np.ndarray], calib_desc: str) -> DetectorSets:
    if not have_shared_data():
        return DetectorSets(calib_frames, calib_desc, [], [])
    pairs = read_pairs(LFW_PAIRS)
    images = sorted({p.img1 for p in pairs} | {p.img2 for p in pairs})
    subset = [read_bgr(path) for path in images[::LFW_SUBSET_STEP]]
    negatives = sorted(p for p in (SHARED_DATA / "negatives").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    return DetectorSets(
        calib_frames + subset,
        f"{len(calib_frames)} calibration frames ({calib_desc}) + every {LFW_SUBSET_STEP}th LFW folds 1-5 image "
        f"({len(subset)})",
        images,
        negatives,
    )


def shipped_config_detector(path: Path, variant: str) -> FaceDetector:
    """The detector as the service runs it: vision config score threshold and NMS IoU."""
    vision = VisionConfig()
    return FaceDetector(
        None, variant, vision.detector_min_score, vision.nms_iou, interpreter=interpreter(path)
    )


def agreement(sets: DetectorSets, ref: FaceDetector, cand: FaceDetector) -> dict:
    """Best-box IoU vs the reference (0 where the candidate misses a face the reference found)."""
    ious, found_r, found_c = [], 0, 0
    for frame in sets.frames:
        a, b = ref.detect(frame), cand.detect(frame)
        found_r += bool(a)
        found_c += bool(b)
        if a:
            ious.append(float(box_iou(a[0].box, b[0].box[None])[0]) if b else 0.0)
    arr = np.array(ious)
    return {
        "frames": len(sets.frames),
        "detection_rate_float32": round(found_r / len(sets.frames), 4),
        "detection_rate": round(found_c / len(sets.frames), 4),
        "best_box_iou_mean": round(float(arr.mean()), 4) if arr.size else None,
        "best_box_iou_min": round(float(arr.min()), 4) if arr.size else None,
    }


def real_image_checks(sets: DetectorSets, det: FaceDetector) -> dict:
    found = sum(bool(det.detect(read_bgr(p))) for p in sets.lfw)
    false = sum(len(det.detect(read_bgr(p))) for p in sets.negatives)
    return {
        "lfw_images": len(sets.lfw),
        "lfw_detection_rate": round(found / max(len(sets.lfw), 1), 4),
        "negatives_images": len(sets.negatives),
        "negatives_false_faces": false,
    }


def paired_latency(path: Path, ref_path: Path, ref_best: float, rounds: int = 3) -> tuple[float, float]:
    """Best-of-rounds latency of a candidate and the reference, measured alternately (the cores are shared,
    single medians swing by +-50% here); the reference keeps its best over every pairing."""
    cand = []
    for _ in range(rounds):
        cand.append(latency_ms(path))
        ref_best = min(ref_best, latency_ms(ref_path))
    return min(cand), ref_best


def choose(
    name: str,
    variant: str,
    ref_path: Path,
    candidates: dict[str, Path],
    tried_failed: dict[str, str],
    sets: DetectorSets,
    log: Callable[[str], None],
) -> tuple[str, Path, dict, dict]:
    """(kind, path, its measurements, every candidate's measurements); `candidates` in preference order."""
    ref = shipped_config_detector(ref_path, variant)
    ref_checks = real_image_checks(sets, ref)
    ref_latency = latency_ms(ref_path)
    log(f"  {name} float32 reference: {ref_checks}, {ref_latency} ms")
    tried: dict[str, dict] = {
        k: {"accepted": False, "how": RECIPE_NOTES[k], "error": v} for k, v in tried_failed.items()
    }
    chosen = None
    for kind, path in candidates.items():
        cand = shipped_config_detector(path, variant)
        m = {"how": RECIPE_NOTES[kind], **agreement(sets, ref, cand)}
        m["latency_ms_1thread"], ref_latency = paired_latency(path, ref_path, ref_latency)
        m["size_bytes"] = path.stat().st_size
        ok = (
            (m["best_box_iou_mean"] or 0) >= 0.95
            and (m["best_box_iou_min"] or 0) >= 0.5
            and m["detection_rate"] == m["detection_rate_float32"]
            # float16 computes in float32 like the reference: its latency differs only by machine noise
            and (kind == "float16" or m["latency_ms_1thread"] <= 1.25 * ref_latency)
        )
        if ok or kind == "float16":  # the full LFW pass only for candidates still in the running
            m.update(real_image_checks(sets, cand))
            ok = (
                ok
                and m["lfw_detection_rate"] == ref_checks["lfw_detection_rate"]
                and m["negatives_false_faces"] <= ref_checks["negatives_false_faces"]
            )
        else:
            m["real_image_checks"] = "not run: failed the agreement/latency bar already"
        m["accepted"] = ok
        tried[kind] = m
        log(f"  {name} {kind}: {'OK' if ok else 'rejected'} {m}")
        if ok and chosen is None:
            chosen = (kind, path, m)
    if chosen is None:
        raise SystemExit(f"{name}: no detector candidate met the bar, not even the upstream float16 file")
    reference = {
        "float32": {**ref_checks, "latency_ms_1thread": ref_latency, "size_bytes": ref_path.stat().st_size}
    }
    return chosen[0], chosen[1], chosen[2], {**reference, **tried}
