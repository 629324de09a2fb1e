"""Detector, landmarks, iris and embedder on real faces (scikit-image samples; ../shared/data when present)."""

from __future__ import annotations

import csv

import cv2
import numpy as np
import pytest
import skimage.data

from device.modelstore import ModelStore
from device.vision.align import CropSpec, crop_transform
from device.vision.detect import VARIANTS, FaceDetector, box_iou
from device.vision.embed import Embedder, similarity
from device.vision.landmarks import FaceMeshModel, IrisModel, eye_aspect_ratio

# Hand-labelled face region of scikit-image's astronaut (Eileen Collins), 512x512: hairline to chin.
ASTRONAUT_FACE = np.array([175.0, 75.0, 275.0, 180.0])


@pytest.fixture(scope="module")
def store() -> ModelStore:
    return ModelStore()


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return np.ascontiguousarray(skimage.data.astronaut()[..., ::-1])  # RGB -> BGR


@pytest.fixture(scope="module")
def detector(store) -> FaceDetector:
    return FaceDetector(store, "short_range")


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_astronaut_face_found_where_it_is(store, astronaut, variant):
    faces = FaceDetector(store, variant).detect(astronaut)
    assert len(faces) == 1
    face = faces[0]
    assert box_iou(ASTRONAUT_FACE, face.box[None])[0] >= 0.6, face.box
    kp = face.keypoints
    assert kp.shape == (6, 2)
    assert np.all((kp >= face.box[:2] - 10) & (kp <= face.box[2:] + 10))
    assert kp[0, 0] < kp[1, 0]  # subject's right eye is on the image's left
    assert max(kp[0, 1], kp[1, 1]) < kp[3, 1]  # eyes above the mouth
    assert 0.5 <= face.score <= 1.0


def test_detections_sorted_and_no_face_is_empty(detector, astronaut):
    assert detector.detect(np.ascontiguousarray(skimage.data.coffee()[..., ::-1])) == []
    assert detector.detect(np.zeros((240, 320, 3), np.uint8)) == []
    head = astronaut[50:200, 160:290]
    two = np.ascontiguousarray(np.concatenate([head, head[:, ::-1]], axis=1))
    faces = detector.detect(two)
    assert len(faces) == 2
    assert faces[0].score >= faces[1].score


def test_detector_on_non_square_frame_maps_back_to_frame(detector, astronaut):
    padded = cv2.copyMakeBorder(astronaut, 0, 0, 300, 0, cv2.BORDER_CONSTANT)
    faces = detector.detect(padded)
    assert faces and box_iou(ASTRONAUT_FACE + np.array([300.0, 0, 300, 0]), faces[0].box[None])[0] >= 0.6


def test_face_mesh_on_astronaut(store, detector, astronaut):
    face = detector.detect(astronaut)[0]
    mesh = FaceMeshModel(store).run(astronaut, face)
    assert mesh.points.shape == (468, 3)
    assert mesh.presence > 0.8
    centre = mesh.xy.mean(axis=0)
    assert (
        ASTRONAUT_FACE[0] < centre[0] < ASTRONAUT_FACE[2]
        and ASTRONAUT_FACE[1] < centre[1] < ASTRONAUT_FACE[3]
    )
    # mesh eye corners agree with the detector's eye keypoints
    right_eye = mesh.xy[[33, 133]].mean(axis=0)
    assert np.linalg.norm(right_eye - face.keypoints[0]) < 0.15 * (face.box[2] - face.box[0])


def test_roll_correction_levels_the_eyes(detector, astronaut):
    centre = (256.0, 256.0)
    rotation = cv2.getRotationMatrix2D(centre, 25.0, 1.0)
    rotated = cv2.warpAffine(astronaut, rotation, (512, 512))
    face = detector.detect(rotated)[0]
    m = crop_transform(face, CropSpec(correct_roll=True))
    eyes = face.keypoints[:2] @ m[:, :2].T + m[:, 2]
    assert abs(eyes[0, 1] - eyes[1, 1]) < 0.05 * abs(eyes[0, 0] - eyes[1, 0])
    assert eyes[0, 0] < eyes[1, 0]


