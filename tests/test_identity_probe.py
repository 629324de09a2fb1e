"""Mirror only when it matters: a single-view probe decides alone unless its best score lands within the
mirror band of its own threshold; then its flip average decides at the flip threshold. Fail closed
everywhere a measure or a curve is missing."""

from __future__ import annotations

import math

import numpy as np
import pytest
import skimage.data
from hypothesis import given, settings
from hypothesis import strategies as st

from device.contracts import FaceObservation
from device.identity import gallery as gal
from device.identity.claim import check_claim
from device.identity.matcher import Matcher
from device.identity.probe import close_call, decide
from device.identity.thresholds import CurveError, CurveSet, OperatingPoint, claim_point
from device.infra.modelstore import ModelStore
from device.privacy.protector import as_sent
from device.vision.detect import FaceDetector
from device.vision.embed import Embedder, FaceEncoder, l2_normalise
from device.vision.landmarks import FaceMeshModel

T_SINGLE, T_FLIP, BAND = 0.60, 0.62, 0.01


def _point(threshold: float) -> OperatingPoint:
    return OperatingPoint(1e-3, 2, 5e-4, threshold, False, 1e-6, 5e-4)


POINTS = {"single": _point(T_SINGLE), "flip": _point(T_FLIP)}


def _unit(seed: int) -> np.ndarray:
    return l2_normalise(np.random.default_rng(seed).normal(size=gal.DIM)).astype(np.float32)


def _at(template: np.ndarray, score: float, seed: int) -> np.ndarray:
    """A unit vector whose cosine with `template` is `score`."""
    other = _unit(seed)
    other -= float(other @ template) * template
    other /= np.linalg.norm(other)
    return (score * template + math.sqrt(1 - score**2) * other).astype(np.float32)


class Mirror:
    def __init__(self, flip: np.ndarray) -> None:
        self.flip, self.calls = flip, 0

    def __call__(self) -> np.ndarray:
        self.calls += 1
        return self.flip


@pytest.fixture
def gallery() -> tuple[Matcher, np.ndarray]:
    ann = _unit(1)
    return Matcher(["ann", "bob"], [ann[None], _unit(2)[None]]), ann


@pytest.mark.parametrize(
    ("single", "flip", "mirrored", "subject", "kind"),
    [
        (T_SINGLE + 0.05, T_FLIP + 0.05, 0, "ann", "single"),  # clearly above: one view decides
        (T_SINGLE - 0.05, T_FLIP - 0.05, 0, None, "single"),  # clearly below: one view decides
        (T_SINGLE + 0.005, T_FLIP - 0.001, 1, None, "flip"),  # close: the flip average decides (reject)
        (T_SINGLE - 0.005, T_FLIP + 0.001, 1, "ann", "flip"),  # close: the flip average decides (accept)
    ],
)
def test_the_mirror_runs_only_within_the_band_and_then_decides_at_its_own_threshold(
    gallery, single, flip, mirrored, subject, kind
):
    matcher, ann = gallery
    mirror = Mirror(_at(ann, flip, 7))
    out = decide(matcher, _at(ann, single, 8), "single", mirror, POINTS.get, BAND)
    assert mirror.calls == mirrored
    assert out.decision.subject == subject and out.probe == kind
    assert out.point is POINTS[kind]
    expected = flip if kind == "flip" else single
    assert out.decision.score == pytest.approx(expected, abs=1e-5)
    if kind == "flip":
        assert out.embedding is mirror.flip  # what decided is what is sent


def test_a_flip_probe_never_asks_for_a_mirror_and_uses_the_flip_threshold(gallery):
    matcher, ann = gallery
    out = decide(matcher, _at(ann, T_FLIP + 0.001, 3), "flip", None, POINTS.get, BAND)
    assert (out.decision.subject, out.probe, out.point) == ("ann", "flip", POINTS["flip"])


