"""Checks before a template joins a gallery: is it someone already enrolled, and are one subject's photos one
person?

Duplicates: each new subject's templates are compared with every other subject's (the gallery's and the other
new ones'); a best score above that subject's 1:1 threshold is a clash naming the other subject. The 1:1
threshold is the one a claim against that subject would use: the false-accept target per comparison
(`duplicate_far`, 1e-4 by default) over the templates compared (the new subject's times the other's), read off
the embedder's shipped curves for both subjects' template kinds (photos per template; the highest threshold
any of them needs): device.identity.thresholds.claim_point.

One person: a subject's good photos must group as one person: groups of photos are merged while the mean
score between them is above the single-photo 1:1 threshold at `same_person_far` (average linkage); photos
left in two groups are two people. Measured on LFW: scripts/enrolcheck_report.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from device.identity.gallery import Subject
from device.identity.thresholds import CLAIM_FAR, CurveSet, claim_point
from device.vision.embed import l2_normalise

DUPLICATE_FAR = CLAIM_FAR  # 1e-4: what a 1:1 claim is held to
SAME_PERSON_FAR = 1e-2


@dataclass(frozen=True)
class Clash:
    """A new subject's template scores above another subject's 1:1 threshold: probably the same person."""

    subject: str  # the new subject
    other: str  # the subject it scores as
    score: float
    threshold: float

    def as_json(self) -> dict[str, object]:
        return {
            "subject": self.subject,
            "other": self.other,
            "score": round(self.score, 4),
            "threshold": round(self.threshold, 4),
        }

    def __str__(self) -> str:
        return (
            f"{self.subject} scores {self.score:.3f} against {self.other} (its 1:1 threshold {self.threshold:.3f}): "
            "the same person may be enrolled twice"
        )


def claim_threshold(curves: CurveSet, comparisons: int, kinds: set[int], far: float = DUPLICATE_FAR) -> float:
    """The 1:1 threshold a claim against a subject would use: `far` per claim over `comparisons` template
    comparisons of the kinds in `kinds` (CurveError for a kind the curves do not cover)."""
    return claim_point(curves, comparisons, kinds, far).threshold


def _best(a: np.ndarray, b: np.ndarray) -> float:
    return float(
        np.max(l2_normalise(a.reshape(-1, a.shape[-1])) @ l2_normalise(b.reshape(-1, b.shape[-1])).T)
    )


def clashes(
    new: Sequence[Subject], held: Sequence[Subject], curves: CurveSet, far: float = DUPLICATE_FAR
) -> list[Clash]:
    """Every clash of a new subject with a held one, or with another new one; a held subject with the same id
    as a new one is being replaced, so it is not compared. Highest score first."""
    replaced = {s.id for s in new}
    others = [s for s in held if s.id not in replaced]
    found: list[Clash] = []
    thresholds: dict[tuple[int, int, int], float] = {}
    # The lowest threshold any pair can have (one comparison, single photos): only subjects above it need theirs.
    floor = min(claim_threshold(curves, 1, {k}, far) for k in curves.by_averaged)
    if others:
        matrix = l2_normalise(np.concatenate([s.templates for s in others]).astype(np.float32))
        owners = np.repeat(np.arange(len(others)), [len(s.templates) for s in others])
    for n, subject in enumerate(new):
        candidates: list[tuple[Subject, float]] = []
        if others:
            scores = l2_normalise(subject.templates.astype(np.float32)) @ matrix.T  # (m, T)
            per_subject = np.full(len(others), -np.inf, np.float32)
            np.maximum.at(per_subject, owners, scores.max(axis=0))
            candidates += [(others[i], float(per_subject[i])) for i in np.flatnonzero(per_subject > floor)]
        candidates += [(o, _best(subject.templates, o.templates)) for o in new[n + 1 :]]
        for other, score in candidates:
            key = (len(subject.templates) * len(other.templates), subject.averaged, other.averaged)
            if key not in thresholds:
                thresholds[key] = claim_threshold(curves, key[0], {key[1], key[2]}, far)
            if score > thresholds[key]:
                found.append(Clash(subject.id, other.id, score, thresholds[key]))
    return sorted(found, key=lambda c: -c.score)


def person_groups(embeddings: np.ndarray, threshold: float) -> list[list[int]]:
    """The photos (row indices) grouped into people, largest group first; one group when all are one person.

    Average linkage: groups are merged while the mean score between two of them is above `threshold`. A
    single chance look-alike pair between two people does not merge them (as it would if any one link
    did: two similar-looking men's photos link in 9% of their pairs at the 1e-2 threshold on LFW), and one
    weak pair among several photos of one person does not split them."""
    rows = l2_normalise(np.asarray(embeddings, np.float32).reshape(len(embeddings), -1))
    scores = (rows @ rows.T).astype(np.float64)
    groups = [[i] for i in range(len(rows))]
    while len(groups) > 1:
        best, pair = -np.inf, (0, 0)
        for a in range(len(groups)):
            for b in range(a + 1, len(groups)):
                mean = float(scores[np.ix_(groups[a], groups[b])].mean())
                if mean > best:
                    best, pair = mean, (a, b)
        if not best > threshold:
            break
        a, b = pair
        groups[a] = sorted(groups[a] + groups[b])
        del groups[b]
    return sorted(groups, key=lambda g: (-len(g), g[0]))


def same_person_threshold(curves: CurveSet, far: float = SAME_PERSON_FAR) -> float:
    """The single-photo 1:1 threshold two photos of one person are expected to pass."""
    return claim_threshold(curves, 1, {1}, far)
