"""Open-set 1:N: one probe embedding against every template at once, best template per subject, top-k.

Templates are L2-normalised rows of one float32 matrix, grouped by subject (rows of a subject are
contiguous), so a search is one matrix-vector product and one `maximum.reduceat`. The decision is open-set:
the best subject is a match only when its score is finite and above the threshold in force, else the face
stays unknown; it is never forced onto the nearest subject. Fail closed: a non-finite probe or score is no
match.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from device.vision.embed import l2_normalise


@dataclass(frozen=True)
class Candidate:
    subject: str
    score: float


@dataclass(frozen=True)
class Search:
    """The top-k subjects, best first, and the margin of the best over the second-best subject."""

    top: tuple[Candidate, ...]
    margin: float  # best - second-best subject score; nan with fewer than two subjects


@dataclass(frozen=True)
class Decision:
    subject: str | None  # None: unknown
    score: float  # the best subject's score (nan when there is none)
    margin: float
    threshold: float


class Matcher:
    """Immutable index of a gallery's templates; `search(probe)` and `decide(probe, threshold)`."""

    def __init__(self, subjects: Sequence[str], templates: Sequence[np.ndarray]) -> None:
        """`templates[i]` is a (k_i, d) array of subject i's templates, k_i >= 1."""
        if len(subjects) != len(templates):
            raise ValueError(f"{len(subjects)} subjects but {len(templates)} template sets")
        if len(set(subjects)) != len(subjects):
            raise ValueError("subject ids must be unique")
        counts = [int(np.asarray(t).reshape(-1, np.asarray(t).shape[-1]).shape[0]) for t in templates]
        if any(c < 1 for c in counts):
            raise ValueError("every subject needs at least one template")
        rows = (
            np.concatenate(
                [np.asarray(t, np.float32).reshape(c, -1) for t, c in zip(templates, counts, strict=True)]
            )
            if templates
            else np.zeros((0, 0), np.float32)
        )
        if rows.size and not np.isfinite(rows).all():
            raise ValueError("a template has a non-finite value")
        self.subjects = tuple(subjects)
        # Stored dimension-major: probe @ (d, T) runs about twice as fast as (T, d) @ probe in OpenBLAS here.
        self._by_dim = np.ascontiguousarray(l2_normalise(rows).T) if rows.size else rows
        self._starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.intp) if counts else None
        # One template per subject (the usual gallery): template scores are subject scores, no reduction.
        self._one_each = len(rows) == len(subjects)

    @property
    def matrix(self) -> np.ndarray:
        """(T, d) the L2-normalised templates, one row each."""
        return self._by_dim.T

    @property
    def size(self) -> int:
        """Number of subjects."""
        return len(self.subjects)

    @property
    def owners(self) -> np.ndarray:
        """(comparisons,) the subject index of each template row."""
        if self._starts is None:
            return np.zeros(0, np.intp)
        return np.repeat(np.arange(self.size), np.diff(np.append(self._starts, self.comparisons)))

    @property
    def comparisons(self) -> int:
        """Templates a probe is compared with (what a per-search false-accept target divides over)."""
        return int(self._by_dim.shape[1]) if self._by_dim.size else 0

    def subject_scores(self, probe: np.ndarray) -> np.ndarray:
        """(n_subjects,) best cosine over each subject's templates."""
        if self._starts is None:
            return np.zeros(0, np.float32)
        p = np.asarray(probe, np.float32).reshape(-1)
        if p.shape[0] != self._by_dim.shape[0]:
            raise ValueError(f"probe has {p.shape[0]} dimensions, the templates {self._by_dim.shape[0]}")
        p = p / max(float(np.linalg.norm(p)), 1e-12)
        scores = p @ self._by_dim
        return scores if self._one_each else np.maximum.reduceat(scores, self._starts)

    def subject_scores_many(self, probes: np.ndarray) -> np.ndarray:
        """(n_probes, n_subjects) best cosine per subject for many probes at once (evaluation)."""
        p = l2_normalise(np.asarray(probes, np.float32).reshape(len(probes), -1))
        if self._starts is None:
            return np.zeros((len(p), 0), np.float32)
        scores = p @ self._by_dim
        return scores if self._one_each else np.maximum.reduceat(scores, self._starts, axis=1)

    def search(self, probe: np.ndarray, k: int = 3) -> Search:
        scores = self.subject_scores(probe)
        k = min(k, len(scores))
        if k == 0:
            return Search((), math.nan)
        n = len(scores)
        best = np.argpartition(scores, n - k)[n - k :] if k < n else np.arange(n)
        best = best[np.argsort(-scores[best], kind="stable")]
        top = tuple(Candidate(self.subjects[i], float(scores[i])) for i in best)
        if len(scores) < 2:
            return Search(top, math.nan)
        second = float(np.partition(scores, len(scores) - 2)[len(scores) - 2])
        return Search(top, top[0].score - second)

    def decide(self, probe: np.ndarray, threshold: float, k: int = 3) -> tuple[Decision, Search]:
        """Open-set decision: the best subject if its score is finite and above `threshold`, else unknown."""
        if not np.isfinite(np.asarray(probe, np.float32)).all() or not math.isfinite(threshold):
            return Decision(None, math.nan, math.nan, threshold), Search((), math.nan)
        found = self.search(probe, k)
        if not found.top:
            return Decision(None, math.nan, math.nan, threshold), found
        best = found.top[0]
        matched = math.isfinite(best.score) and best.score > threshold
        return Decision(best.subject if matched else None, best.score, found.margin, threshold), found
