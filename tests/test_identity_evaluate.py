"""`faceonly evaluate --identification` on an LFW-made CSV, at the shipped threshold curve."""

from __future__ import annotations

import json

import pytest

from device.cli import main
from device.identity.thresholds import ThresholdCurve
from device.infra.modelstore import ModelStore
from faceonly_lab.lfwsets import write_identification_csv
from tests.vision_helpers import model_store


def test_evaluate_identification_on_an_lfw_csv(shared_data, tmp_path):
    """A small slice of LFW (the first identities of half a) through the CLI: keys, counts, sanity."""
    model_store()
    pairs = shared_data / "verification/lfw/pairs_view2_local.csv"
    full = tmp_path / "g1.csv"
    write_identification_csv(pairs, full, 1, "a")
    lines = full.read_text().splitlines()
    small = tmp_path / "small.csv"
    small.write_text("\n".join(lines[:161]) + "\n")
    out = tmp_path / "r.json"
    assert main(["evaluate", "--identification", str(small), "--per-search", "1e-2", "--json", str(out)]) == 0
    r = json.loads(out.read_text())["results"]["identification"]
    for key in ("rank1", "known_accept_rate", "unknown_accept_rate", "threshold", "gallery_size"):
        assert key in r
    # What the shipped curves promise there, whether the strangers stayed within it, and by which bound.
    assert r["threshold_bound"] == "identity-level (subsets) bootstrap, one-sided 95%"
    assert r["target_held"] == float(r["unknown_accept_rate"] <= 1e-2)
    assert r["unknown_accepted"] == round(r["unknown_accept_rate"] * r["unknown_probes"])
    assert r["promised_per_search_far"] <= 1e-2 or r["threshold_clamped"] == 1.0
    assert r["gallery_size"] >= 10 and r["known_probes"] >= 10
    assert r["rank1"] >= 0.8 and r["unknown_accept_rate"] <= 0.1
    curve = ThresholdCurve.from_manifest(ModelStore().entry("embedder").info)
    assert curve.fars[-1] <= r["per_comparison_far"] or r["threshold_clamped"] == 1.0


@pytest.mark.slow
def test_evaluate_identification_calibrated_on_disjoint_identities(shared_data, tmp_path):
    """--calibration: the threshold curve from another set's impostor pairs (here the other LFW half)."""
    model_store()
    pairs = shared_data / "verification/lfw/pairs_view2_local.csv"
    for half in ("a", "b"):
        write_identification_csv(pairs, tmp_path / f"{half}.csv", 1, half)
        lines = (tmp_path / f"{half}.csv").read_text().splitlines()
        (tmp_path / f"{half}_small.csv").write_text("\n".join(lines[:121]) + "\n")
    out = tmp_path / "r.json"
    args = ["evaluate", "--identification", str(tmp_path / "b_small.csv"), "--calibration"]
    assert main([*args, str(tmp_path / "a_small.csv"), "--per-search", "1e-2", "--json", str(out)]) == 0
    r = json.loads(out.read_text())["results"]["identification"]
    assert r["calibrated_on_other_set"] == 1.0 and r["gallery_size"] >= 10
    assert r["threshold_bound"] == "identity-level (subsets) bootstrap, one-sided 95%"
    assert 0.5 < r["threshold"] < 1.0
