"""Per-camera calibration of the replay cues: learned from passes, persisted in the state dir, bounded,
resettable, scored relative to the camera's live baseline; `faceonly calibrate` records passes."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from device.vision.liveness.calibration import FILE_NAME, CueCalibration, CueSample


def live(k: int) -> CueSample:
    return CueSample(0.006 * (1 + 0.05 * ((k % 5) - 2)), 0.0)  # a soft camera: its live faces are soft too


def test_calibrated_after_min_passes_and_persisted(tmp_path: Path) -> None:
    cal = CueCalibration.in_state_dir(tmp_path, min_passes=5)
    assert cal.status() == {"calibrated": False, "passes": 0, "needed": 5}
    for k in range(4):
        assert cal.learn(live(k))
    assert not cal.calibrated
    cal.learn(live(4))
    assert cal.calibrated
    again = CueCalibration.in_state_dir(tmp_path, min_passes=5)
    assert again.status() == {"calibrated": True, "passes": 5, "needed": 5}
    again.reset()
    assert not (tmp_path / FILE_NAME).exists()
    assert not CueCalibration.in_state_dir(tmp_path).calibrated


def test_the_baseline_is_bounded_to_the_newest_passes(tmp_path: Path) -> None:
    cal = CueCalibration.in_state_dir(tmp_path, min_passes=2, max_passes=10)
    for k in range(25):
        cal.learn(live(k))
    assert cal.passes == 10
    assert CueCalibration.in_state_dir(tmp_path, max_passes=10).passes == 10


def test_risk_is_relative_to_this_camera_s_live_faces() -> None:
    cal = CueCalibration(None, min_passes=5)
    uncalibrated = cal.scores(live(0), sharpness_ref=0.06).risk
    assert uncalibrated > 0.5  # the shipped absolute cue calls this soft camera's live face a replay
    for k in range(10):
        cal.learn(live(k))
    assert cal.scores(live(3), sharpness_ref=0.06).risk < 0.1  # like its own live passes
    replay = CueSample(0.0015, 0.0)  # a quarter of the live share: much softer than anything live here
    assert cal.scores(replay, sharpness_ref=0.06).risk >= 0.5
    bezel = CueSample(0.006, 0.9)
    assert cal.scores(bezel, sharpness_ref=0.06).risk >= 0.5
    assert math.isnan(cal.scores(CueSample(float("nan"), 0.0), 0.06).softness)  # fail closed downstream


def test_a_pass_that_already_looks_like_a_replay_is_not_learned() -> None:
    cal = CueCalibration(None, min_passes=3)
    for k in range(5):
        cal.learn(live(k))
    before = cal.passes
    assert not cal.learn(CueSample(0.001, 0.0), risk=0.9)
    assert not cal.learn(CueSample(float("inf"), 0.0))
    assert cal.passes == before


def test_a_damaged_file_leaves_the_terminal_uncalibrated(tmp_path: Path, caplog) -> None:
    (tmp_path / FILE_NAME).write_bytes(b"FO1\n garbage")
    cal = CueCalibration.in_state_dir(tmp_path)
    assert not cal.calibrated and cal.passes == 0
    assert "uncalibrated" in caplog.text


def test_calibrate_command_records_live_passes(shared_data, tmp_path: Path) -> None:
    from tests.vision_helpers import model_store

    model_store()  # skips (or fails in CI) without the models
    config = tmp_path / "terminal.toml"
    config.write_text(
        '[vision]\nreplay_pace = "fast"\n[vision.liveness]\nsteps = ["blink"]\ncalibration_min_passes = 1\n',
        encoding="utf-8",
    )
    video = shared_data / "video/blink/repeating_blink_video_v1.mp4"
    state = tmp_path / "state"
    cmd = [sys.executable, "-m", "device", "calibrate", "--config", str(config), "--state-dir", str(state)]
    res = subprocess.run(
        [*cmd, "--source", f"replay:{video}", "--passes", "1"], capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads(res.stdout.strip().splitlines()[-1]) == {"calibrated": True, "passes": 1, "needed": 1}
    assert '"code": "challenge.blink"' in res.stderr  # the person was prompted
    shown = subprocess.run([*cmd, "--show"], capture_output=True, text=True, timeout=60)
    assert json.loads(shown.stdout) == {"calibrated": True, "passes": 1, "needed": 1}
    reset = subprocess.run([*cmd, "--reset"], capture_output=True, text=True, timeout=60)
    assert json.loads(reset.stdout) == {"calibrated": False, "passes": 0, "needed": 1}


@pytest.mark.parametrize("bad", ["0", "-3"])
def test_calibrate_refuses_nonsense(tmp_path: Path, bad: str) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "device", "calibrate", "--state-dir", str(tmp_path), "--passes", bad],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2 and "--passes" in res.stderr
