"""Mean templates: made as `gallery build` makes them, carried (signed) in the gallery, and matched at the
threshold their own curve needs; a gallery with a template kind the manifest has no curve for is refused."""

from __future__ import annotations

import json

import numpy as np
import pytest

from device.identity import gallery as gal
from device.identity import operator as op
from device.identity.runtime import Identity
from device.identity.templates import make_templates
from device.identity.thresholds import CurveError, CurveSet, ThresholdCurve, gallery_operating_point
from device.infra.modelstore import ModelStore
from device.vision.embed import l2_normalise
from faceonly_lab import thresholdcurves
from tests.test_identity_gallery import EMBEDDER, GALLERY_KEY, SIGNER, _apply

SINGLE = ThresholdCurve.from_points([[1e-1, 0.50], [1e-6, 0.60]])
MEAN3 = ThresholdCurve.from_points([[1e-1, 0.55], [1e-6, 0.70]])


def _rows(n: int, seed: int = 0) -> np.ndarray:
    return l2_normalise(np.random.default_rng(seed).normal(size=(n, gal.DIM)))


@pytest.mark.parametrize(
    ("n", "mode", "templates", "averaged"),
    [
        (1, "mean", 1, 1),
        (3, "mean", 1, 3),
        (5, "mean", 1, 5),
        (6, "mean", 2, 3),
        (7, "mean", 2, 4),
        (3, "each", 3, 1),
    ],
)
def test_make_templates_groups_at_most_max_averaged_photos(n, mode, templates, averaged):
    rows = _rows(n)
    made, k = make_templates(rows, mode)
    assert made.shape == (templates, gal.DIM) and k == averaged <= gal.MAX_AVERAGED
    assert np.allclose(np.linalg.norm(made, axis=1), 1.0, atol=1e-5)
    if mode == "mean" and templates == 1:
        expected = rows.mean(axis=0)
        assert np.allclose(made[0], expected / np.linalg.norm(expected), atol=1e-6)


def test_averaged_is_signed_and_round_trips_through_the_body():
    rows, k = make_templates(_rows(3), "mean")
    ann = gal.check_subject("ann", "Ann", rows, k)
    bob = gal.check_subject("bob", None, _rows(2, 1))
    snap = op.snapshot(SIGNER, [ann, bob], 1, EMBEDDER)
    g = _apply(snap, None)
    assert g.subject("ann").averaged == 3 and g.subject("bob").averaged == 1 and g.averaged == {1, 3}
    # The same templates claimed as single photos give another gallery: the signed digest refuses it.
    header_len = int.from_bytes(snap.body[4:8], "little")
    header = json.loads(snap.body[8 : 8 + header_len])
    assert header["subjects"][0] == ["ann", "Ann", 1, 3] and header["subjects"][1] == ["bob", None, 2]
    assert gal.subject_hash(ann) != gal.subject_hash(gal.Subject("ann", "Ann", ann.templates, 1))


@pytest.mark.parametrize(
    "entry", [["ann", None, 1, 1], ["ann", None, 1, 6], ["ann", None, 1, "3"], ["ann", None, 1, 3, 0]]
)
def test_a_non_canonical_or_out_of_range_photo_count_is_refused(entry):
    head = json.dumps({"dim": gal.DIM, "subjects": [entry], "remove": []}).encode()
    body = gal.MAGIC + len(head).to_bytes(4, "little") + head + _rows(1).astype("<f4").tobytes()
    with pytest.raises(ValueError):
        gal.decode_body(body)


