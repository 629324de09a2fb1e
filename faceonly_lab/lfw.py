"""The face-verification protocol (LFW View 2 style), the one implementation the CLI and the model build use.

Strict protocol: each fold's decision threshold is chosen on the other folds; TAR at a FAR is pooled over
all pair scores. Per-comparison thresholds for false-accept targets down to 1e-5 need far more impostor
comparisons than a pairs file has, so they are set on every cross-identity pair of the images (identity =
the image's folder, as in LFW), by the shipped recipe (faceonly_lab.thresholdcurves).
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
from faceonly_lab.thresholdcurves import Calibration, calibrate

Progress = Callable[[str], None]
# The libraries whose releases move the scores (JPEG decoding, warps, the interpreter): the manifest records the
# versions its thresholds came from, and a recomputation is compared like with like only on those.
THRESHOLD_LIBRARIES = ("numpy", "opencv-python-headless", "ai-edge-litert")


@dataclass(frozen=True)
class Pair:
    fold: int
    img1: Path
    img2: Path
    same: bool


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


def banded_pair_results(
    pairs: list[Pair], emb: dict[Path, np.ndarray], single: dict[Path, np.ndarray], band: float
) -> dict[str, float]:
    """The pairs as the terminal decides a probe (device.identity.probe): img1 the flip-averaged template,
    img2's single view the probe, its flip average only when the single view's score is within `band` of
    the single-view threshold. Each fold's two thresholds (single view, flip) are chosen on the other folds,
    as for the accuracy; TAR at FAR 1e-3 with each kind's threshold where that kind's pooled FAR is 1e-3.
    The share of pairs that needed the mirror is given with it."""
    ok = [p for p in pairs if p.img1 in emb and p.img2 in emb]
    s = np.array([float(np.dot(single[p.img2], emb[p.img1])) for p in ok])
    f = np.array([float(np.dot(emb[p.img2], emb[p.img1])) for p in ok])
    same = np.array([p.same for p in ok])
    folds = np.array([p.fold for p in ok])
    missed = len(pairs) - len(ok)  # detection failures: a mismatch with everything, as in pair_results
    correct, mirrored = 0, 0
    for fold in sorted(set(folds.tolist())):
        train, test = folds != fold, folds == fold
        if not train.any():
            train = test
        t_single, t_flip = best_threshold(s[train], same[train]), best_threshold(f[train], same[train])
        near = np.abs(s[test] - t_single) <= band
        decided = np.where(near, f[test] >= t_flip, s[test] >= t_single)
        correct += int(np.sum(decided == same[test]))
        mirrored += int(near.sum())
    t_single = threshold_at_far(s[~same], 1e-3)
    t_flip = threshold_at_far(f[~same], 1e-3)
    near = np.abs(s - t_single) <= band
    accepted = np.where(near, f > t_flip, s > t_single)
    return {
        "lfw_banded_accuracy": correct / (len(ok) + missed),
        "lfw_banded_tar_at_far_0.001": float(np.mean(accepted[same])),
        "lfw_banded_far_at_far_0.001": float(np.mean(accepted[~same])),
        "lfw_banded_mirror_share": mirrored / max(len(ok), 1),
        "lfw_banded_mirror_share_same": float(np.mean(near[same])),
        "lfw_banded_mirror_share_different": float(np.mean(near[~same])),
        "lfw_single_view_accuracy": float(np.mean(fold_accuracies(s, same, folds))),
    }


def verification(
    pairs: list[Pair],
    detector,
    encoder,
    progress: Progress,
    scores_out: dict | None = None,
    band: float | None = None,
) -> tuple[dict, Calibration]:
    """(results, calibration) of the terminal's own path (detect, mesh, 5-point chip, flip embed, cosine): the
    pairs' figures, and the shipped threshold recipe on every image (faceonly_lab.thresholdcurves: bound
    curves for single photos and mean templates, for flip-averaged and for single-view probes, thresholds per
    FAR target). `scores_out`, when given, receives the raw scores for plots (pair scores and labels,
    cross-identity genuine and impostor scores) and the embeddings (paths, embeddings, singles). With `band`
    (the shipped mirror band) the pairs are also decided as the terminal decides a probe
    (`banded_pair_results`).

    `encoder` is a device.vision.embed.FaceEncoder. An image without a detected face counts as a detection
    failure and scores as a mismatch with everything.
    """
    images = sorted({p.img1 for p in pairs} | {p.img2 for p in pairs})
    emb: dict[Path, np.ndarray] = {}
    single: dict[Path, np.ndarray] = {}
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
        if encoding.single is not None:
            single[path] = encoding.single
    found = {
        "lfw_images": float(len(images)),
        "lfw_detection_failures": float(len(images) - len(emb)),
        "lfw_detection_rate": len(emb) / len(images),
        "lfw_aligned_by_mesh": alignments["mesh_5point"] / max(len(emb), 1),
    }
    return _figures(pairs, emb, single, found, progress, scores_out, band)


def _figures(
    pairs: list[Pair],
    emb: dict[Path, np.ndarray],
    single: dict[Path, np.ndarray],
    found_figures: dict[str, float],
    progress: Progress,
    scores_out: dict | None,
    band: float | None = None,
) -> tuple[dict, Calibration]:
    scores = np.array(
        [float(np.dot(emb[p.img1], emb[p.img2])) if p.img1 in emb and p.img2 in emb else -1.0 for p in pairs]
    )
    same = np.array([p.same for p in pairs])
    folds = np.array([p.fold for p in pairs])
    results = {**found_figures, **pair_results(scores, same, folds)}
    if band is not None and len(single) == len(emb):
        results.update(banded_pair_results(pairs, emb, single, band))
    found = sorted(emb)
    x, identities = np.stack([emb[p] for p in found]), [p.parent.name for p in found]
    singles = np.stack([single[p] for p in found]) if len(single) == len(emb) else None
    if scores_out is not None:
        genuine, impostor = cross_identity_scores(x, identities)
        scores_out.update(pair_scores=scores, pair_same=same, genuine=genuine, impostor=impostor)
        scores_out.update(paths=found, embeddings=x, singles=singles, found_figures=found_figures)
    progress("lfw: threshold curves (identity bootstrap bound), flip-averaged and single-view probes")
    return results, calibrate(x, identities, singles=singles)


def save_embeddings(path: Path, scores_out: dict, results: dict, embedder_sha256: str) -> None:
    """The LFW pass's embeddings (flip-averaged and single-view) for `verification_from_file`: a cache
    outside the repository, tied to the embedder that made it."""
    found = scores_out["found_figures"]
    np.savez(
        path,
        paths=np.array([str(p) for p in scores_out["paths"]]),
        embeddings=scores_out["embeddings"],
        singles=scores_out["singles"],
        figures=np.array([found[k] for k in sorted(found)]),
        figure_names=np.array(sorted(found)),
        embedder_sha256=np.array(embedder_sha256),
    )


def load_embeddings(path: Path, embedder_sha256: str) -> tuple[dict, dict, dict]:
    """(flip-averaged, single-view, found figures) of `save_embeddings`' file; ValueError for another embedder."""
    data = np.load(path, allow_pickle=False)
    if str(data["embedder_sha256"]) != embedder_sha256:
        raise ValueError(f"{path} was made by another embedder")
    paths = [Path(p) for p in data["paths"]]
    emb = dict(zip(paths, data["embeddings"], strict=True))
    single = dict(zip(paths, data["singles"], strict=True))
    found = {str(k): float(v) for k, v in zip(data["figure_names"], data["figures"], strict=True)}
    return emb, single, found


def verification_from_file(
    pairs: list[Pair],
    path: Path,
    embedder_sha256: str,
    progress: Progress,
    scores_out: dict | None = None,
    band: float | None = None,
) -> tuple[dict, Calibration]:
    """`verification` from the embeddings a previous pass saved (the same figures, no image read)."""
    emb, single, found = load_embeddings(path, embedder_sha256)
    return _figures(pairs, emb, single, found, progress, scores_out, band)
