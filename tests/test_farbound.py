"""The FAR upper bound (identity-level bootstrap) and the curves read off it keep their promise on people they
were not fitted on, where the point estimate does not."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.stats import beta

from faceonly_lab import farbound, thresholdcurves


def population(identities: int, per_identity: int, seed: int, dim: int = 8) -> tuple[np.ndarray, list[str]]:
    """Faces of a population where people differ in how many others they resemble: some sit near the
    middle of face space (they attract impostors), some far out; each photo is its person plus noise."""
    rng = np.random.default_rng(seed)
    spread = rng.choice([0.5, 1.0, 1.5], size=identities, p=[0.15, 0.7, 0.15])
    centres = rng.normal(size=(identities, dim)) * spread[:, None]
    x = np.repeat(centres, per_identity, axis=0) + 0.5 * rng.normal(size=(identities * per_identity, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), [str(i) for i in np.repeat(np.arange(identities), per_identity)]


def impostor_scores(x: np.ndarray, ids: list[str]) -> np.ndarray:
    labels = np.asarray(ids)
    i, j = np.triu_indices(len(x), 1)
    cross = labels[i] != labels[j]
    return (x @ x.T)[i[cross], j[cross]]


def test_a_resampling_weighs_each_comparison_as_if_the_drawn_people_were_copied():
    """Weights w_a * w_b and the closed-form total equal literally copying each identity w times and
    comparing every copy with every copy of every OTHER identity (a person is never their own impostor)."""
    x, ids = population(6, 2, seed=3)
    ids[1] = "0b"  # identities with 1, 2 and 3 images
    ids[2] = "0b"
    imp = farbound.pair_impostors(x, ids, keep_far=1.0)
    names = sorted(set(ids))
    weights = np.array([[2, 0, 1, 3, 0, 1, 2], [1, 1, 1, 1, 1, 1, 1]], np.float64)
    counts = np.array([0, 1, 5, 17, len(imp.scores)])
    got = farbound.resampled_fars(imp, weights, counts)
    for row, w in enumerate(weights):
        copies = [(name, copy) for name, n in zip(names, w, strict=True) for copy in range(int(n))]
        above, total = np.zeros(len(counts)), 0
        for (a, _), (b, _) in itertools.combinations(copies, 2):
            if a == b:
                continue
            pair = impostor_scores(
                np.stack([x[k] for k in range(len(x)) if ids[k] in (a, b)]),
                [ids[k] for k in range(len(x)) if ids[k] in (a, b)],
            )
            total += len(pair)
            for c, count in enumerate(counts):
                threshold = imp.scores[count] if count < len(imp.scores) else -np.inf
                above[c] += np.sum(pair > threshold) if count else 0
        assert imp.total_weight(w[None])[0] == total
        assert got[row] == pytest.approx(above / total)
    assert imp.total == len(impostor_scores(x, ids))


def test_a_draw_without_any_impostor_comparison_counts_as_the_worst_case():
    """A small set's draw of one person only (no comparison among the drawn) gives FAR 1 at every threshold,
    never a NaN that breaks the curve, nor a 0 that would lower the bound."""
    x, ids = population(3, 2, seed=4)
    imp = farbound.pair_impostors(x, ids, keep_far=1.0)
    weights = np.array([[3, 0, 0], [1, 1, 1]], np.float64)
    got = farbound.resampled_fars(imp, weights, np.array([0, 1, len(imp.scores)]))
    assert np.isfinite(got).all()
    assert list(got[0]) == [1.0, 1.0, 1.0]
    assert got[1][-1] == pytest.approx(1.0) and got[1][0] == 0.0


def test_mean_templates_are_resampled_by_their_owner_and_the_image_by_its_identity():
    x, ids = population(5, 4, seed=4)
    imp = thresholdcurves.mean_template_impostors(x, ids, 2, keep_far=1.0)
    assert not imp.unordered and imp.total == 2 * 5 * 16  # 2 templates each x the 16 images of the others
    assert np.all(imp.left != imp.right)
    w = np.array([[0, 2, 1, 0, 1]], np.float64)
    # templates: identity 1 twice (2 templates each), 2 and 4 once; images of the other drawn identities
    expected = (2 * 2) * (4 + 4) + 2 * (2 * 4 + 4) + 2 * (2 * 4 + 4)
    assert imp.total_weight(w)[0] == expected


def test_the_bound_is_monotone_and_never_narrower_than_clopper_pearson():
    x, ids = population(120, 3, seed=0)
    imp = farbound.pair_impostors(x, ids, thresholdcurves.CURVE_TOP_FAR)
    table = farbound.bound_table(imp, thresholdcurves.MIN_IMPOSTORS_ABOVE)
    assert np.all(np.diff(table.thresholds) >= 0) and np.all(np.diff(table.bounds) <= 0)
    above = np.array([np.sum(imp.scores > t) for t in table.thresholds])
    independent = beta.ppf(farbound.BOUND_CONFIDENCE, above + 1, imp.total - above)
    assert np.all(table.bounds >= independent)
    assert np.all(table.bounds >= table.point)


def test_the_bound_curve_keeps_its_promise_on_other_people_where_the_point_estimate_does_not():
    """Fitted on 120 people; measured on 1,500 others from the same population."""
    x, ids = population(120, 3, seed=0)
    curve = thresholdcurves.threshold_curve(farbound.pair_impostors(x, ids, thresholdcurves.CURVE_TOP_FAR))
    point = thresholdcurves.point_estimate_curve(impostor_scores(x, ids))
    others = impostor_scores(*population(1500, 2, seed=999))

    def worst(points):
        return max(np.mean(others > t) / far for far, t in points if far >= curve[-1][0])

    assert len(curve) > 40 and curve[0][0] == pytest.approx(0.1)
    assert all(b[0] < a[0] and b[1] >= a[1] for a, b in itertools.pairwise(curve))
    assert worst(curve) <= 1.0
    assert worst(point) > 1.1  # the old recipe let more strangers through than it promised
    # The bound costs genuine acceptance: each threshold sits above the point estimate's.
    assert all(t >= dict(point).get(f, -1) for f, t in curve[:-1])


def test_the_calibration_names_bound_and_point_thresholds_and_leaves_out_what_it_cannot_bound():
    x, ids = population(60, 3, seed=5)
    cal = thresholdcurves.calibrate(x, ids)
    t = cal.thresholds
    assert t["impostor_pairs"] == 180 * 179 / 2 - 60 * 3 and t["genuine_pairs"] == 60 * 3
    assert t["far_1e-2"] >= t["point_far_1e-2"] and 0 <= t["tar_at_far_1e-2"] <= 1
    assert "far_1e-5" not in t  # 15,930 impostor pairs cannot bound 1e-5
    assert sorted(cal.mean_curves) == [2, 3]  # 3 photos per person: no mean of 4 or 5
    assert cal.curve[-1][0] > thresholdcurves.MIN_IMPOSTORS_ABOVE / t["impostor_pairs"]


def test_too_few_impostors_give_no_curve():
    x, ids = population(4, 2, seed=6)
    assert thresholdcurves.threshold_curve(farbound.pair_impostors(x, ids, 0.1)) == []


def test_random_gallery_search_is_the_exact_average_over_every_gallery():
    """Against enumeration: every gallery of N of the other subjects, every image a stranger to it."""
    from faceonly_lab.identification import random_gallery_search

    x, ids = population(7, 3, seed=8)
    ids[20] = "lone"  # a person with one photo: never enrolled as a mean of 2, still a stranger
    threshold = float(np.quantile(impostor_scores(x, ids), 0.9))
    for averaged, n in ((1, 2), (2, 3)):
        found = random_gallery_search(x, ids, averaged, threshold, n)
        names = np.asarray(ids)
        subjects = [s for s in sorted(set(ids)) if np.sum(names == s) >= averaged]
        templates = {}
        for s in subjects:
            mean = x[np.flatnonzero(names == s)[:averaged]].mean(axis=0)
            templates[s] = mean / np.linalg.norm(mean)
        through = []
        for probe, own in zip(x, ids, strict=True):
            galleries = list(itertools.combinations([s for s in subjects if s != own], n))
            hits = [any(float(probe @ templates[s]) > threshold for s in g) for g in galleries]
            through.append(np.mean(hits))
        assert found.rate == pytest.approx(np.mean(through))
        assert found.strangers == len(x) and found.interval[0] <= found.rate <= found.interval[1]
