"""From a false-accept target per SEARCH (1:N) or per CLAIM (1:1) to the cosine threshold in force, off the
manifest's curves.

A stranger searched against a gallery is compared with every template; each comparison may falsely accept.
For a per-search target p over n comparisons the per-comparison target is 1 - (1 - p)^(1/n) (~ p / n; the
union bound p / n differs by under 0.5% for p <= 1%). A claim (a card, PIN or QR code names the subject, then
the face is checked against that subject only) is the same with n = that subject's templates: `claim_point`.

The curves (models/manifest.json, built by scripts/modelbuild/embedder.py over LFW folds 1-5,
faceonly_lab.thresholdcurves) map a per-comparison FAR to the lowest threshold at which the 95% upper
confidence bound of the FAR (identity-level bootstrap, faceonly_lab.farbound) is at most that FAR, so a
threshold read off them keeps its promise on people the curve was not fitted on, not just on average. Between
curve points the threshold of the next stricter point is taken (never a looser interpolation), so the bound
at the threshold in force is at most the target. A target below the smallest FAR the calibration supports is
clamped to that end of the curve and reported as such (`clamped`), never silently: the promise is then only
the bound at the curve's end, which status states (`expected_false_accepts_per_1000`).

A template that is the mean of k photos meets strangers at higher scores than a single photo does (noise
averages out, the template sits nearer the middle of face space), so the manifest ships one curve per k
(`thresholds.curve` for k = 1, `thresholds.mean_curves` for k = 2..MAX): a CurveSet. A gallery's threshold
is the highest of the thresholds its template kinds need, so no kind is under-protected.

Probes come in two kinds (device.contracts.ProbeKind): flip-averaged, as templates are, and single-view (the
chip alone: the terminal embeds the mirror image only when a decision is close, device.identity.probe). A
single view scores strangers differently, so it has its own family of curves (`thresholds.single_view`, the
same recipe); a probe is always matched off its own kind's family, and a kind without one has no threshold.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from device.contracts import ProbeKind


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
        """(threshold, clamped) for a per-comparison FAR: the threshold of the first curve point whose FAR is
        at most `far` (the bound there is <= far); beyond the strict end the end point's, with clamped=True."""
        if not 0.0 < far < 1.0 or not math.isfinite(far):
            raise ValueError(f"a per-comparison FAR must be in (0, 1), got {far!r}")
        for point_far, threshold in zip(self.fars, self.thresholds, strict=True):
            if point_far <= far:
                return threshold, False
        return self.thresholds[-1], True

    def far_bound(self, threshold: float) -> float:
        """The FAR the curve promises at `threshold` (scores above it accepted): the FAR of the strictest
        curve point whose threshold is at most `threshold` (FAR never rises with the threshold); 1.0 below the
        curve's loosest point, where nothing was promised."""
        promised = [f for f, t in zip(self.fars, self.thresholds, strict=True) if t <= threshold]
        return min(promised) if promised else 1.0


@dataclass(frozen=True)
class CurveSet:
    """Threshold curves by the number of photos averaged into a template (1 = a single photo), for
    flip-averaged probes (`by_averaged`) and single-view probes (`single_view`), and the mirror band: how
    near a single view's score must come to its threshold for the flip average to decide instead."""

    by_averaged: dict[int, ThresholdCurve]
    single_view: dict[int, ThresholdCurve] = field(default_factory=dict)
    mirror_band: float | None = None

    @classmethod
    def from_manifest(cls, info: dict) -> CurveSet:
        """`thresholds.curve` (k = 1) and `thresholds.mean_curves` {"k": points} of an embedder's entry; the
        same under `thresholds.single_view` for single-view probes, with its `mirror_band` (both optional:
        without them every probe is flip-averaged)."""
        thresholds = info.get("thresholds") or {}
        curves = {1: ThresholdCurve.from_manifest(info)}
        curves.update(_mean_curves(thresholds.get("mean_curves"), "thresholds.mean_curves"))
        single = thresholds.get("single_view") or {}
        if not isinstance(single, dict):
            raise CurveError("thresholds.single_view must be an object")
        singles: dict[int, ThresholdCurve] = {}
        if single.get("curve") is not None:
            singles[1] = ThresholdCurve.from_points(single["curve"])
            singles.update(_mean_curves(single.get("mean_curves"), "thresholds.single_view.mean_curves"))
        return cls(curves, singles, _band(single.get("mirror_band")) if singles else None)

    @classmethod
    def single(cls, curve: ThresholdCurve, averaged: Sequence[int] = (1,)) -> CurveSet:
        """One curve for the given template kinds (a curve calibrated on another set, for evaluation)."""
        return cls({k: curve for k in averaged})

    def curve(self, averaged: int, probe: ProbeKind = "flip") -> ThresholdCurve:
        family = self.by_averaged if probe == "flip" else self.single_view
        found = family.get(averaged)
        if found is None:
            what = "" if probe == "flip" else "single-view probes against "
            raise CurveError(
                f"no threshold curve for {what}templates averaged over {averaged} photos "
                f"(calibrated: {', '.join(map(str, sorted(family))) or 'none'})"
            )
        return found


def _mean_curves(means: object, where: str) -> dict[int, ThresholdCurve]:
    means = means or {}
    if not isinstance(means, dict):
        raise CurveError(f"{where} must map a photo count to a curve")
    out = {}
    for key, points in means.items():
        if not str(key).isdigit() or int(key) < 2:
            raise CurveError(f"{where}: {str(key)[:20]!r} is not a photo count >= 2")
        out[int(key)] = ThresholdCurve.from_points(points)
    return out


