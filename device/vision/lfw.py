"""The face-verification protocol (LFW View 2 style), the one implementation the CLI and the model build use.

Strict protocol: each fold's decision threshold is chosen on the other folds; TAR at a FAR is pooled over
all pair scores. Per-comparison thresholds for false-accept targets down to 1e-5 need far more impostor
comparisons than a pairs file has, so they are set on every cross-identity pair of the images (identity =
the image's folder, as in LFW).
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from device.contracts import Detection
from device.vision.stills import load_image

Progress = Callable[[str], None]
FAR_TARGETS = (1e-2, 1e-3, 1e-4, 1e-5)
# A threshold for FAR f is reported only when at least this many impostor scores lie above it.
MIN_IMPOSTORS_ABOVE = 10
# The libraries whose releases move the scores (JPEG decoding, warps, the interpreter): the manifest records the
# versions its thresholds came from, and a recomputation is compared like with like only on those.
THRESHOLD_LIBRARIES = ("numpy", "opencv-python-headless", "ai-edge-litert")
# The shipped threshold curve: from this FAR down to the smallest one the impostors support, this many
# points per decade (1:N turns a per-search target into any per-comparison FAR in between).
CURVE_TOP_FAR = 1e-1
CURVE_POINTS_PER_DECADE = 20
# Mean templates the shipped curves cover (device.identity.gallery.MAX_AVERAGED is the largest).
MEAN_TEMPLATE_PHOTOS = (2, 3, 4, 5)


@dataclass(frozen=True)
class Pair:
    fold: int
    img1: Path
    img2: Path
    same: bool


def far_key(far: float) -> str:
    """1e-3 -> "far_1e-3" (the key of a threshold in results and in the manifest)."""
    mantissa, exponent = f"{far:.0e}".split("e")
    return f"far_{mantissa}e{int(exponent)}"


def read_pairs(path: Path) -> list[Pair]:
    """CSV (fold,img1,img2,same; paths relative to the CSV) or the official LFW pairs.txt (names + numbers)."""
    text = path.read_text(encoding="utf-8")
    root = path.parent
    if text.lstrip().startswith("fold"):
        rows = list(csv.DictReader(text.splitlines()))
        return [
            Pair(
                int(r["fold"]), root / r["img1"], root / r["img2"], r["same"].strip() in ("1", "true", "True")
            )
            for r in rows
        ]
    lines = [ln.split() for ln in text.splitlines() if ln.strip()]
    folds, per_fold = (int(lines[0][0]), int(lines[0][1])) if len(lines[0]) == 2 else (1, len(lines))
    images = root / "lfw-deepfunneled" if (root / "lfw-deepfunneled").is_dir() else root / "lfw"

    def img(name: str, num: str) -> Path:
        return images / name / f"{name}_{int(num):04d}.jpg"

    pairs = []
    body = lines[1:] if len(lines[0]) == 2 else lines
    for i, parts in enumerate(body):
        fold = i // (2 * per_fold) + 1 if folds > 1 else 1
        if len(parts) == 3:
            pairs.append(Pair(fold, img(parts[0], parts[1]), img(parts[0], parts[2]), True))
        elif len(parts) == 4:
            pairs.append(Pair(fold, img(parts[0], parts[1]), img(parts[2], parts[3]), False))
        else:
            raise ValueError(f"{path}: line {i + 2} is neither a same nor a different pair")
    return pairs


def central_face(faces: list[Detection], shape: tuple[int, ...]) -> Detection | None:
    """The face nearest the image centre (LFW images are centred on their subject)."""
    if not faces:
        return None
    h, w = shape[:2]
    centre = np.array([w / 2, h / 2])

    def dist(d: Detection) -> float:
        return float(np.linalg.norm((d.box[:2] + d.box[2:]) / 2 - centre))

    return min(faces, key=dist)


def best_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    candidates = np.unique(scores)
    accs = [np.mean((scores >= c) == same) for c in candidates]
    return float(candidates[int(np.argmax(accs))])


def tar_at_far(genuine: np.ndarray, impostor: np.ndarray, far: float) -> float:
    """Share of genuine pairs accepted at the lowest threshold whose impostor acceptance is <= far."""
    return float(np.mean(genuine > threshold_at_far(impostor, far)))


def threshold_at_far(impostor: np.ndarray, far: float) -> float:
    """The lowest threshold t with share(impostor > t) <= far (scores above t are accepted)."""
    imp = np.sort(np.asarray(impostor))[::-1]
    allowed = int(np.floor(far * len(imp)))
    return float(imp[allowed]) if allowed < len(imp) else -np.inf


def threshold_curve(
    impostor: np.ndarray, top_far: float = CURVE_TOP_FAR, per_decade: int = CURVE_POINTS_PER_DECADE
) -> list[tuple[float, float]]:
    """[(far, threshold)] with far falling log-evenly from `top_far` to the smallest FAR that still has
    MIN_IMPOSTORS_ABOVE impostors above its threshold (that end point included); thresholds never fall as
    far falls. Empty when the impostors cannot support even `top_far`."""
    imp = np.sort(np.asarray(impostor, np.float64))[::-1]
    smallest = MIN_IMPOSTORS_ABOVE / len(imp) if len(imp) else np.inf
    if smallest > top_far:
        return []
    steps = int(np.floor(np.log10(top_far / smallest) * per_decade + 1e-9))
    fars = [top_far * 10 ** (-k / per_decade) for k in range(steps + 1)]
    if fars[-1] > smallest * (1 + 1e-9):
        fars.append(smallest)
    thresholds = np.maximum.accumulate(
        [float(imp[min(int(np.floor(f * len(imp) + 1e-9)), len(imp) - 1)]) for f in fars]
    )
    return [(float(f), float(t)) for f, t in zip(fars, thresholds, strict=True)]


def curve_summary(curve: list[tuple[float, float]]) -> dict[str, float]:
    """What a threshold curve covers, as plain numbers (the table and JSON of `faceonly evaluate`)."""
    if not curve:
        return {"curve_points": 0.0}
    return {
        "curve_points": float(len(curve)),
        "curve_top_far": curve[0][0],
        "curve_smallest_far": curve[-1][0],
        "curve_threshold_at_smallest_far": curve[-1][1],
    }


def cross_identity_scores(embeddings: np.ndarray, identities: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(genuine, impostor) cosine scores over every pair of the embeddings (identity = label)."""
    x = np.asarray(embeddings, np.float32)
    if len(identities) != len(x):
        raise ValueError(f"{len(x)} embeddings but {len(identities)} identities")
    ids = np.unique(np.asarray(identities), return_inverse=True)[1]
    i, j = np.triu_indices(len(x), 1)
    scores = (x @ x.T)[i, j]
    same = ids[i] == ids[j]
    return scores[same], scores[~same]