def test_fail_closed_without_a_band_a_curve_an_embedding_or_a_finite_score(gallery):
    matcher, ann = gallery
    far_above = _at(ann, T_SINGLE + 0.2, 4)
    # No band: every single view is completed by its mirror.
    mirror = Mirror(_at(ann, T_FLIP + 0.2, 5))
    assert decide(matcher, far_above, "single", mirror, POINTS.get, None).probe == "flip"
    assert mirror.calls == 1
    # No single-view curve: the flip average decides; and without a way to complete it, nobody is matched.
    flip_only = {"flip": POINTS["flip"]}.get
    assert decide(matcher, far_above, "single", Mirror(far_above), flip_only, BAND).decision.subject == "ann"
    none = decide(matcher, far_above, "single", None, flip_only, BAND)
    assert none.decision.subject is None and none.point is None
    # No curve at all: no threshold, unknown.
    assert decide(matcher, far_above, "single", Mirror(far_above), {}.get, BAND).decision.subject is None
    assert decide(matcher, None, "single", Mirror(far_above), POINTS.get, BAND).decision.subject is None
    assert close_call(math.nan, T_SINGLE, BAND) and close_call(0.9, math.inf, BAND)


@settings(max_examples=200, deadline=None)
@given(
    score=st.one_of(st.floats(-1, 1), st.just(math.nan)),
    threshold=st.floats(-1, 1),
    band=st.one_of(st.none(), st.floats(0, 0.5)),
)
def test_close_call_is_true_exactly_inside_the_band_or_when_anything_is_missing(score, threshold, band):
    inside = band is None or math.isnan(score) or abs(score - threshold) <= band
    assert close_call(score, threshold, band) == inside


def _info(single: dict | None) -> dict:
    info: dict = {"thresholds": {"curve": [[1e-1, 0.5], [1e-6, 0.6]]}}
    if single is not None:
        info["thresholds"]["single_view"] = single
    return info


@pytest.mark.parametrize(
    ("band", "expected"),
    [({"value": 0.011}, 0.011), (0.02, 0.02), ({"value": "wide"}, None), ({"value": math.nan}, None),
     ({"value": -0.1}, None), ({"value": True}, None), (None, None)],
)  # fmt: skip
def test_the_band_is_read_from_the_manifest_and_an_unusable_one_means_always_mirror(band, expected):
    single = {"curve": [[1e-1, 0.55], [1e-6, 0.65]], "mirror_band": band}
    curves = CurveSet.from_manifest(_info(single))
    assert curves.mirror_band == expected
    assert curves.curve(1, "single").threshold(1e-6)[0] == pytest.approx(0.65)


def test_without_a_single_view_family_there_is_no_band_and_no_single_threshold():
    curves = CurveSet.from_manifest(_info(None))
    assert curves.mirror_band is None and curves.single_view == {}
    with pytest.raises(CurveError, match="single-view"):
        claim_point(curves, 1, {1}, probe="single")
    curves = CurveSet.from_manifest(_info({"mirror_band": {"value": 0.01}}))  # a band without curves
    assert curves.mirror_band is None
    with pytest.raises(CurveError):
        CurveSet.from_manifest(_info({"curve": [[1e-1, 0.55]], "mirror_band": 0.01}))  # one point: no curve
    with pytest.raises(CurveError):
        CurveSet.from_manifest(_info(["not", "an", "object"]))  # type: ignore[arg-type]


def test_the_shipped_manifest_has_both_families_for_every_template_kind_and_a_band_chosen_off_lfw():
    info = ModelStore().entry("embedder").info
    curves = CurveSet.from_manifest(info)
    assert sorted(curves.single_view) == sorted(curves.by_averaged)
    assert curves.mirror_band is not None and 0 < curves.mirror_band < 0.05
    how = info["thresholds"]["single_view"]["mirror_band"]["how"]
    assert "never LFW" in how and "scripts/mirror_band.py" in how
    # Both kinds' thresholds at the same target differ (a single view scores strangers differently) and a
    # 1:1 claim reads its own kind's curve.
    single, flip = claim_point(curves, 1, {1}, probe="single"), claim_point(curves, 1, {1})
    assert single.threshold != flip.threshold
    assert single.threshold == pytest.approx(curves.curve(1, "single").threshold(1e-4)[0])
    accuracy = info["accuracy"]["lfw_view2_folds_1_5"]
    assert accuracy["lfw_banded_accuracy"] >= accuracy["lfw_accuracy"] - 0.001


