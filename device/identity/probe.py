"""Mirror only when it matters: a single-view probe decides on its own unless its best score is close to its
threshold; then the chip's mirror image is embedded too and the flip-averaged probe decides.

Templates are always flip-averaged (two invokes, at enrolment). A probe costs one invoke for its single view;
the second invoke (the mirror) changes a probe's score by a few thousandths, so it can change the decision
only where the single view lands near its threshold. `mirror_band` (thresholds.single_view.mirror_band in
the manifest, chosen on the developers' non-LFW faces by scripts/mirror_band.py) is how near: the single
view decides when |score - its threshold| > band, the flip average otherwise. Each kind is compared with the
threshold off its own curve family (device.identity.thresholds), at the same false-accept target.

Fail closed: without a single-view family or band, or with a non-finite single-view score, the flip average
decides (or nothing does: a probe that cannot be completed and has no curve of its kind is unknown).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from device.contracts import ProbeKind
from device.identity.matcher import Decision, Matcher
from device.identity.thresholds import OperatingPoint


@dataclass(frozen=True)
class ProbeDecision:
    decision: Decision
    probe: ProbeKind  # the kind that decided
    embedding: np.ndarray | None  # the probe of that kind (the flip average when the mirror ran)
    point: OperatingPoint | None  # its threshold in force (None: no threshold, unknown)


def close_call(score: float, threshold: float, band: float | None) -> bool:
    """Whether a single view's best score is too near its threshold to decide on (non-finite: always)."""
    return (
        band is None
        or not (math.isfinite(score) and math.isfinite(threshold))
        or abs(score - threshold) <= band
    )


def decide(
    matcher: Matcher,
    embedding: np.ndarray | None,
    probe: ProbeKind,
    mirror: Callable[[], np.ndarray] | None,
    point_for: Callable[[ProbeKind], OperatingPoint | None],
    band: float | None,
    top_k: int = 3,
) -> ProbeDecision:
    """The open-set decision for a probe of kind `probe`; `mirror()` gives its flip average (one more invoke),
    `point_for(kind)` the threshold in force for a kind (None when that kind has no curve)."""
    if embedding is None:
        return ProbeDecision(Decision(None, math.nan, math.nan, math.nan), probe, None, None)
    if probe == "single":
        point = point_for("single")
        if point is not None:
            single, _ = matcher.decide(embedding, point.threshold, top_k)
            if not close_call(single.score, point.threshold, band) or mirror is None:
                return ProbeDecision(single, "single", embedding, point)
        if mirror is None:  # no curve for a single view and no way to complete it: unknown
            return ProbeDecision(Decision(None, math.nan, math.nan, math.nan), "single", embedding, None)
        embedding, probe = mirror(), "flip"
    point = point_for("flip")
    threshold = point.threshold if point is not None else math.nan
    flip, _ = matcher.decide(embedding, threshold, top_k)
    return ProbeDecision(flip, "flip", embedding, point)