def mean_template_impostors(embeddings: np.ndarray, identities: list[str], averaged: int) -> np.ndarray:
    """Cosine scores of every mean-of-`averaged` template (disjoint runs of an identity's images, in the
    order given) against every image of another identity: what a gallery of such templates meets."""
    x = np.asarray(embeddings, np.float32)
    if len(identities) != len(x):
        raise ValueError(f"{len(x)} embeddings but {len(identities)} identities")
    ids = np.unique(np.asarray(identities), return_inverse=True)[1]
    templates, owners = [], []
    for identity in range(int(ids.max()) + 1 if len(ids) else 0):
        rows = np.flatnonzero(ids == identity)
        for start in range(0, len(rows) - averaged + 1, averaged):
            mean = x[rows[start : start + averaged]].mean(axis=0)
            templates.append(mean / max(float(np.linalg.norm(mean)), 1e-12))
            owners.append(identity)
    if not templates:
        return np.zeros(0, np.float32)
    scores = x @ np.stack(templates).T
    return scores[ids[:, None] != np.asarray(owners)[None, :]]


def mean_template_curves(
    embeddings: np.ndarray, identities: list[str], counts: tuple[int, ...] = MEAN_TEMPLATE_PHOTOS
) -> dict[int, list[tuple[float, float]]]:
    """{photos per template: threshold curve} for mean templates (counts the data cannot support are absent)."""
    curves = {k: threshold_curve(mean_template_impostors(embeddings, identities, k)) for k in counts}
    return {k: c for k, c in curves.items() if len(c) >= 2}


def roc_auc(genuine: np.ndarray, impostor: np.ndarray) -> float:
    """P(genuine score > impostor score), ties counted half (Mann-Whitney U / (n_g n_i))."""
    imp = np.sort(np.asarray(impostor))
    below = np.searchsorted(imp, genuine, side="left")
    tied = np.searchsorted(imp, genuine, side="right") - below
    return float((below + tied / 2).sum() / (len(genuine) * len(imp)))