def test_a_real_chip_costs_one_invoke_until_its_mirror_is_asked_for_once():
    store = ModelStore()
    image = np.ascontiguousarray(skimage.data.astronaut()[..., ::-1])
    face = FaceDetector(store, "short_range").detect(image)[0]
    embedder = Embedder(store)
    calls = []
    descriptor = embedder.descriptor

    def counted(chip, mirrored=False):
        calls.append(mirrored)
        return descriptor(chip, mirrored=mirrored)

    embedder.descriptor = counted  # type: ignore[method-assign]
    encoder = FaceEncoder(embedder, FaceMeshModel(store))
    full = encoder.encode(image, face)
    calls.clear()
    chip = encoder.chip(image, face).image
    probe = embedder.probe(chip)
    assert calls == [False] and not probe.mirrored
    assert np.allclose(probe.single, full.single, atol=1e-6)
    first = probe.flip()
    assert probe.flip() is first and calls == [False, True]
    assert np.allclose(first, full.embedding, atol=1e-6)
    assert float(first @ probe.single) > 0.95  # the same face both ways, a few thousandths apart


def _curves_with_band() -> CurveSet:
    return CurveSet.from_manifest(
        {
            "thresholds": {
                "curve": [[1e-1, 0.50], [1e-6, 0.70]],
                "single_view": {"curve": [[1e-1, 0.48], [1e-6, 0.68]], "mirror_band": {"value": BAND}},
            }
        }
    )


def test_a_claim_checks_a_single_view_at_its_own_threshold_and_mirrors_only_a_close_call():
    curves = _curves_with_band()
    ann = _unit(1)
    subject = gal.check_subject("ann", None, ann[None])
    t_single = claim_point(curves, 1, {1}, probe="single").threshold
    t_flip = claim_point(curves, 1, {1}).threshold
    assert t_single < t_flip
    clear = Mirror(_at(ann, t_flip - 0.05, 9))
    far = check_claim(curves, subject, _at(ann, t_single + 0.05, 10), 1e-4, "single", clear)
    assert (far.matched, far.probe, clear.calls) == (True, "single", 0)
    assert far.threshold == pytest.approx(t_single)
    close = Mirror(_at(ann, t_flip - 0.001, 11))
    near = check_claim(curves, subject, _at(ann, t_single + 0.002, 12), 1e-4, "single", close)
    assert (near.matched, near.probe, close.calls) == (False, "flip", 1)  # the flip average said no
    assert near.threshold == pytest.approx(t_flip)
    # Fail closed: a non-finite single view goes to the mirror; without a mirror it is no match.
    broken = np.full(gal.DIM, np.nan, np.float32)
    assert not check_claim(curves, subject, broken, 1e-4, "single", None).matched
    good = Mirror(_at(ann, t_flip + 0.05, 13))
    assert check_claim(curves, subject, broken, 1e-4, "single", good).matched and good.calls == 1
    # Without single-view curves the flip average decides (or nothing does).
    flip_only = CurveSet.from_manifest({"thresholds": {"curve": [[1e-1, 0.50], [1e-6, 0.70]]}})
    single_view = _at(ann, 0.99, 14)
    assert not check_claim(flip_only, subject, single_view, 1e-4, "single", None).matched
    assert check_claim(flip_only, subject, single_view, 1e-4, "single", Mirror(ann)).probe == "flip"


def test_an_unknown_faces_embedding_leaves_flip_averaged_a_matched_ones_as_it_decided():
    single, flip = _unit(20), _unit(21)
    obs = FaceObservation(
        track_id=1, decision="accepted", first_seen=0.0, last_seen=1.0, best_frame_time=0.5,
        box=(0.0, 0.0, 10.0, 10.0), quality={}, liveness={}, reasons=(), embedding=single, probe="single",
        mirror=Mirror(flip),
    )  # fmt: skip
    unknown = as_sent(obs, "unknown_only", matched=False)
    assert unknown.probe == "flip" and unknown.embedding is flip and unknown.mirror is None
    assert as_sent(obs, "always", matched=True) is obs  # the single view, stated as such
    assert as_sent(obs, "never", matched=False) is obs  # nothing leaves: nothing to complete
    assert as_sent(unknown, "always", matched=False) is unknown
