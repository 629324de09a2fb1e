"""`faceonly evaluate --pad`, small: one annotated bona fide clip (simulated person answering the prompts) and a
print attack, one seed; the manifest reader and the presenter's promises on their own."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from device.contracts import Prompt
from faceonly_lab.pad.manifest import LABELS, Motion, parse_motions, read_manifest
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
    # A spoof that replays a video is a replayed video with motion (by its file, or labels_derived's media).
    derived.write_text(
        "file,label,attack_type,media\nr.mp4,spoof,replay(phone),video\nr.jpg,spoof,replay(phone),video\n"
    )
    assert [i.label for i in read_manifest(derived)] == ["video_replay_motion"] * 2
    # The issue's own words, and the usual synonyms, in any case and spacing.
    words = {
        "Bona fide": "bona_fide",
        "bona-fide": "bona_fide",
        "live": "bona_fide",
        "print/photo": "print_photo",
        "Photo": "print_photo",
        "screen replay": "screen_replay",
        "replayed video with motion": "video_replay_motion",
        "video replay": "video_replay_motion",
    }
    manifest.write_text("path,label\n" + "".join(f"a.mp4,{w}\n" for w in words))
    assert [i.label for i in read_manifest(manifest)] == list(words.values())
    manifest.write_text("path,label\na.jpg,replay\na.mp4,replay\n")
    assert [i.label for i in read_manifest(manifest)] == ["screen_replay", "video_replay_motion"]
    with pytest.raises(ValueError, match="KIND@ONSET-END"):
        parse_motions("nod@1-2")
    manifest.write_text("path,label\na.mp4,maybe\n")
    with pytest.raises(ValueError, match=r"m\.csv:2: unknown label"):
        read_manifest(manifest)
    # No motions column, or `auto`: the clip's motions are to be proposed; an empty cell says "none".
    assert not read_manifest(derived)[0].annotated
    manifest.write_text("path,label,motions\na.mp4,bona_fide,auto\nb.mp4,bona_fide,\n")
    auto, empty = read_manifest(manifest)
    assert (auto.annotated, auto.motions, empty.annotated, empty.motions) == (False, (), True, ())


CELL = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters=',"\r\n\x00'), max_size=30)


@settings(max_examples=150, deadline=None)
@given(label=CELL, attack=CELL, motions=CELL)
def test_any_manifest_cell_gives_an_item_or_an_error_naming_its_line(label, attack, motions) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        manifest = Path(folder) / "m.csv"
        manifest.write_text(f"path,label,attack_type,motions\na.mp4,{label},{attack},{motions}\n")
        try:
            (item,) = read_manifest(manifest)
        except ValueError as exc:
            assert str(exc).startswith(f"{manifest}:2: "), exc
        else:
            assert item.label in LABELS and all(m.end >= m.onset for m in item.motions)


def _features(yaw: list[float], openness: list[float]) -> list:
    return [None if y != y else (None, y, o, True, 1.0) for y, o in zip(yaw, openness, strict=True)]


def test_motions_are_proposed_from_the_traces_by_looser_rules_than_the_decision() -> None:
    from device.config.vision import LivenessConfig
    from faceonly_lab.pad.motions import agreement, propose

    config, fps = LivenessConfig(), 30.0
    rng = random.Random(3)
    yaw = [rng.uniform(-1.0, 1.0) for _ in range(300)]
    openness = [0.3 + rng.uniform(-0.005, 0.005) for _ in range(300)]
    for i in range(40, 61):  # a turn to the subject's left, 25 deg, with a two-frame detector miss in it
        yaw[i] = 25.0 * math.sin(math.pi * (i - 40) / 20)
    yaw[50] = yaw[51] = math.nan
    for i in range(120, 141):  # a sway to 12 deg: less than the prompt asks for, not a turn
        yaw[i] = -12.0 * math.sin(math.pi * (i - 120) / 20)
    # A blink: 0.13 s at 0.55 of the baseline (the decision's 0.72 would see it too).
    for i in range(200, 204):
        openness[i] = 0.3 * 0.55
    for i in range(230, 233):  # a shallow one at 0.77: under the proposal's 0.80, over the decision's 0.72
        openness[i] = 0.3 * 0.77
    for i in range(260, 296):  # eyes closed 1.2 s: not a blink
        openness[i] = 0.05
    proposed = propose(_features(yaw, openness), fps, config)
    assert [m.kind for m in proposed] == ["turn_left", "blink", "blink"]
    turn, blink, shallow = proposed
    # From the last frame at rest to the last one 5 deg (turn_onset_deg) away.
    assert (turn.onset, turn.end) == (41, 58) and blink.onset == 200 and shallow.onset == 230
    mirrored = propose(_features([-y for y in yaw], openness), fps, config)
    assert [m.kind for m in mirrored] == ["turn_right", "blink", "blink"]
    assert agreement(proposed, (Motion("turn_left", 42, 58), Motion("blink", 201, 203))) == {
        "blink": {"annotated": 1, "proposed": 2, "agreeing": 1},
        "turn": {"annotated": 1, "proposed": 1, "agreeing": 1},
    }
    assert propose(_features([math.nan] * 50, [math.nan] * 50), fps, config) == ()


def test_the_presenter_waits_where_the_head_is_stillest() -> None:
    # A blink at 100 splits the clip: 0-87 restless (yaw swinging 20 deg), 113-149 still but shorter.
    yaw = [20.0 * math.sin(i / 3) if i < 100 else 0.5 for i in range(150)]
    motions = (Motion("blink", 100, 100),)
    still = ClipPresenter(150, 30.0, motions, random.Random(1), yaw=yaw)
    assert min(still.neutral) >= 113
    assert max(ClipPresenter(150, 30.0, motions, random.Random(1)).neutral) <= 88  # no yaw: the longest


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
        "video/krzysiek354/real_live_headturn.webm,bona_fide,krzysiek354,tune,auto\n"
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
    cannot = {(Path(c["path"]).name, c["challenge"], c["by"]) for c in payload["cannot_answer_by_annotation"]}
    assert cannot == {
        ("repeating_blink_video_v1.mp4", "shipped", "annotation"),
        ("repeating_blink_video_v1.mp4", "turn", "annotation"),
        ("real_live_headturn.webm", "shipped", "proposal"),
        ("real_live_headturn.webm", "blink", "proposal"),
    }
    prints = [r for r in payload["summary"]["apcer"] if r["attack_type"] == "print/photo"]
    assert prints and all(r["accepted"] == 0 for r in prints)
    assert payload["excluded"][0]["path"].endswith("street_walkers.mp4")
    # The head-turn clip listed with `auto`: its turns proposed from its traces, and its turn challenge run.
    (proposal,) = payload["motion_proposals"]
    assert proposal["path"].endswith("real_live_headturn.webm") and proposal["proposed"].count("turn_") == 3
    turns = [r for r in payload["summary"]["bpcer"] if r["clip"] == "real_live_headturn.webm"]
    assert {r["challenge"] for r in turns} == {"turn"} and all(r["cannot_answer"] == 0 for r in turns)
    assert "Motions proposed from the clips' traces" in text
    assert any(x["kind"] == "blink" and x["lag_s"] is not None for x in payload["onset_lags"])
    assert list((tmp_path / "cache").glob("*.npz"))  # per-frame model outputs kept for the next run
    import cv2

    for name in ("pad_bpcer.png", "pad_apcer.png"):
        image = cv2.imread(str(tmp_path / "plots" / name))
        assert image is not None and min(image.shape[:2]) >= 300, name
    # A terminal's own config is evaluated as set: its challenge steps and retries (the cache is warm now).
    config = tmp_path / "terminal.toml"
    config.write_text('[vision.liveness]\nsteps = ["blink"]\nstep_retries = 0\n', encoding="utf-8")
    manifest.write_text("\n".join(manifest.read_text(encoding="utf-8").splitlines()[:2]) + "\n")
    res = subprocess.run([*cmd, "--config", str(config)], capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    payload = json.loads(data.read_text(encoding="utf-8"))["pad"]
    assert payload["config"]["changed"] == {
        "vision.liveness.steps": ["blink"],
        "vision.liveness.step_retries": 0,
    }
    bona = [r for r in payload["summary"]["bpcer"] if r["clip"] == "repeating_blink_video_v1.mp4"]
    assert {r["challenge"] for r in bona} == {"shipped", "blink"}  # the terminal's challenge is a blink now
    assert all(t["step_tries"] == 1 for r in payload["runs"] for t in r["tries"])  # no retry within a try
    text = report.read_text(encoding="utf-8")
    assert "The terminal's challenge: blink; settings other than the shipped ones: " in text
    assert "vision.liveness.step_retries = 0" in text
    config.write_text("[vision.liveness]\nstep_retries = -1\n", encoding="utf-8")
    res = subprocess.run([*cmd, "--config", str(config)], capture_output=True, text=True, timeout=900)
    assert res.returncode == 1 and "step_retries" in res.stderr, res.stderr[-3000:]
