"""1:1: a face checked against the ONE person a credential named (door mode credential+face).

A claim compares the probe with that person's templates only, so its false-accept target is per claim, not
per search, and needs no share of the gallery size: `identity.false_accept_per_claim` (1e-4 by default) over
the person's k templates is a per-comparison target of about 1e-4 / k, read off the same shipped curves as
1:N (the kind of template the person has picks the curve). A single-view probe (the chip alone) is checked
at its own kind's threshold, and its flip average (`mirror()`, one more embedder invoke) decides instead
when the single view lands within the mirror band of it, as for 1:N (device.identity.probe). Fail closed:
no template, no curve, a non-finite embedding or score is no match.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from device.contracts import ProbeKind
from device.identity.gallery import Subject
from device.identity.probe import close_call
from device.identity.thresholds import CurveError, CurveSet, OperatingPoint, claim_point


def claim_operating_point(
    curves: CurveSet, subject: Subject, per_claim: float, probe: ProbeKind = "flip"
) -> OperatingPoint:
    """The threshold of a claim on `subject` (device.identity.thresholds.claim_point: the same conservative
    curves at the per-claim target over the subject's templates, of the probe's kind; CurveError when that
    kind has no curve)."""
    return claim_point(curves, len(subject.templates), {subject.averaged}, per_claim, probe)


@dataclass(frozen=True)
class ClaimCheck:
    subject: str
    matched: bool
    score: float  # the best of the subject's templates (nan: none usable)
    threshold: float  # nan: no threshold (no curve)
    per_claim: float
    probe: ProbeKind = "flip"  # the kind of probe the score and threshold are of


def check_claim(
    curves: CurveSet | None,
    subject: Subject,
    embedding: np.ndarray | None,
    per_claim: float,
    probe: ProbeKind = "flip",
    mirror: Callable[[], np.ndarray] | None = None,
) -> ClaimCheck:
    """The 1:1 check of a probe of kind `probe` against `subject`; `mirror()` gives its flip average."""
    if probe == "single" and curves is not None:
        single = _check(curves, subject, embedding, per_claim, "single")
        if mirror is None or not close_call(single.score, single.threshold, curves.mirror_band):
            return single
        return _check(curves, subject, mirror(), per_claim, "flip")
    return _check(curves, subject, embedding, per_claim, probe)


def _check(
    curves: CurveSet | None,
    subject: Subject,
    embedding: np.ndarray | None,
    per_claim: float,
    probe: ProbeKind,
) -> ClaimCheck:
    nothing = ClaimCheck(subject.id, False, math.nan, math.nan, per_claim, probe)
    if curves is None:
        return nothing
    try:
        threshold = claim_operating_point(curves, subject, per_claim, probe).threshold
    except CurveError:
        return nothing
    if embedding is None:
        return ClaimCheck(subject.id, False, math.nan, threshold, per_claim, probe)
    vector = np.asarray(embedding, np.float32).reshape(-1)
    if vector.shape[0] != subject.templates.shape[1] or not np.isfinite(vector).all():
        return ClaimCheck(subject.id, False, math.nan, threshold, per_claim, probe)
    score = float(np.max(subject.templates @ vector))
    matched = math.isfinite(score) and math.isfinite(threshold) and score > threshold
    return ClaimCheck(subject.id, matched, score, threshold, per_claim, probe)
