"""The challenge against real attacks: photo replays never pass, a real head turn passes the turn check."""

from __future__ import annotations

import numpy as np
import pytest

from device.config.vision import LivenessConfig, VisionConfig
from device.contracts import Frame, Prompt
from device.vision.pipeline import build_pipeline
from tests.photo_attacks import photo_attack_frames
from tests.vision_helpers import model_store

STILLS = [
    "verification/deepface/img1.jpg",
    "verification/deepface/img12.jpg",
    "verification/deepface/img20.jpg",
    "verification/deepface/img30.jpg",
    "antispoof/doubango/genuine.jpg",
    "antispoof/silent_face/image_T1.jpg",
]


class Prompts:
    def __init__(self) -> None:
        self.seen: list[Prompt] = []

    def publish(self, prompt: Prompt) -> None:
        self.seen.append(prompt)


def run(pipeline, frames, fps=15.0):
    out = []
    for i, image in enumerate(frames):
        out += pipeline.process(Frame(index=i, timestamp=i / fps, monotonic=i / fps, image=image))
    return out + pipeline.flush()


@pytest.fixture(scope="module")
def store():
    return model_store()


@pytest.mark.parametrize("steps", [("turn", "blink"), ("turn",)])
def test_photo_attacks_never_pass_the_challenge(shared_data, store, steps):
    from device.vision.stills import load_image

    passes = []
    for k, rel in enumerate(STILLS):
        still = load_image(shared_data / rel)
        for seed in (k,):
            config = VisionConfig(liveness=LivenessConfig(steps=steps, seed=seed))
            sink = Prompts()
            events = run(build_pipeline(config, store, prompt_sink=sink), photo_attack_frames(still, seed))
            assert sink.seen, "the challenge must have prompted"
            passes += [(rel, seed, e.reasons) for e in events if e.decision == "accepted"]
    assert passes == []


def test_motionless_face_cannot_pass(shared_data, store):
    import cv2

    from device.vision.stills import load_image

    still = load_image(shared_data / "verification/deepface/img1.jpg")
    scale = min(480 / still.shape[0], 640 / still.shape[1])
    still = cv2.resize(still, None, fx=scale, fy=scale)
    frame = np.zeros((480, 640, 3), np.uint8)
    frame[: still.shape[0], : still.shape[1]] = still
    events = run(
        build_pipeline(VisionConfig(liveness=LivenessConfig(seed=3)), store, prompt_sink=Prompts()),
        [frame.copy() for _ in range(120)],
    )
    assert len(events) == 1
    assert events[0].decision == "rejected"
    assert any("no blink" in r or "no head turn" in r for r in events[0].reasons)


KRZYSIEK_TURNS = "turn_left@36-47 turn_right@49-66 turn_left@109-120"  # docs/pad/dev-manifest.csv


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_real_head_turn_answering_the_prompt_passes_the_turn_check(shared_data, store, seed):
    """A recording cannot react to a random prompt: the person answers with the clip's own head turn, played
    when the prompt asks for it after a reaction time (faceonly_lab.pad.presenter). Played straight, a
    recording's turn falls outside the onset window as often as not, which is the point of the window."""
    from faceonly_lab.pad.manifest import Item, parse_motions
    from faceonly_lab.pad.run import Evaluator

    # The replay cues are calibrated per camera; this clip's camera is not ours, so only flag (the turn is tested).
    config = VisionConfig(liveness=LivenessConfig(replay_risk_action="flag"))
    evaluator = Evaluator(store, None, lambda _: None, tries=1, config=config)
    path = shared_data / "video/krzysiek354/real_live_headturn.webm"
    clip = evaluator.clip(
        Item(path, "bona_fide", "krzysiek354", "krzysiek", motions=parse_motions(KRZYSIEK_TURNS))
    )
    run = evaluator.clip_run(clip, "original", "turn", "answer", seed, None)
    assert run.outcome == "pass", [t.reasons for t in run.tries]
    assert run.tries[0].asked[0] in ("turn_left", "turn_right")


def _replay(pipeline, path):
    from device.vision.replay import ReplaySource

    source = ReplaySource(path, pace="fast")
    events = []
    for frame in source.frames():
        try:
            events += pipeline.process(frame)
        finally:
            source.release(frame)
    return events + pipeline.flush()


def test_real_blink_passes_and_the_iris_model_runs_only_for_the_blink_step(shared_data, store):
    from faceonly_lab.bench.probe import Probe, TimedStore

    video = shared_data / "video"
    probe = Probe()
    timed = TimedStore(store, probe)
    blink = VisionConfig(liveness=LivenessConfig(steps=("blink",), seed=0, replay_risk_action="flag"))
    events = _replay(
        build_pipeline(blink, timed, prompt_sink=Prompts()), video / "blink/repeating_blink_video_v1.mp4"
    )
    assert [e.decision for e in events] == ["accepted"], events[0].reasons
    assert events[0].liveness["blink_depth"] < blink.liveness.blink_dip
    assert probe.samples.models["iris_landmark"]
    # During a head-turn step the eye opening is not read, so the iris model never runs.
    probe.new_pass()
    turn = VisionConfig(liveness=LivenessConfig(steps=("turn",), seed=0, replay_risk_action="flag"))
    events = _replay(
        build_pipeline(turn, timed, prompt_sink=Prompts()), video / "krzysiek354/real_live_headturn.webm"
    )
    assert [e.decision for e in events] == ["accepted"], events[0].reasons
    assert "iris_landmark" not in probe.samples.models
    assert len(probe.samples.models["face_landmark"]) > 10
