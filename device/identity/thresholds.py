"""From a false-accept target per SEARCH to the cosine threshold in force, off the manifest's curve.

A stranger searched against a gallery is compared with every template; each comparison may falsely accept.
For a per-search target p over n comparisons the per-comparison target is 1 - (1 - p)^(1/n) (~ p / n).
The threshold for it is read off the embedder's calibrated curve (models/manifest.json, built by
scripts/modelbuild/embedder.py over every cross-identity pair of LFW folds 1-5), interpolated in log FAR.
A target below the smallest FAR the calibration data supports is clamped to that end of the curve and
reported as such (`clamped`), never silently: the real false-accept rate is then unknown, only bounded by
what was measured.

A template that is the mean of k photos meets strangers at higher scores than a single photo does (noise
averages out, the template sits nearer the middle of face space), so the manifest ships one curve per k
(`thresholds.curve` for k = 1, `thresholds.mean_curves` for k = 2..MAX): a CurveSet. A gallery's threshold
is the highest of the thresholds its template kinds need, so no kind is under-protected.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


class CurveError(ValueError):
    """The manifest's threshold curve is missing or malformed (the matcher then cannot decide: no match)."""


@dataclass(frozen=True)
class ThresholdCurve:
    """Per-comparison FAR (falling) -> cosine threshold (never falling), as calibrated."""

    fars: tuple[float, ...]
    thresholds: tuple[float, ...]

    @classmethod
    def from_points(cls, points: Sequence[Sequence[float]]) -> ThresholdCurve:
        try:
            fars = tuple(float(p[0]) for p in points)
            thresholds = tuple(float(p[1]) for p in points)
        except (TypeError, ValueError, IndexError):
            raise CurveError("the threshold curve must be a list of [far, threshold] pairs") from None
        if len(fars) < 2:
            raise CurveError("the threshold curve needs at least two points")
        if not all(math.isfinite(v) for v in fars + thresholds):
            raise CurveError("the threshold curve has a non-finite value")
        if not all(0.0 < f < 1.0 for f in fars):
            raise CurveError("every FAR on the threshold curve must be in (0, 1)")
        if any(b >= a for a, b in itertools.pairwise(fars)):
            raise CurveError("the threshold curve's FARs must fall strictly")
        if any(b < a for a, b in itertools.pairwise(thresholds)):
            raise CurveError("the threshold curve's thresholds must never fall as FAR falls")
        return cls(fars, thresholds)

    @classmethod
    def from_manifest(cls, info: dict) -> ThresholdCurve:
        """The single-photo curve of an embedder's manifest entry (`info["thresholds"]["curve"]`)."""
        points = (info.get("thresholds") or {}).get("curve")
        if points is None:
            raise CurveError("the embedder's manifest entry has no threshold curve (thresholds.curve)")
        return cls.from_points(points)

    @property
    def smallest_far(self) -> float:
        return self.fars[-1]

    def threshold(self, far: float) -> tuple[float, bool]:
        """(threshold, clamped) for a per-comparison FAR: log-linear between curve points; beyond either
        end the end point's threshold, with clamped=True when the target is below what the data supports."""
        if not 0.0 < far < 1.0 or not math.isfinite(far):
            raise ValueError(f"a per-comparison FAR must be in (0, 1), got {far!r}")
        if far <= self.smallest_far:
            return self.thresholds[-1], far < self.smallest_far
        if far >= self.fars[0]:
            return self.thresholds[0], False
        # np.interp wants rising x: use -log10(far), which rises along the curve.
        x = -np.log10(np.asarray(self.fars))
        return float(np.interp(-math.log10(far), x, np.asarray(self.thresholds))), False


@dataclass(frozen=True)
class CurveSet:
    """Threshold curves by the number of photos averaged into a template (1 = a single photo)."""

    by_averaged: dict[int, ThresholdCurve]

    @classmethod
    def from_manifest(cls, info: dict) -> CurveSet:
        """`thresholds.curve` (k = 1) and `thresholds.mean_curves` {"k": points} of an embedder's entry."""
        curves = {1: ThresholdCurve.from_manifest(info)}
        means = (info.get("thresholds") or {}).get("mean_curves") or {}
        if not isinstance(means, dict):
            raise CurveError("thresholds.mean_curves must map a photo count to a curve")
        for key, points in means.items():
            if not str(key).isdigit() or int(key) < 2:
                raise CurveError(f"thresholds.mean_curves: {str(key)[:20]!r} is not a photo count >= 2")
            curves[int(key)] = ThresholdCurve.from_points(points)
        return cls(curves)

    @classmethod
    def single(cls, curve: ThresholdCurve, averaged: Sequence[int] = (1,)) -> CurveSet:
        """One curve for the given template kinds (a curve calibrated on another set, for evaluation)."""
        return cls({k: curve for k in averaged})

    def curve(self, averaged: int) -> ThresholdCurve:
        found = self.by_averaged.get(averaged)
        if found is None:
            raise CurveError(
                f"no threshold curve for templates averaged over {averaged} photos "
                f"(calibrated: {', '.join(map(str, sorted(self.by_averaged)))})"
            )
        return found


def per_comparison_far(per_search: float, comparisons: int) -> float:
    """The per-comparison FAR that gives `per_search` over `comparisons` independent comparisons."""
    if not 0.0 < per_search < 1.0:
        raise ValueError(f"a per-search FAR must be in (0, 1), got {per_search!r}")
    if comparisons < 1:
        raise ValueError("a search needs at least one comparison")
    return -math.expm1(math.log1p(-per_search) / comparisons)


@dataclass(frozen=True)
class OperatingPoint:
    """The threshold in force and how it was reached (status and privacy.report say this)."""

    per_search_far: float
    comparisons: int
    per_comparison_far: float
    threshold: float
    clamped: bool  # the per-comparison target lies below what the calibration data supports
    smallest_supported_far: float

    def as_dict(self) -> dict[str, float | int | bool]:
        return {
            "per_search_far": self.per_search_far,
            "comparisons": self.comparisons,
            "per_comparison_far": self.per_comparison_far,
            "threshold": round(self.threshold, 6),
            "clamped": self.clamped,
            "smallest_supported_far": self.smallest_supported_far,
        }


def operating_point(curve: ThresholdCurve, per_search: float, comparisons: int) -> OperatingPoint:
    """The threshold for `per_search` against a gallery of `comparisons` templates."""
    far = per_comparison_far(per_search, comparisons)
    threshold, clamped = curve.threshold(far)
    return OperatingPoint(per_search, comparisons, far, threshold, clamped, curve.smallest_far)


def gallery_operating_point(
    curves: CurveSet, per_search: float, comparisons: int, averaged: set[int]
) -> OperatingPoint:
    """The highest threshold any template kind of the gallery needs (CurveError when a kind has no curve)."""
    points = [operating_point(curves.curve(k), per_search, comparisons) for k in sorted(averaged)]
    return max(points, key=lambda p: (p.threshold, p.clamped))
