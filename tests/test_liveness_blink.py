import numpy as np

from device.config.vision import LivenessConfig
from device.vision.liveness.blink import BlinkDetector


def feed(values, steady=True, fps=24.0):
    det = BlinkDetector(LivenessConfig())
    out = []
    for i, v in enumerate(values):
        b = det.update(i / fps, i, v, steady if isinstance(steady, bool) else steady[i])
        if b:
            out.append((b.start_index, b.end_index))
    return out


def test_dip_and_quick_reopen_is_one_blink():
    values = [0.25] * 20 + [0.1, 0.05, 0.12, 0.24] + [0.25] * 20
    assert feed(values) == [(20, 23)]


def test_slow_closure_is_not_a_blink():
    values = [0.25] * 20 + [0.08] * 20 + [0.25] * 10
    assert feed(values) == []


def test_dip_on_unsteady_frames_is_ignored():
    values = [0.25] * 20 + [0.1, 0.05, 0.12, 0.24] + [0.25] * 20
    steady = [True] * 20 + [False] * 4 + [True] * 20
    assert feed(values, steady) == []


def test_gradual_drift_is_not_a_blink():
    values = list(np.linspace(0.3, 0.15, 60))  # head pitching down slowly
    assert feed(values) == []


def test_blink_video_matches_annotations(shared_data):
    from device.vision.detect import FaceDetector
    from device.vision.landmarks import FaceMeshModel, IrisModel
    from faceonly_lab.vision_evaluation import blinks
    from tests.vision_helpers import model_store

    store = model_store()
    result = blinks(
        shared_data / "video/blink/repeating_blink_video_v1.mp4",
        shared_data / "video/blink/blink_events_manual.csv",
        FaceDetector(store, min_score=0.6),
        FaceMeshModel(store),
        IrisModel(store),
    )
    assert result["blink_annotated"] == 12
    assert result["blink_matched"] >= 11
    assert result["blink_extra"] == 0  # issue 21: no false blink on the annotated video
