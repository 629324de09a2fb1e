"""Measurements the build records in the manifest: agreement with float, LFW verification, latency."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from device.vision.embed import normalise

from .data import LFW_DIR, Pair, read_bgr


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


def lfw_cross_validate(pairs: list[Pair], desc: dict[str, np.ndarray], subtract_mean: bool) -> dict:
    """Folds 1-5: fit the mean descriptor and the threshold on the other folds, test on the held-out one.

    A pair with an image without a detected face counts as an error (score -inf).
    """
    folds = sorted({p.fold for p in pairs})
    accs = []
    all_scores, all_same = [], []
    for fold in folds:
        dev = [p for p in pairs if p.fold != fold]
        test = [p for p in pairs if p.fold == fold]
        mean = None
        if subtract_mean:
            dev_images = sorted({p.img1 for p in dev} | {p.img2 for p in dev})
            mean = np.mean([desc[i] for i in dev_images if i in desc], axis=0)
        dev_s, dev_y = _scores(dev, desc, mean)
        test_s, test_y = _scores(test, desc, mean)
        thr = _best_threshold(dev_s, dev_y)
        accs.append(float(np.mean((test_s >= thr) == test_y)))
        all_scores.append(test_s)
        all_same.append(test_y)
    scores, same = np.concatenate(all_scores), np.concatenate(all_same)
    return {
        "accuracy_mean": round(float(np.mean(accs)), 4),
        "accuracy_per_fold": [round(a, 4) for a in accs],
        "tar_at_far_1e-2": round(_tar_at_far(scores, same, 1e-2), 4),
        "tar_at_far_1e-3": round(_tar_at_far(scores, same, 1e-3), 4),
    }


def _scores(pairs: list[Pair], desc: dict[str, np.ndarray], mean) -> tuple[np.ndarray, np.ndarray]:
    s = []
    for p in pairs:
        if p.img1 in desc and p.img2 in desc:
            a, b = normalise(np.stack([desc[p.img1], desc[p.img2]]), mean)
            s.append(float(a @ b))
        else:
            s.append(-np.inf)
    return np.array(s), np.array([p.same for p in pairs])


def _best_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    finite = np.sort(scores[np.isfinite(scores)])
    candidates = (finite[:-1] + finite[1:]) / 2
    accs = [np.mean((scores >= t) == same) for t in candidates]
    return float(candidates[int(np.argmax(accs))])


def _tar_at_far(scores: np.ndarray, same: np.ndarray, far: float) -> float:
    """Pooled over the held-out folds' scores (each from statistics fitted without that fold)."""
    neg = np.sort(scores[~same])[::-1]
    allowed = int(np.floor(far * len(neg)))
    thr = neg[allowed] if allowed < len(neg) else -np.inf
    return float(np.mean(scores[same] > thr))