def _band(entry: object) -> float | None:
    """The mirror band's width (a cosine difference); None (always mirror) when it is absent or unusable."""
    value = entry.get("value") if isinstance(entry, dict) else entry
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and 0.0 <= value < 1.0 else None


# The default false-accept target of a 1:1 claim (a credential names the subject, the face is checked against
# that subject's templates only): issue 22's per-comparison 1e-4.
CLAIM_FAR = 1e-4


def per_comparison_far(per_search: float, comparisons: int) -> float:
    """The per-comparison FAR that gives `per_search` over `comparisons` independent comparisons."""
    if not 0.0 < per_search < 1.0:
        raise ValueError(f"a per-search FAR must be in (0, 1), got {per_search!r}")
    if comparisons < 1:
        raise ValueError("a search needs at least one comparison")
    return -math.expm1(math.log1p(-per_search) / comparisons)


def per_search_far(per_comparison: float, comparisons: int) -> float:
    """1 - (1 - per_comparison)^comparisons: what `comparisons` comparisons at that FAR add up to."""
    return -math.expm1(comparisons * math.log1p(-min(per_comparison, 1.0 - 1e-16)))


@dataclass(frozen=True)
class OperatingPoint:
    """The threshold in force and how it was reached (status, privacy.report and the backend page say this).

    `kind` "search" is 1:N over the whole gallery, "claim" is 1:1 against one claimed subject's templates;
    `per_search_far` is the target per search or per claim. `promised_per_search_far` is what the curves
    promise at the threshold in force (95% upper bound): at most the target, or when `clamped` the bound at
    the curve's end, which can be more.
    """

    per_search_far: float
    comparisons: int
    per_comparison_far: float
    threshold: float
    clamped: bool  # the per-comparison target lies below what the calibration data supports
    smallest_supported_far: float
    promised_per_comparison_far: float
    kind: Literal["search", "claim"] = "search"

    @property
    def promised_per_search_far(self) -> float:
        return per_search_far(self.promised_per_comparison_far, self.comparisons)

    @property
    def false_accepts_per_1000(self) -> float:
        """Strangers (1:N) or wrong claimants (1:1) let through per 1,000, at most (95% bound)."""
        return 1000.0 * self.promised_per_search_far

    def meaning(self) -> str:
        """What the setting means to an operator, in one sentence."""
        accepts = _false_accepts(self.false_accepts_per_1000)
        if self.kind == "claim":
            text = f"expect about {accepts} per 1,000 claims made with someone else's face"
        else:
            templates = f"{self.comparisons} template{'s' if self.comparisons != 1 else ''}"
            text = f"at this gallery size ({templates}), expect about {accepts} per 1,000 strangers"
        if self.clamped:
            target = _false_accepts(1000.0 * self.per_search_far)
            return (
                f"{text} (95% upper bound), more than the target of {target}: the calibration data supports "
                "no stricter threshold"
            )
        return f"{text} (a 95% upper bound: likely fewer)"

    def as_dict(self) -> dict[str, float | int | bool | str]:
        return {
            "kind": self.kind,
            "per_search_far": self.per_search_far,
            "comparisons": self.comparisons,
            "per_comparison_far": self.per_comparison_far,
            "threshold": round(self.threshold, 6),
            "clamped": self.clamped,
            "smallest_supported_far": self.smallest_supported_far,
            "promised_per_search_far": float(f"{self.promised_per_search_far:.4g}"),
            "expected_false_accepts_per_1000": float(f"{self.false_accepts_per_1000:.3g}"),
        }


def _false_accepts(per_1000: float) -> str:
    """A count per 1,000 as a person reads it: "1 false accept", "0.5 false accepts", "12 false accepts"."""
    shown = f"{per_1000:.0f}" if per_1000 >= 10 else f"{float(f'{per_1000:.1g}'):g}"
    return f"{shown} false accept{'' if shown == '1' else 's'}"


def operating_point(
    curve: ThresholdCurve, per_search: float, comparisons: int, kind: Literal["search", "claim"] = "search"
) -> OperatingPoint:
    """The threshold for `per_search` against a gallery of `comparisons` templates."""
    far = per_comparison_far(per_search, comparisons)
    threshold, clamped = curve.threshold(far)
    return OperatingPoint(
        per_search, comparisons, far, threshold, clamped, curve.smallest_far, curve.far_bound(threshold), kind
    )


def gallery_operating_point(
    curves: CurveSet,
    per_search: float,
    comparisons: int,
    averaged: set[int],
    kind: Literal["search", "claim"] = "search",
    probe: ProbeKind = "flip",
) -> OperatingPoint:
    """The highest threshold any template kind of the gallery needs for a `probe` kind of probe (CurveError
    when a kind has no curve), promising the largest FAR any kind has at it."""
    points = [
        operating_point(curves.curve(k, probe), per_search, comparisons, kind) for k in sorted(averaged)
    ]
    chosen = max(points, key=lambda p: (p.threshold, p.clamped))
    promised = max(curves.curve(k, probe).far_bound(chosen.threshold) for k in averaged)
    return replace(chosen, promised_per_comparison_far=promised)


def claim_point(
    curves: CurveSet,
    templates: int,
    averaged: set[int],
    per_claim: float = CLAIM_FAR,
    probe: ProbeKind = "flip",
) -> OperatingPoint:
    """1:1: the threshold for a face checked against ONE claimed subject's `templates` templates (of the
    photo counts in `averaged`) at a false-accept target `per_claim` per claim (default CLAIM_FAR, 1e-4),
    read off the same curves as 1:N, of the probe's own kind. CurveError when a kind has no curve;
    `clamped` as for a search."""
    return gallery_operating_point(curves, per_claim, templates, averaged, kind="claim", probe=probe)
