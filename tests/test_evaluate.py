import json

import pytest

from device.cli import main
from device.vision.evaluation import read_pairs, tar_at_far
from tests.vision_helpers import model_store


def test_tar_at_far():
    import numpy as np

    impostor = np.linspace(0, 0.5, 1000)
    genuine = np.array([0.2, 0.6, 0.7, 0.9])
    assert tar_at_far(genuine, impostor, 1e-3) == 0.75


def test_official_pairs_txt_format(tmp_path):
    (tmp_path / "pairs.txt").write_text("2 1\nA 1 2\nB 1 C 3\nD 2 4\nE 1 F 1\n")
    pairs = read_pairs(tmp_path / "pairs.txt")
    assert [(p.fold, p.same) for p in pairs] == [(1, True), (1, False), (2, True), (2, False)]
    assert pairs[1].img2.name == "C_0003.jpg"


def test_bad_arguments_are_clear_errors(capsys):
    assert main(["evaluate", "--blink", "x.mp4"]) == 1
    assert "--blink-events" in capsys.readouterr().err


def test_evaluate_prints_a_table_and_json(shared_data, tmp_path, capsys):
    model_store()
    out = tmp_path / "r.json"
    code = main(
        [
            "evaluate",
            "--negatives",
            str(shared_data / "negatives"),
            "--blink",
            str(shared_data / "video/blink/repeating_blink_video_v1.mp4"),
            "--blink-events",
            str(shared_data / "video/blink/blink_events_manual.csv"),
            "--json",
            str(out),
        ]
    )
    assert code == 0
    table = capsys.readouterr().out
    assert "| negatives | negatives_false_per_20 |" in table
    results = json.loads(out.read_text())["results"]
    assert results["negatives"]["negatives_false_per_20"] <= 1.0
    assert results["blink"]["blink_matched"] >= 11


@pytest.mark.slow
def test_lfw_end_to_end_acceptance(shared_data, tmp_path):
    model_store()
    out = tmp_path / "lfw.json"
    assert (
        main(
            [
                "evaluate",
                "--lfw",
                str(shared_data / "verification/lfw/pairs_view2_local.csv"),
                "--json",
                str(out),
            ]
        )
        == 0
    )
    v = json.loads(out.read_text())["results"]["verification"]
    assert v["lfw_detection_rate"] >= 0.995
    assert v["lfw_accuracy"] >= 0.98
    assert v["lfw_tar_at_far_0.001"] >= 0.90
