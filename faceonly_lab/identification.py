"""`faceonly evaluate --identification CSV`: open-set 1:N figures of the terminal's own path.

CSV columns path,subject,role (role = gallery | probe; paths relative to the CSV). A probe whose subject has
no gallery row is an unknown. Each image is embedded exactly as the terminal embeds a face (FaceEncoder, the
face nearest the image centre); an image without a face is counted, and scores as no match.

Figures: rank-1 of the known probes (the right subject on top, whatever the score), known-accept rate (the
right subject on top AND above the threshold), wrong-accept rate (a known probe accepted as someone else),
unknown-accept rate (an unknown probe accepted as anyone), all at the threshold in force for the per-search
false-accept target, which comes off a threshold curve for the gallery's template kind: the shipped ones,
or ones made by the same recipe from another set (--calibration: identities disjoint from the evaluated
ones make it a held-out check). `target_held` says whether the strangers let through stayed within the
target; `promised_per_search_far` is what the curves promise at the threshold (their 95% upper bound: the
target, or more where the target is beyond the calibration data and the threshold is clamped). Templates are made exactly as `faceonly gallery build` makes them
(device.identity.templates).
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from device.identity.matcher import Matcher
from device.identity.templates import TemplateMode, make_templates
from device.identity.thresholds import CurveSet, ThresholdCurve, gallery_operating_point
from device.vision.stills import load_image
from faceonly_lab.lfw import central_face

Progress = Callable[[str], None]
ROLES = ("gallery", "probe")


@dataclass(frozen=True)
class Row:
    path: Path
    subject: str
    role: str


def read_identification_csv(path: Path, any_role: bool = False) -> list[Row]:
    """Rows of an identification CSV; a bad header, role or empty field names the line. `any_role`: a
    calibration set, where the role column is optional and ignored."""
    needed = {"path", "subject"} if any_role else {"path", "subject", "role"}
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or not needed <= set(reader.fieldnames):
            raise ValueError(f"{path}: the header must name the columns {','.join(sorted(needed))}")
        rows = []
        for line, r in enumerate(reader, start=2):
            file, subject, role = ((r.get(k) or "").strip() for k in ("path", "subject", "role"))
            if not file or not subject:
                raise ValueError(f"{path}: line {line}: path and subject must not be empty")
            if any_role:
                role = "probe"
            elif role not in ROLES:
                raise ValueError(f"{path}: line {line}: role must be gallery or probe, got {role!r}")
            rows.append(Row(path.parent / file, subject, role))
    if not any_role and not any(r.role == "gallery" for r in rows):
        raise ValueError(f"{path}: no gallery rows")
    return rows


def embed_images(paths: list[Path], detector, encoder, progress: Progress) -> dict[Path, np.ndarray]:
    """Embedding of the central face of each image (the terminal's path); images without a face are absent."""
    out: dict[Path, np.ndarray] = {}
    for i, path in enumerate(paths):
        if i % 500 == 0:
            progress(f"identification: {i}/{len(paths)} images")
        image = load_image(path)
        face = central_face(detector.detect(image), image.shape)
        if face is not None:
            out[path] = encoder.encode(image, face).embedding
    return out


def build_matcher(
    gallery: list[tuple[str, np.ndarray]], mode: TemplateMode = "each"
) -> tuple[Matcher, set[int]]:
    """(one subject per id, its templates made as `gallery build` makes them; the photos-per-template
    kinds present)."""
    by_subject: dict[str, list[np.ndarray]] = {}
    for subject, emb in gallery:
        by_subject.setdefault(subject, []).append(np.asarray(emb, np.float32))
    subjects = sorted(by_subject)
    made = [make_templates(np.stack(by_subject[s]), mode) for s in subjects]
    return Matcher(subjects, [t for t, _ in made]), {k for _, k in made}


def identification(
    rows: list[Row],
    embeddings: dict[Path, np.ndarray],
    curves: CurveSet,
    per_search: float,
    mode: TemplateMode = "each",
    scores_out: dict | None = None,
) -> dict[str, float]:
    """The open-set figures of one gallery/probe split at one per-search false-accept target.

    `scores_out`, when given, receives each probe's best subject score, split known / unknown (for plots).
    """
    matcher, averaged = build_matcher(
        [(r.subject, embeddings[r.path]) for r in rows if r.role == "gallery" and r.path in embeddings], mode
    )
    enrolled = set(matcher.subjects)
    probes = [r for r in rows if r.role == "probe"]
    point = gallery_operating_point(curves, per_search, max(matcher.comparisons, 1), averaged or {1})
    found = [r for r in probes if r.path in embeddings]
    scores = (
        matcher.subject_scores_many(np.stack([embeddings[r.path] for r in found]))
        if found
        else np.zeros((0, matcher.size))
    )
    best = np.argmax(scores, axis=1) if matcher.size else np.zeros(len(found), int)
    top = scores[np.arange(len(found)), best] if matcher.size else np.full(len(found), -np.inf)
    accepted = np.isfinite(top) & (top > point.threshold)
    top_subject = [matcher.subjects[i] if matcher.size else None for i in best]
    known = np.array([r.subject in enrolled for r in found], bool)
    right = np.array([s == r.subject for s, r in zip(top_subject, found, strict=True)], bool)
    n_known = sum(r.subject in enrolled for r in probes)
    n_unknown = len(probes) - n_known

    if scores_out is not None:
        scores_out.update(
            known=top[known], unknown=top[~known], threshold=point.threshold, per_search=per_search
        )

    def share(mask: np.ndarray, total: int) -> float:
        return float(mask.sum() / total) if total else float("nan")

    return {
        "gallery_size": float(matcher.size),
        "gallery_templates": float(matcher.comparisons),
        "known_probes": float(n_known),
        "unknown_probes": float(n_unknown),
        "images_without_face": float(sum(r.path not in embeddings for r in rows)),
        "rank1": share(known & right, n_known),
        "known_accept_rate": share(known & right & accepted, n_known),
        "wrong_accept_rate": share(known & ~right & accepted, n_known),
        "unknown_accept_rate": share(~known & accepted, n_unknown),
        "unknown_accepted": float((~known & accepted).sum()),
        "threshold": point.threshold,
        "per_search_far": per_search,
        "per_comparison_far": point.per_comparison_far,
        "threshold_clamped": float(point.clamped),
        # What the curves promise at this threshold (95% upper bound): the target, or more when clamped.
        "promised_per_search_far": point.promised_per_search_far,
        "target_held": float(share(~known & accepted, n_unknown) <= per_search),
        "photos_per_template": float(max(averaged, default=1)),
    }


def calibration_curves(rows: list[Row], embeddings: dict[Path, np.ndarray]) -> CurveSet:
    """Threshold curves from a calibration set's images (any role) by the shipped recipe: the identity-
    bootstrap FAR bound over every cross-identity pair for single photos, and over mean templates of 2..5 of
    an identity's images against every other identity's image (faceonly_lab.thresholdcurves)."""
    from faceonly_lab import farbound
    from faceonly_lab.thresholdcurves import CURVE_TOP_FAR, mean_template_curves, threshold_curve

    found = [r for r in rows if r.path in embeddings]
    x, identities = np.stack([embeddings[r.path] for r in found]), [r.subject for r in found]
    curves = {
        1: ThresholdCurve.from_points(threshold_curve(farbound.pair_impostors(x, identities, CURVE_TOP_FAR)))
    }
    for k, points in mean_template_curves(x, identities).items():
        curves[k] = ThresholdCurve.from_points(points)
    return CurveSet(curves)


@dataclass(frozen=True)
class SearchRate:
    """A per-search stranger-accept rate with its 95% interval (over the strangers' identities)."""

    rate: float
    interval: tuple[float, float]
    strangers: int


def random_gallery_search(
    x: np.ndarray, identities: list[str], averaged: int, threshold: float, subjects: int, seed: int = 22
) -> SearchRate:
    """How often a stranger gets through a gallery of `subjects` people drawn at random from `identities`:
    every image is a stranger to every gallery without its own identity.

    A subject's template is its first photo (`averaged` 1) or the mean of its first `averaged` photos; people
    with fewer photos are never enrolled. For a stranger with h of the S other subjects above the threshold,
    a random gallery of N of them lets it through with probability 1 - C(S - h, N) / C(S, N): exact over the
    galleries, averaged over every image. The interval resamples the strangers' identities (one person's
    images are not independent strangers)."""
    names = np.asarray(identities)
    order = sorted(set(identities))
    templates, owners = [], []
    for name in order:
        rows = np.flatnonzero(names == name)
        if len(rows) >= averaged:
            mean = np.asarray(x[rows[:averaged]], np.float64).mean(axis=0)
            templates.append(mean / np.linalg.norm(mean))
            owners.append(name)
    own = names[:, None] == np.asarray(owners)[None, :]
    above = ((np.asarray(x, np.float64) @ np.stack(templates).T) > threshold) & ~own
    others = len(owners) - own.sum(axis=1)
    n = min(subjects, int(others.min()))
    misses = others - above.sum(axis=1)
    # C(S - h, N) / C(S, N) = prod_{i < N} (S - h - i) / (S - i); zero once S - h < N
    i = np.arange(n)
    ratio = np.clip(misses[:, None] - i, 0, None) / (others[:, None] - i)
    through = 1.0 - np.prod(ratio, axis=1)
    inverse = np.unique(names, return_inverse=True)[1]
    sums, counts = np.bincount(inverse, through), np.bincount(inverse)
    draws = np.random.default_rng(seed).multinomial(len(sums), np.full(len(sums), 1 / len(sums)), size=1000)
    resampled = (draws @ sums) / (draws @ counts)
    return SearchRate(
        float(through.mean()),
        (float(np.quantile(resampled, 0.025)), float(np.quantile(resampled, 0.975))),
        len(through),
    )
