"""The 1:N matcher on known vectors: best template per subject, top-k, margin, open set, fail closed."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from device.identity.matcher import Matcher
from device.vision.embed import l2_normalise


def _unit(*v: float) -> np.ndarray:
    return l2_normalise(np.array(v, np.float32))


def test_best_template_per_subject_top_k_and_margin():
    m = Matcher(
        ["ann", "bob", "cy"],
        [np.stack([_unit(1, 0, 0), _unit(0, 1, 0)]), _unit(0.8, 0.6, 0)[None], _unit(0, 0, 1)[None]],
    )
    assert m.size == 3 and m.comparisons == 4
    found = m.search(_unit(0, 1, 0), k=2)
    assert [c.subject for c in found.top] == ["ann", "bob"]
    assert found.top[0].score == pytest.approx(1.0)
    assert found.margin == pytest.approx(1.0 - 0.6)


def test_open_set_unknown_stays_unknown():
    m = Matcher(["ann", "bob"], [_unit(1, 0, 0)[None], _unit(0, 1, 0)[None]])
    decision, _ = m.decide(_unit(1, 1, 0.1), threshold=0.9)
    assert decision.subject is None and decision.score < 0.9  # nearest is not forced
    decision, _ = m.decide(_unit(1, 0.05, 0), threshold=0.9)
    assert decision.subject == "ann" and decision.threshold == 0.9


@pytest.mark.parametrize("bad", [np.full(3, np.nan, np.float32), np.array([1, np.inf, 0], np.float32)])
def test_non_finite_probe_is_no_match(bad):
    m = Matcher(["ann"], [_unit(1, 0, 0)[None]])
    decision, _ = m.decide(bad, threshold=-1.0)
    assert decision.subject is None and math.isnan(decision.score)


def test_non_finite_threshold_is_no_match():
    m = Matcher(["ann"], [_unit(1, 0, 0)[None]])
    assert m.decide(_unit(1, 0, 0), threshold=float("nan"))[0].subject is None


def test_empty_gallery_matches_nobody():
    m = Matcher([], [])
    assert m.comparisons == 0
    assert m.decide(_unit(1, 0, 0), threshold=0.0)[0].subject is None


def test_bad_galleries_are_refused():
    with pytest.raises(ValueError, match="unique"):
        Matcher(["a", "a"], [_unit(1, 0)[None], _unit(0, 1)[None]])
    with pytest.raises(ValueError, match="non-finite"):
        Matcher(["a"], [np.array([[np.nan, 1.0]], np.float32)])
    with pytest.raises(ValueError, match="dimensions"):
        Matcher(["a"], [_unit(1, 0)[None]]).search(_unit(1, 0, 0))


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 40), st.integers(1, 4), st.integers(0, 2**31 - 1), st.integers(1, 5))
def test_search_equals_brute_force(n_subjects, max_k, seed, k):
    rng = np.random.default_rng(seed)
    sets = [l2_normalise(rng.normal(size=(int(rng.integers(1, max_k + 1)), 8))) for _ in range(n_subjects)]
    subjects = [f"s{i}" for i in range(n_subjects)]
    m = Matcher(subjects, sets)
    probe = l2_normalise(rng.normal(size=8))
    brute = np.array([float((t @ probe).max()) for t in sets])
    np.testing.assert_allclose(m.subject_scores(probe), brute, atol=1e-5)
    np.testing.assert_allclose(m.subject_scores_many(probe[None])[0], brute, atol=1e-5)
    found = m.search(probe, k)
    order = np.argsort(-brute, kind="stable")
    assert len(found.top) == min(k, n_subjects)
    np.testing.assert_allclose([c.score for c in found.top], brute[order[: len(found.top)]], atol=1e-5)
    if n_subjects >= 2:
        assert found.margin == pytest.approx(brute[order[0]] - brute[order[1]], abs=1e-5)
    else:
        assert math.isnan(found.margin)
