"""Camera-relative quality on real faces: a dim but clear webcam face (~40 grey levels, as in the field report)
passes, a face too dark for its landmarks fails with quality.too_dark and the screen gets a hint."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from device.config.vision import LivenessConfig, QualityConfig, VisionConfig
from device.contracts import Frame, Prompt
from device.vision.detect import FaceDetector
from device.vision.landmarks import FaceMeshModel
from device.vision.normalise import exposure_gamma
from device.vision.pipeline import build_pipeline
from device.vision.quality import QualityGate, face_patch
from tests.vision_helpers import model_store


@pytest.fixture(scope="module")
def models():
    store = model_store()
    return store, FaceDetector(store, min_score=0.6), FaceMeshModel(store)


@pytest.fixture(scope="module")
def webcam_frame(shared_data):
    """A frame of the blink video, 640 px wide like an office webcam."""
    from device.vision.replay import ReplaySource
    from device.vision.sources import iter_frames

    with iter_frames(
        ReplaySource(shared_data / "video/blink/repeating_blink_video_v1.mp4", pace="fast")
    ) as frames:
        for frame in frames:
            if frame.index == 20:
                return cv2.resize(frame.image, (360, 640))
    raise AssertionError("clip too short")


def dimmed(image: np.ndarray, face_mean: float, box, noise: float = 2.0) -> np.ndarray:
    """The same scene with less light: the face's mean grey level becomes `face_mean`, plus sensor noise."""
    patch = face_patch(image, box, shrink=0.15)
    assert patch is not None
    scale = face_mean / float(patch.mean())
    rng = np.random.default_rng(0)
    return np.clip(image.astype(np.float32) * scale + rng.normal(0, noise, image.shape), 0, 255).astype(
        np.uint8
    )


def _assess(models, image):
    _, detector, mesh_model = models
    faces = detector.detect(image)
    assert faces, "the detector must still find the face"
    gate = QualityGate(QualityConfig())
    q = gate.assess(image, faces[0])
    return gate.with_mesh(q, mesh_model.run(image, faces[0])) if q.ok else q


def test_a_dim_but_clear_webcam_face_passes_the_gate(models, webcam_frame):
    _, detector, _ = models
    box = detector.detect(webcam_frame)[0].box
    dim = dimmed(webcam_frame, 40.0, box)
    q = _assess(models, dim)
    assert 36 <= q.metrics["brightness"] <= 44
    assert q.ok, q.reasons
    assert q.metrics["gamma"] < 1.0  # it was normalised before judging sharpness and contrast
    assert q.metrics["mesh_presence"] >= QualityConfig().min_mesh_presence
    # The old absolute floors would have refused it (brightness 45).
    assert q.metrics["brightness"] < 45


def test_a_face_too_dark_for_its_landmarks_fails_with_too_dark(models, webcam_frame):
    _, detector, _ = models
    box = detector.detect(webcam_frame)[0].box
    dark = dimmed(webcam_frame, 9.0, box, noise=3.0)
    faces = detector.detect(dark)
    if faces:  # the detector may still see it; the gate must not
        q = QualityGate(QualityConfig()).assess(dark, faces[0])
        assert not q.ok
        assert "quality.too_dark" in [r.code for r in q.reasons]


def test_a_dim_face_the_mesh_cannot_find_is_too_dark_not_just_unusable(models):
    """The mesh stage names darkness: its confidence is low and the face is dim."""
    from device.vision.landmarks import FaceMesh

    gate = QualityGate(QualityConfig())
    flat = np.full((480, 640, 3), 30, np.uint8)
    flat[200:280, 280:360] = np.random.default_rng(1).integers(20, 60, (80, 80, 3))
    from device.contracts import Detection

    det = Detection(
        np.array([260, 180, 380, 300], np.float32),
        np.array([[295, 225], [345, 225], [320, 250], [320, 275], [270, 230], [370, 230]], np.float32),
        0.9,
    )
    q = gate.assess(flat, det)
    mesh = FaceMesh(np.zeros((468, 3), np.float32) + 300, presence=0.05)
    verdict = gate.with_mesh(q, mesh)
    assert not verdict.ok
    assert "quality.too_dark" in [r.code for r in verdict.reasons]
    bright = gate.with_mesh(gate.assess(np.clip(flat.astype(int) * 4, 0, 255).astype(np.uint8), det), mesh)
    assert "quality.no_landmarks" in [r.code for r in bright.reasons]


def test_the_normalising_gamma_leaves_ordinary_faces_alone():
    assert exposure_gamma(128.0) == 1.0 and exposure_gamma(75.0) == 1.0
    assert exposure_gamma(40.0) < 1.0 < exposure_gamma(230.0)
    assert exposure_gamma(float("nan")) == 1.0


class Prompts:
    def __init__(self) -> None:
        self.seen: list[Prompt] = []

    def publish(self, prompt: Prompt) -> None:
        self.seen.append(prompt)

    def listening(self) -> bool:
        return True


def test_the_screen_is_told_why_a_dark_face_cannot_be_used(models, webcam_frame):
    store, detector, _ = models
    box = detector.detect(webcam_frame)[0].box
    dark = dimmed(webcam_frame, 12.0, box, noise=1.0)
    sink = Prompts()
    pipeline = build_pipeline(VisionConfig(liveness=LivenessConfig(seed=0)), store, prompt_sink=sink)
    events = []
    for i in range(20):
        events += pipeline.process(Frame(index=i, timestamp=i / 15, monotonic=i / 15, image=dark.copy()))
    events += pipeline.flush()
    hints = [p for p in sink.seen if p.state == "hint"]
    assert [h.code for h in hints] == ["quality.too_dark"]
    assert hints[0].params == {}  # a code only: the screen words it ("face the light")
    assert [e.decision for e in events] == ["rejected"]
    assert "quality.too_dark" in events[0].reasons[-1] or "too dark" in events[0].reasons[-1]
