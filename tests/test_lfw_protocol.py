"""The verification protocol's pieces on known numbers."""

from __future__ import annotations

import numpy as np
import pytest

from faceonly_lab.lfw import fold_accuracies, roc_auc, tar_at_far, threshold_at_far
from faceonly_lab.thresholdcurves import MIN_IMPOSTORS_ABOVE, calibrate, far_key


def test_far_keys():
    assert [far_key(f) for f in (1e-2, 1e-3, 1e-5)] == ["far_1e-2", "far_1e-3", "far_1e-5"]


def test_threshold_at_far_accepts_at_most_the_target_share():
    impostor = np.arange(1000) / 1000.0
    thr = threshold_at_far(impostor, 1e-2)
    assert np.mean(impostor > thr) <= 1e-2
    assert np.mean(impostor >= thr) > 1e-2  # the lowest such threshold


def test_tar_at_far():
    impostor = np.linspace(0, 0.5, 1000)
    genuine = np.array([0.2, 0.6, 0.7, 0.9])
    assert tar_at_far(genuine, impostor, 1e-3) == 0.75


def test_roc_auc_counts_ties_half():
    assert roc_auc(np.array([1.0, 2.0]), np.array([0.0, 0.5])) == 1.0
    assert roc_auc(np.array([0.0]), np.array([1.0])) == 0.0
    assert roc_auc(np.array([1.0]), np.array([1.0])) == 0.5


def test_each_fold_is_scored_at_a_threshold_from_the_other_folds():
    # fold 2's own best threshold would be 0.55; the other folds say 0.3
    scores = np.array([0.4, 0.2, 0.35, 0.25, 0.6, 0.5])
    same = np.array([True, False, True, False, True, False])
    folds = np.array([1, 1, 3, 3, 2, 2])
    accs = fold_accuracies(scores, same, folds)
    assert accs[1] == 0.5  # fold 2 at threshold 0.35 (chosen on folds 1 and 3) accepts both


def test_thresholds_leave_out_what_the_data_cannot_support():
    rng = np.random.default_rng(0)
    ids = [str(i // 2) for i in range(200)]
    emb = rng.normal(size=(200, 16)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    out = calibrate(emb, ids).thresholds
    impostors = out["impostor_pairs"]
    assert impostors == 200 * 199 / 2 - 100 and out["genuine_pairs"] == 100
    for far in (1e-2, 1e-3, 1e-4, 1e-5):
        if far_key(far) in out:
            assert far * impostors >= MIN_IMPOSTORS_ABOVE
            assert out[far_key(far)] >= out[f"point_{far_key(far)}"]  # the bound never promises more
    assert "far_1e-4" not in out and "far_1e-2" in out
    assert 0 <= out["tar_at_far_1e-2"] <= 1


def test_same_identity_pairs_never_count_as_impostors():
    emb = np.eye(4, dtype=np.float32)[[0, 0, 1, 2]]
    out = calibrate(emb, ["a", "a", "b", "c"], targets=(1e-2,)).thresholds
    assert out["impostor_pairs"] == 5 and out["genuine_pairs"] == 1
    assert "far_1e-2" not in out
    with pytest.raises(ValueError):
        calibrate(emb, ["a", "a", "b"])
