import numpy as np
import pytest

from device.config.vision import QualityConfig
from device.contracts import Detection
from device.vision.quality import QualityGate, keypoint_pose
from device.vision.stills import load_image


def frontal(cx=320.0, cy=240.0, iod=60.0, nose_dx=0.0):
    kp = np.array(
        [
            [cx - iod / 2, cy],
            [cx + iod / 2, cy],
            [cx + nose_dx, cy + 0.52 * 70],
            [cx, cy + 70],
            [cx - iod * 1.2, cy + 10],
            [cx + iod * 1.2, cy + 10],
        ],
        np.float32,
    )
    box = np.array([cx - 1.1 * iod, cy - 0.8 * iod, cx + 1.1 * iod, cy + 1.6 * iod], np.float32)
    return Detection(box, kp, 0.95)


def test_pose_from_keypoints_signs():
    assert abs(keypoint_pose(frontal().keypoints).yaw) < 1
    assert keypoint_pose(frontal(nose_dx=15).keypoints).yaw > 20  # towards the image's right
    assert keypoint_pose(frontal(nose_dx=-15).keypoints).yaw < -20
    d = frontal()
    angle = np.radians(20)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    assert keypoint_pose(d.keypoints @ rot.T).roll == pytest.approx(20, abs=0.5)


@pytest.fixture(scope="module")
def textured():
    rng = np.random.default_rng(0)
    return np.clip(rng.normal(128, 40, (480, 640, 3)), 0, 255).astype(np.uint8)


def test_good_face_passes_with_metrics(textured):
    q = QualityGate(QualityConfig()).assess(textured, frontal())
    assert q.ok, q.reasons
    assert set(q.metrics) >= {"face_px", "yaw", "pitch", "roll", "sharpness", "brightness", "clipped"}


def test_each_rejection_has_its_reason(textured):
    gate = QualityGate(QualityConfig(min_face_px=200))
    assert any("too small" in r for r in gate.assess(textured, frontal()).reasons)
    gate = QualityGate(QualityConfig())
    assert any("yaw" in r for r in gate.assess(textured, frontal(nose_dx=25)).reasons)
    dark = (textured // 8).astype(np.uint8)
    assert any("dark" in r for r in gate.assess(dark, frontal()).reasons)
    blurred = np.full_like(textured, 128)
    assert any("blurred" in r for r in gate.assess(blurred, frontal()).reasons)
    assert any("edge" in r for r in gate.assess(textured, frontal(cx=620)).reasons)


def test_lfw_faces_mostly_pass_the_default_gate(shared_data):
    from device.vision.detect import FaceDetector
    from tests.vision_helpers import model_store

    detector = FaceDetector(model_store(), min_score=0.6)
    gate = QualityGate(QualityConfig(min_face_px=60))
    files = sorted((shared_data / "verification/lfw/lfw-deepfunneled").glob("A*/*_0001.jpg"))[:60]
    ok = 0
    for path in files:
        image = load_image(path)
        faces = detector.detect(image)
        ok += bool(faces) and gate.assess(image, faces[0]).ok
    assert ok / len(files) >= 0.6