def _eyes(store, frame):
    face = FaceDetector(store, "short_range").detect(frame)[0]
    mesh = FaceMeshModel(store).run(frame, face)
    return IrisModel(store).run(frame, mesh)


def test_iris_eye_contour_open_vs_closed(store, shared_data):
    folder = shared_data / "blink_stills"
    open_r, open_l = _eyes(store, cv2.imread(str(folder / "if_open_eyes.png")))
    shut_r, shut_l = _eyes(store, cv2.imread(str(folder / "if_close_eyes.jpeg")))
    wink_r, wink_l = _eyes(store, cv2.imread(str(folder / "if_close_open_eyes.jpeg")))
    opened = min(open_r.aspect_ratio, open_l.aspect_ratio)
    assert opened > 0.15
    assert max(shut_r.aspect_ratio, shut_l.aspect_ratio) < 0.5 * opened
    ears = sorted([wink_r.aspect_ratio, wink_l.aspect_ratio])
    assert ears[0] < 0.5 * ears[1]  # one eye shut, one open
    assert open_r.contour.shape == (71, 2) and open_r.iris.shape == (5, 2)
    assert eye_aspect_ratio(open_r.contour) == pytest.approx(open_r.aspect_ratio)


def test_iris_on_astronaut_eyes_open_and_in_place(store, detector, astronaut):
    face = detector.detect(astronaut)[0]
    right, left = IrisModel(store).run(astronaut, FaceMeshModel(store).run(astronaut, face))
    assert right.aspect_ratio > 0.15 and left.aspect_ratio > 0.15
    assert np.linalg.norm(right.iris[0] - face.keypoints[0]) < 0.1 * (face.box[2] - face.box[0])
    assert np.linalg.norm(left.iris[0] - face.keypoints[1]) < 0.1 * (face.box[2] - face.box[0])


def test_embedding_shape_norm_and_determinism(store, detector, astronaut):
    emb = Embedder(store)
    face = detector.detect(astronaut)[0]
    a, b = emb.embed(astronaut, face), emb.embed(astronaut, face)
    assert a.shape == (emb.dim,) and a.dtype == np.float32
    assert abs(float(np.linalg.norm(a)) - 1) < 1e-4
    assert similarity(a, b) == pytest.approx(1.0, abs=1e-5)
    # the same photo, rescaled and shifted, stays far more similar than a different face
    moved = cv2.copyMakeBorder(cv2.resize(astronaut, (400, 400)), 40, 0, 60, 0, cv2.BORDER_REFLECT)
    c = emb.embed(moved, detector.detect(moved)[0])
    assert similarity(a, c) > 0.8


def test_same_person_scores_higher_than_different_people(store, shared_data):
    lfw = shared_data / "verification" / "lfw"
    with (lfw / "pairs_view2_local.csv").open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["fold"] == "1"]
    rows = rows[:15] + [r for r in rows if r["same"] == "0"][:15]
    det, emb = FaceDetector(store, "short_range"), Embedder(store)
    cache: dict[str, np.ndarray] = {}

    def vec(rel: str) -> np.ndarray:
        if rel not in cache:
            frame = cv2.imread(str(lfw / rel))
            cache[rel] = emb.embed(frame, det.detect(frame)[0])
        return cache[rel]

    same = [similarity(vec(r["img1"]), vec(r["img2"])) for r in rows if r["same"] == "1"]
    diff = [similarity(vec(r["img1"]), vec(r["img2"])) for r in rows if r["same"] == "0"]
    assert len(same) >= 10 and len(diff) >= 10
    auc = np.mean([s > d for s in same for d in diff])
    assert auc >= 0.9, (same, diff)
    assert np.median(same) > np.median(diff) + 0.2