def test_curve_set_from_the_manifest_and_the_highest_threshold_wins():
    info = {
        "thresholds": {"curve": [[1e-1, 0.5], [1e-6, 0.6]], "mean_curves": {"3": [[1e-1, 0.55], [1e-6, 0.7]]}}
    }
    curves = CurveSet.from_manifest(info)
    assert sorted(curves.by_averaged) == [1, 3]
    mixed = gallery_operating_point(curves, 1e-2, 10, {1, 3})
    assert mixed.threshold == gallery_operating_point(curves, 1e-2, 10, {3}).threshold
    assert mixed.threshold > gallery_operating_point(curves, 1e-2, 10, {1}).threshold
    with pytest.raises(CurveError, match="averaged over 2"):
        gallery_operating_point(curves, 1e-2, 10, {2})
    for bad in ({"1": [[1e-1, 0.5], [1e-6, 0.6]]}, {"x": []}, [[1e-1, 0.5]]):
        with pytest.raises(CurveError):
            CurveSet.from_manifest({"thresholds": {**info["thresholds"], "mean_curves": bad}})


def test_the_terminal_matches_a_mean_gallery_at_its_curve_and_refuses_an_uncalibrated_one(tmp_path):
    identity = Identity(
        EMBEDDER,
        CurveSet({1: SINGLE, 3: MEAN3}),
        GALLERY_KEY,
        tmp_path / "g.sealed",
        tmp_path / "g.key",
        1e-2,
    )
    photos = _rows(3)
    rows, k = make_templates(photos, "mean")
    v1 = op.snapshot(SIGNER, [gal.check_subject("ann", None, rows, k)], 1, EMBEDDER)
    identity.apply_update(v1.manifest, v1.body)
    point = identity.operating_point()
    assert point is not None and point.threshold == pytest.approx(MEAN3.threshold(1e-2)[0], abs=1e-6)
    assert identity.summary()["templates_averaged"] == [3]
    # Status says what the setting means: the curves' bound at this threshold, per 1,000 strangers.
    assert identity.summary()["threshold_meaning"] == (
        "at this gallery size (1 template), expect about 0.001 false accepts per 1,000 strangers "
        "(a 95% upper bound: likely fewer)"
    )
    assert identity.summary()["threshold"]["expected_false_accepts_per_1000"] == pytest.approx(1e-3)
    assert identity.identify(rows[0]).subject == "ann"
    rows4, k4 = make_templates(_rows(4, 2), "mean")
    v2 = op.snapshot(SIGNER, [gal.check_subject("bob", None, rows4, k4)], 2, EMBEDDER)
    with pytest.raises(gal.GalleryRefused) as err:
        identity.apply_update(v2.manifest, v2.body)
    assert err.value.reason == "uncalibrated" and identity.gallery.version == 1
    assert identity.store.load(GALLERY_KEY, EMBEDDER)[0].version == 1  # nothing stored either


def test_mean_template_impostors_score_every_template_against_every_other_identity():
    x = _rows(7)
    ids = ["a", "a", "a", "a", "b", "b", "c"]  # a: two means of 2; b: one; c: none
    scores = thresholdcurves.mean_template_impostors(x, ids, 2, keep_far=1.0).scores
    # 3 templates; a's two meet the 3 images of b and c, b's meets the 5 of a and c.
    assert len(scores) == 2 * 3 + 5

    def mean(rows):
        m = x[rows].mean(axis=0)
        return m / np.linalg.norm(m)

    expected = np.concatenate(
        [x[[4, 5, 6]] @ mean([0, 1]), x[[4, 5, 6]] @ mean([2, 3]), x[[0, 1, 2, 3, 6]] @ mean([4, 5])]
    )
    assert np.allclose(np.sort(scores), np.sort(expected), atol=1e-6)


def test_shipped_manifest_has_a_mean_curve_per_photo_count_stricter_than_single_photos():
    info = ModelStore().entry("embedder").info
    curves = CurveSet.from_manifest(info)
    assert sorted(curves.by_averaged) == list(range(1, gal.MAX_AVERAGED + 1))
    assert max(thresholdcurves.MEAN_TEMPLATE_PHOTOS) == gal.MAX_AVERAGED
    at = {k: c.threshold(1e-4)[0] for k, c in curves.by_averaged.items()}
    # A mean template meets strangers higher: it needs a higher threshold than one photo at the same FAR.
    assert all(at[k] > at[1] for k in range(2, gal.MAX_AVERAGED + 1)), at
