"""Per-search false-accept targets -> the threshold in force, off a calibrated curve."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from device.identity.thresholds import (
    CLAIM_FAR,
    CurveError,
    CurveSet,
    ThresholdCurve,
    claim_point,
    gallery_operating_point,
    operating_point,
    per_comparison_far,
)
from faceonly_lab.thresholdcurves import MIN_IMPOSTORS_ABOVE, point_estimate_curve

CURVE = ThresholdCurve.from_points([[1e-1, 0.80], [1e-2, 0.90], [1e-3, 0.93], [1e-5, 0.95]])


def test_per_comparison_far_divides_the_per_search_target_over_the_gallery():
    assert per_comparison_far(1e-3, 1) == pytest.approx(1e-3)
    f = per_comparison_far(1e-3, 1000)
    assert f == pytest.approx(1e-6, rel=1e-3)
    assert 1 - (1 - f) ** 1000 == pytest.approx(1e-3, rel=1e-9)


def test_threshold_takes_the_next_stricter_point_and_reports_the_clamp():
    """Between two points the stricter one's threshold: the bound there is at most the target (a looser
    interpolated threshold could promise more than the curve measured)."""
    assert CURVE.threshold(1e-2) == (0.90, False)
    assert CURVE.threshold(10**-1.5) == (0.90, False)
    assert CURVE.threshold(1e-4) == (0.95, False)
    assert CURVE.threshold(0.5) == (0.80, False)  # looser than calibrated: the loosest calibrated point
    assert CURVE.threshold(1e-7) == (0.95, True)  # beyond the data: clamped, and said so


def test_the_curve_says_what_it_promises_at_any_threshold():
    assert CURVE.far_bound(0.90) == 1e-2 and CURVE.far_bound(0.92) == 1e-2
    assert CURVE.far_bound(0.95) == 1e-5 and CURVE.far_bound(0.99) == 1e-5  # at most: FAR never rises
    assert CURVE.far_bound(0.70) == 1.0  # below the loosest point nothing was promised


def test_status_says_what_the_setting_means_at_this_gallery_size():
    point = operating_point(CURVE, 1e-2, 10)
    assert point.threshold == 0.93 and point.promised_per_search_far == pytest.approx(1 - (1 - 1e-3) ** 10)
    assert point.as_dict()["expected_false_accepts_per_1000"] == pytest.approx(9.96, abs=0.01)
    assert point.meaning() == (
        "at this gallery size (10 templates), expect about 10 false accepts per 1,000 strangers "
        "(a 95% upper bound: likely fewer)"
    )
    one = operating_point(CURVE, 1e-3, 1)
    assert "(1 template), expect about 1 false accept per 1,000 strangers" in one.meaning()
    big = operating_point(CURVE, 1e-3, 1000)
    assert big.clamped and big.false_accepts_per_1000 == pytest.approx(9.95, abs=0.01)
    assert big.meaning().startswith("at this gallery size (1000 templates), expect about 10 false accepts")
    assert (
        "more than the target of 1 false accept: the calibration data supports no stricter" in big.meaning()
    )


def test_a_mixed_gallery_promises_what_its_weakest_kind_has_at_the_highest_threshold():
    mean = ThresholdCurve.from_points([[1e-1, 0.85], [1e-2, 0.93], [1e-4, 0.96]])
    point = gallery_operating_point(CurveSet({1: CURVE, 3: mean}), 1e-2, 1, {1, 3})
    assert point.threshold == 0.93  # the mean kind needs more
    assert point.promised_per_comparison_far == 1e-2  # ... and promises 1e-2 there (single photos: 1e-3)


def test_a_claim_is_checked_at_its_own_per_claim_target_against_the_claimed_subjects_templates():
    curves = CurveSet.single(CURVE, (1, 3))
    point = claim_point(curves, templates=1, averaged={3})
    assert CLAIM_FAR == 1e-4 and point.kind == "claim" and point.comparisons == 1
    assert point.per_comparison_far == pytest.approx(1e-4) and point.threshold == 0.95 and not point.clamped
    assert point.as_dict()["kind"] == "claim"
    assert "per 1,000 claims made with someone else's face" in point.meaning()
    two = claim_point(curves, templates=2, averaged={1}, per_claim=1e-2)
    assert two.per_comparison_far == pytest.approx(per_comparison_far(1e-2, 2)) and two.threshold == 0.93
    with pytest.raises(CurveError):
        claim_point(curves, templates=1, averaged={2})


def test_operating_point_for_a_big_gallery_is_clamped_and_says_so():
    point = operating_point(CURVE, 1e-3, 100_000)
    assert point.clamped and point.threshold == 0.95 and point.smallest_supported_far == 1e-5
    assert point.as_dict()["comparisons"] == 100_000
    small = operating_point(CURVE, 1e-2, 1)
    assert not small.clamped and small.threshold == pytest.approx(0.90)


@pytest.mark.parametrize(
    "points",
    [
        [[1e-2, 0.9]],
        [[1e-2, 0.9], [1e-2, 0.95]],  # FAR not falling
        [[1e-2, 0.9], [1e-3, 0.85]],  # threshold falling
        [[1e-2, float("nan")], [1e-3, 0.95]],
        [[0.0, 0.9], [1e-3, 0.95]],
        [["x", 0.9], [1e-3, 0.95]],
        [[1e-2], [1e-3, 0.95]],
    ],
)
def test_malformed_curves_are_refused(points):
    with pytest.raises(CurveError):
        ThresholdCurve.from_points(points)


def test_manifest_without_a_curve_is_an_error():
    with pytest.raises(CurveError, match="no threshold curve"):
        ThresholdCurve.from_manifest({"thresholds": {"per_comparison": {"far_1e-3": 0.93}}})


def test_point_estimate_curve_is_dense_monotone_and_stops_where_the_data_does():
    rng = np.random.default_rng(0)
    impostor = rng.normal(0.84, 0.03, 200_000)
    curve = point_estimate_curve(impostor, top_far=1e-1, per_decade=20)
    fars = [f for f, _ in curve]
    thresholds = [t for _, t in curve]
    assert fars[0] == pytest.approx(1e-1) and fars[-1] == pytest.approx(MIN_IMPOSTORS_ABOVE / len(impostor))
    assert all(b < a for a, b in itertools.pairwise(fars))
    assert all(b >= a for a, b in itertools.pairwise(thresholds))
    for far, thr in curve:
        assert np.mean(impostor > thr) <= far + 1e-12
    assert len(curve) >= 20 * 3  # 1e-1 .. 5e-5: more than 3 decades at 20 points each
    assert ThresholdCurve.from_points(curve).smallest_far == fars[-1]
    assert point_estimate_curve(np.linspace(0, 1, 50), top_far=1e-1) == []


@given(
    st.floats(1e-7, 0.5, allow_nan=False),
    st.integers(1, 10_000_000),
)
def test_operating_point_is_monotone_in_gallery_size(per_search, n):
    a = operating_point(CURVE, per_search, n)
    b = operating_point(CURVE, per_search, n * 2)
    assert b.threshold >= a.threshold
    assert math.isfinite(a.threshold)
    assert a.clamped == (a.per_comparison_far < CURVE.smallest_far)
