"""Per-search false-accept targets -> the threshold in force, off a calibrated curve."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from device.identity.thresholds import CurveError, ThresholdCurve, operating_point, per_comparison_far
from device.vision.lfw import MIN_IMPOSTORS_ABOVE, threshold_curve

CURVE = ThresholdCurve.from_points([[1e-1, 0.80], [1e-2, 0.90], [1e-3, 0.93], [1e-5, 0.95]])


def test_per_comparison_far_divides_the_per_search_target_over_the_gallery():
    assert per_comparison_far(1e-3, 1) == pytest.approx(1e-3)
    f = per_comparison_far(1e-3, 1000)
    assert f == pytest.approx(1e-6, rel=1e-3)
    assert 1 - (1 - f) ** 1000 == pytest.approx(1e-3, rel=1e-9)


def test_threshold_interpolates_in_log_far_and_reports_the_clamp():
    assert CURVE.threshold(1e-2) == (0.90, False)
    thr, clamped = CURVE.threshold(10**-1.5)
    assert thr == pytest.approx(0.85) and not clamped
    assert CURVE.threshold(1e-4)[0] == pytest.approx(0.94)
    assert CURVE.threshold(0.5) == (0.80, False)  # looser than calibrated: the loosest calibrated point
    assert CURVE.threshold(1e-7) == (0.95, True)  # beyond the data: clamped, and said so


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


def test_threshold_curve_is_dense_monotone_and_stops_where_the_data_does():
    rng = np.random.default_rng(0)
    impostor = rng.normal(0.84, 0.03, 200_000)
    curve = threshold_curve(impostor, top_far=1e-1, per_decade=20)
    fars = [f for f, _ in curve]
    thresholds = [t for _, t in curve]
    assert fars[0] == pytest.approx(1e-1) and fars[-1] == pytest.approx(MIN_IMPOSTORS_ABOVE / len(impostor))
    assert all(b < a for a, b in itertools.pairwise(fars))
    assert all(b >= a for a, b in itertools.pairwise(thresholds))
    for far, thr in curve:
        assert np.mean(impostor > thr) <= far + 1e-12
    assert len(curve) >= 20 * 3  # 1e-1 .. 5e-5: more than 3 decades at 20 points each
    assert ThresholdCurve.from_points(curve).smallest_far == fars[-1]


def test_threshold_curve_is_empty_when_the_data_supports_nothing():
    assert threshold_curve(np.linspace(0, 1, 50), top_far=1e-1) == []


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
