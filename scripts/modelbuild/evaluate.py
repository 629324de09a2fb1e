"""Measurements the build records in the manifest: agreement with float, LFW verification, latency."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from device.vision.embed import normalise

from .data import LFW_DIR, LFW_PAIRS, Pair, read_bgr


def interpreter(path: Path, threads: int = 1):
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path), num_threads=threads)
    interp.allocate_tensors()
    return interp


def latency_ms(path: Path, repeats: int = 50, threads: int = 1) -> float:
    """Median single-thread invoke time on a fixed random input (the default XNNPACK delegate)."""
    interp = interpreter(path, threads)
    rng = np.random.default_rng(0)
    for d in interp.get_input_details():
        dtype = np.dtype(d["dtype"])
        if dtype.kind == "f":
            data = rng.uniform(0, 1, d["shape"]).astype(dtype)
        else:
            data = rng.integers(-100, 100, d["shape"]).astype(dtype)
        interp.set_tensor(d["index"], data)
    for _ in range(5):
        interp.invoke()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        interp.invoke()
        times.append(time.perf_counter() - t0)
    return round(float(np.median(times)) * 1000, 3)


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = normalise(a, None)
    b = normalise(b, None)
    return np.sum(a * b, axis=1)


def lfw_descriptors(
    pairs: list[Pair],
    detect: Callable,
    crop_fns: dict[str, Callable],
    describe: dict[str, Callable],
    progress: Callable[[str], None] = print,
) -> tuple[dict[tuple[str, str], dict[str, np.ndarray]], list[str]]:
    """Descriptors per (crop variant, model) for every image of the pairs; images with no face are listed."""
    images = sorted({p.img1 for p in pairs} | {p.img2 for p in pairs})
    out: dict[tuple[str, str], dict[str, np.ndarray]] = {}
    missed = []
    for i, rel in enumerate(images):
        if i % 500 == 0:
            progress(f"    LFW descriptors {i}/{len(images)}")
        frame = read_bgr(LFW_DIR / rel)
        faces = detect(frame)
        if not faces:
            missed.append(rel)
            continue
        for crop_name, crop_fn in crop_fns.items():
            crop = crop_fn(frame, faces[0])
            for model_name, fn in describe.items():
                out.setdefault((crop_name, model_name), {})[rel] = fn(crop)
    return out, missed


def _round(result: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 4) for k, v in result.items()}


def lfw_fixed_stats(pairs: list[Pair], desc: dict[str, np.ndarray], mean: np.ndarray | None) -> dict:
    """Folds 1-5 with a fixed (development-fitted) mean: `faceonly evaluate`'s threshold and TAR protocol.

    Each fold's threshold is chosen on the other folds; TAR@FAR is pooled over every pair score. A pair with an
    image without a detected face counts as an error (score -inf).
    """
    from device.vision.evaluation import best_threshold, tar_at_far

    scores = np.array(
        [
            float(np.dot(*normalise(np.stack([desc[p.img1], desc[p.img2]]), mean)))
            if p.img1 in desc and p.img2 in desc
            else -np.inf
            for p in pairs
        ]
    )
    same = np.array([p.same for p in pairs])
    folds = np.array([p.fold for p in pairs])
    accs = []
    for fold in sorted(set(folds.tolist())):
        thr = best_threshold(scores[folds != fold], same[folds != fold])
        accs.append(float(np.mean((scores[folds == fold] >= thr) == same[folds == fold])))
    return {
        "accuracy_mean": round(float(np.mean(accs)), 4),
        "accuracy_per_fold": [round(a, 4) for a in accs],
        "tar_at_far_1e-2": round(tar_at_far(scores[same], scores[~same], 1e-2), 4),
        "tar_at_far_1e-3": round(tar_at_far(scores[same], scores[~same], 1e-3), 4),
    }


def shipped_verification(
    detector_paths: dict[str, Path], embedder_path: Path, mean: np.ndarray, config: dict, log
) -> dict:
    """LFW folds 1-5 exactly as `faceonly evaluate --lfw` measures it, on the files about to be shipped."""
    from device.config.vision import VisionConfig
    from device.vision.detect import FaceDetector
    from device.vision.embed import Embedder
    from device.vision.evaluation import read_pairs, verification

    vision = VisionConfig()
    det = FaceDetector(
        None,
        vision.detector,
        vision.detector_min_score,
        vision.nms_iou,
        interpreter=interpreter(detector_paths[vision.detector]),
    )
    stats = {"mean": mean, "correct_roll": np.array(config["correct_roll"]), "flip": np.array(config["flip"])}
    emb = Embedder(None, interpreter=interpreter(embedder_path), stats=stats)
    return _round(verification(read_pairs(LFW_PAIRS), det, emb, log))
