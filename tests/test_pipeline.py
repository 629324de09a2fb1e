from collections import Counter

import numpy as np
import pytest

from device.config.vision import LivenessConfig, VisionConfig
from device.vision.pipeline import NO_CHANNEL, build_pipeline
from device.vision.replay import ReplaySource
from device.vision.sources import iter_frames
from tests.vision_helpers import model_store


class Prompts:
    def __init__(self):
        self.seen = []

    def publish(self, prompt):
        self.seen.append(prompt)


@pytest.fixture(scope="module")
def store():
    return model_store()


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from device.vision.demo import make_demo

    return make_demo(tmp_path_factory.mktemp("demo") / "replay")


def run(pipeline, path):
    source = ReplaySource(path, pace="fast")
    events = []
    with iter_frames(source) as frames:
        for frame in frames:
            events += pipeline.process(frame)
    return events + pipeline.flush()


def test_demo_walk_up_is_one_rejected_event_under_the_challenge(store, demo):
    sink = Prompts()
    events = run(build_pipeline(VisionConfig(liveness=LivenessConfig(seed=5)), store, prompt_sink=sink), demo)
    assert len(events) == 1
    event = events[0]
    assert event.decision == "rejected"
    assert any("no blink" in r or "no head turn" in r or "plane" in r for r in event.reasons)
    assert event.embedding is None and event.face_crop is None
    assert sink.seen[0].state == "prompt" and sink.seen[-1].state == "failed"


def test_without_prompt_channel_it_says_so_and_builds_a_full_observation(store, demo):
    pipeline = build_pipeline(VisionConfig(), store)
    assert pipeline.stats()["liveness"] == NO_CHANNEL
    events = run(pipeline, demo)
    assert len(events) == 1
    event = events[0]
    assert NO_CHANNEL in event.reasons
    assert event.decision == "accepted"
    assert event.embedding.dtype == np.float32
    assert np.linalg.norm(event.embedding) == pytest.approx(1.0, abs=1e-4)
    crop = event.face_crop
    x0, y0, x1, y1 = event.crop_face_box
    assert 0 <= x0 < x1 <= crop.shape[1] and 0 <= y0 < y1 <= crop.shape[0]
    assert crop.shape[0] < 480 and crop.shape[1] < 640  # a crop, never the frame
    assert event.first_seen <= event.best_frame_time <= event.last_seen
    stats = pipeline.stats()
    assert set(stats["latency_ms"]) >= {"detect", "quality", "embed"} and stats["frames"] > 0


def test_multi_face_clip_gives_at_most_one_event_per_track(store, shared_data):
    # Faces far from a 1080p street camera: the full-range detector.
    config = VisionConfig(detector="full_range", liveness=LivenessConfig(seed=1))
    events = run(
        build_pipeline(config, store, prompt_sink=Prompts()),
        shared_data / "video/facenet_pytorch/street_walkers.mp4",
    )
    per_track = Counter(e.track_id for e in events)
    assert per_track and max(per_track.values()) == 1


def test_one_person_clip_gives_exactly_one_event(store, shared_data):
    config = VisionConfig(liveness=LivenessConfig(seed=1))
    events = run(
        build_pipeline(config, store, prompt_sink=Prompts()),
        shared_data / "video/krzysiek354/real_live_headturn.webm",
    )
    assert len(events) == 1
