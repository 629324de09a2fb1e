"""`faceonly evaluate --pad`, small: one annotated bona fide clip (simulated person answering the prompts) and a
print attack, one seed; the manifest reader and the presenter's promises on their own."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from device.contracts import Prompt
from faceonly_lab.pad.manifest import Motion, parse_motions, read_manifest
from faceonly_lab.pad.presenter import LEAD_IN_S, REACTION_RANGE_S, ClipPresenter


def test_manifest_reads_labels_motions_and_labels_derived_rows(tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "path,label,camera,motions\na.mp4,bona_fide,cam1,turn_left@3-9 blink@20-22\nb.jpg,print_photo,,\n",
        encoding="utf-8",
    )
    a, b = read_manifest(manifest)
    assert a.motions == (Motion("turn_left", 3, 9), Motion("blink", 20, 22)) and a.camera == "cam1"
    assert b.still and b.label == "print_photo" and b.path == tmp_path / "b.jpg"
    derived = tmp_path / "d.csv"
    derived.write_text(
        "file,label,attack_type,media\nx.jpg,spoof,print,image\ny.jpg,spoof,replay(tablet),image\n"
    )
    assert [i.label for i in read_manifest(derived)] == ["print_photo", "screen_replay"]
    with pytest.raises(ValueError, match="KIND@ONSET-END"):
        parse_motions("nod@1-2")
    manifest.write_text("path,label\na.mp4,maybe\n")
    with pytest.raises(ValueError, match=r"m\.csv:2: unknown label"):
        read_manifest(manifest)


def _prompt(step: str) -> Prompt:
    return Prompt(1, "prompt", step, 1, 2, 3.0, f"challenge.{step}", 0.0)  # type: ignore[arg-type]


def test_the_presenter_answers_only_what_it_is_asked_and_only_after_a_reaction() -> None:
    motions = (Motion("blink", 100, 104), Motion("turn_left", 200, 230))
    p = ClipPresenter(300, 30.0, motions, random.Random(1))
    neutral = {p.frame(k / 30) for k in range(60)}
    assert not neutral & set(range(88, 243))  # waits away from every annotated motion
    p.prompt(_prompt("blink"), 2.0)
    shown = [(2.0 + k / 30, p.frame(2.0 + k / 30)) for k in range(60)]
    onset_at = next(t for t, i in shown if i == 100)
    assert REACTION_RANGE_S[0] - 0.05 <= onset_at - 2.0 <= REACTION_RANGE_S[1] + 0.05
    first = next(t for t, i in shown if 90 <= i <= 104)
    assert onset_at - first == pytest.approx(LEAD_IN_S, abs=0.05)
    p.prompt(_prompt("turn_right"), 5.0)
    assert p.cannot_answer == ["turn_right"]
    player = ClipPresenter(300, 30.0, motions, random.Random(1), mode="play")
    start = player.frame(0.0)
    player.prompt(_prompt("blink"), 0.0)
    assert [player.frame(k / 30) for k in range(1, 4)] == [(start + k) % 300 for k in range(1, 4)]


def test_pad_evaluation_end_to_end(shared_data, tmp_path: Path) -> None:
    from tests.vision_helpers import model_store

    model_store()
    manifest = tmp_path / "pad.csv"
    manifest.write_text(
        "path,label,camera,split,motions\n"
        "video/blink/repeating_blink_video_v1.mp4,bona_fide,blink_v1,tune,"
        "blink@6-8 blink@32-36 blink@44-46 blink@72-76 blink@106-110 blink@134-136\n"
        "antispoof/silent_face/image_F1.jpg,print_photo,silent_face,test,\n"
        "video/facenet_pytorch/street_walkers.mp4,not_a_presentation,,test,\n",
        encoding="utf-8",
    )
    report, data = tmp_path / "pad.md", tmp_path / "pad.json"
    cmd = [
        sys.executable, "-m", "device", "evaluate", "--pad", str(manifest), "--data-root", str(shared_data),
        "--seeds", "1", "--no-variants", "--pad-cache", str(tmp_path / "cache"), "--report", str(report),
        "--json", str(data), "--plots", str(tmp_path / "plots"),
    ]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    text = report.read_text(encoding="utf-8")
    assert "evaluate --pad" in text  # the command that made it
    payload = json.loads(data.read_text(encoding="utf-8"))["pad"]
    bona = [r for r in payload["summary"]["bpcer"] if r["clip"] == "repeating_blink_video_v1.mp4"]
    assert {r["challenge"] for r in bona} == {"blink"}  # no turn in the clip: turn challenges cannot answer
    assert {c["challenge"] for c in payload["cannot_answer_by_annotation"]} == {"shipped", "turn"}
    prints = [r for r in payload["summary"]["apcer"] if r["attack_type"] == "print/photo"]
    assert prints and all(r["accepted"] == 0 for r in prints)
    assert payload["excluded"][0]["path"].endswith("street_walkers.mp4")
    assert any(x["kind"] == "blink" and x["lag_s"] is not None for x in payload["onset_lags"])
    assert list((tmp_path / "cache").glob("*.npz"))  # per-frame model outputs kept for the next run
    import cv2

    for name in ("pad_bpcer.png", "pad_apcer.png"):
        image = cv2.imread(str(tmp_path / "plots" / name))
        assert image is not None and min(image.shape[:2]) >= 300, name