def fold_accuracies(scores: np.ndarray, same: np.ndarray, folds: np.ndarray) -> list[float]:
    """Accuracy of each fold at the threshold chosen on the other folds."""
    accs = []
    for fold in sorted(set(folds.tolist())):
        train, test = folds != fold, folds == fold
        if not train.any():
            train = test
        thr = best_threshold(scores[train], same[train])
        accs.append(float(np.mean((scores[test] >= thr) == same[test])))
    return accs


def pair_results(scores: np.ndarray, same: np.ndarray, folds: np.ndarray) -> dict[str, float]:
    accs = fold_accuracies(scores, same, folds)
    out = {
        "lfw_pairs": float(len(scores)),
        "lfw_accuracy": float(np.mean(accs)),
        "lfw_accuracy_std": float(np.std(accs)),
        "lfw_auc": roc_auc(scores[same], scores[~same]),
    }
    for far in (1e-2, 1e-3):
        out[f"lfw_tar_at_far_{far:g}"] = tar_at_far(scores[same], scores[~same], far)
    return out


def all_pair_thresholds(
    embeddings: np.ndarray, identities: list[str], targets: tuple[float, ...] = FAR_TARGETS
) -> dict[str, float]:
    """Per-comparison thresholds for each FAR target over every cross-identity pair of the embeddings,
    with the genuine acceptance (every same-identity pair) at each. Targets the data cannot support (fewer
    than MIN_IMPOSTORS_ABOVE impostors above) are left out and their absence is the answer."""
    return pair_thresholds(*cross_identity_scores(embeddings, identities), targets)


def pair_thresholds(
    genuine: np.ndarray, impostor: np.ndarray, targets: tuple[float, ...] = FAR_TARGETS
) -> dict[str, float]:
    out = {"impostor_pairs": float(len(impostor)), "genuine_pairs": float(len(genuine))}
    for far in targets:
        if far * len(impostor) < MIN_IMPOSTORS_ABOVE:
            continue
        thr = threshold_at_far(impostor, far)
        out[far_key(far)] = thr
        out[f"tar_at_{far_key(far)}"] = float(np.mean(genuine > thr))
    return out


def verification(
    pairs: list[Pair], detector, encoder, progress: Progress, scores_out: dict | None = None
) -> tuple[dict, dict, list[tuple[float, float]], dict[int, list[tuple[float, float]]]]:
    """(results, thresholds, curve, mean curves) of the terminal's own path (detect, mesh, 5-point chip, flip
    embed, cosine); thresholds and the dense threshold curve over every cross-identity pair of the images,
    and the curves of mean templates of 2..5 of an identity's images against every other identity's image.
    `scores_out`, when given, receives the raw scores for plots (pair scores and labels, cross-identity
    genuine and impostor scores).

    `encoder` is a device.vision.embed.FaceEncoder. An image without a detected face counts as a detection
    failure and scores as a mismatch with everything.
    """
    images = sorted({p.img1 for p in pairs} | {p.img2 for p in pairs})
    emb: dict[Path, np.ndarray] = {}
    alignments: Counter[str] = Counter()
    for i, path in enumerate(images):
        if i % 500 == 0:
            progress(f"lfw: {i}/{len(images)} images")
        image = load_image(path)
        face = central_face(detector.detect(image), image.shape)
        if face is None:
            continue
        encoding = encoder.encode(image, face)
        alignments[encoding.alignment] += 1
        emb[path] = encoding.embedding
    scores = np.array(
        [float(np.dot(emb[p.img1], emb[p.img2])) if p.img1 in emb and p.img2 in emb else -1.0 for p in pairs]
    )
    same = np.array([p.same for p in pairs])
    folds = np.array([p.fold for p in pairs])
    results = {
        "lfw_images": float(len(images)),
        "lfw_detection_failures": float(len(images) - len(emb)),
        "lfw_detection_rate": len(emb) / len(images),
        "lfw_aligned_by_mesh": alignments["mesh_5point"] / max(len(emb), 1),
        **pair_results(scores, same, folds),
    }
    found = sorted(emb)
    x, identities = np.stack([emb[p] for p in found]), [p.parent.name for p in found]
    genuine, impostor = cross_identity_scores(x, identities)
    if scores_out is not None:
        scores_out.update(pair_scores=scores, pair_same=same, genuine=genuine, impostor=impostor)
    return (
        results,
        pair_thresholds(genuine, impostor),
        threshold_curve(impostor),
        mean_template_curves(x, identities),
    )
