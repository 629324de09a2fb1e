"""The embedder's chip geometry: least-squares similarity (never a reflection), templates, antialiased cut."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from device.contracts import Detection
from device.vision.align import (
    CHIP_SIZE,
    KEYPOINT_TEMPLATE,
    MESH_TEMPLATE,
    align_face,
    cut_chip,
    similarity_transform,
)


def _similarity(angle_deg: float, scale: float, tx: float, ty: float) -> np.ndarray:
    a = math.radians(angle_deg)
    return np.array(
        [[scale * math.cos(a), -scale * math.sin(a), tx], [scale * math.sin(a), scale * math.cos(a), ty]]
    )


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


@settings(max_examples=200, deadline=None)
@given(
    st.floats(-180, 180),
    st.floats(0.05, 20),
    st.floats(-500, 500),
    st.floats(-500, 500),
)
def test_an_exact_similarity_is_recovered(angle, scale, tx, ty):
    truth = _similarity(angle, scale, tx, ty)
    src = MESH_TEMPLATE * 3.0 + 40.0
    fitted = similarity_transform(src, _apply(truth, src))
    assert np.allclose(fitted, truth, atol=1e-6 * max(1.0, scale, abs(tx), abs(ty)))


def test_mirrored_points_are_not_fitted_by_a_reflection():
    mirrored = MESH_TEMPLATE.copy()
    mirrored[:, 0] = 150 - mirrored[:, 0]
    matrix = similarity_transform(mirrored, MESH_TEMPLATE)
    assert np.linalg.det(matrix[:, :2]) > 0


def test_least_squares_with_noise_beats_any_perturbed_fit():
    rng = np.random.default_rng(0)
    src = MESH_TEMPLATE * 2.0
    dst = _apply(_similarity(12, 0.5, 3, -4), src) + rng.normal(0, 0.7, src.shape)
    best = similarity_transform(src, dst)
    residual = np.sum((_apply(best, src) - dst) ** 2)
    for _ in range(50):
        worse = best + rng.normal(0, 1e-3, best.shape) * np.array([[1, 1, 100], [1, 1, 100]])
        worse[1, 0], worse[1, 1] = -worse[0, 1], worse[0, 0]  # keep it a similarity
        assert np.sum((_apply(worse, src) - dst) ** 2) >= residual - 1e-9


def _checker(size: int, cell: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    board = (((yy // cell) + (xx // cell)) % 2 * 255).astype(np.uint8)
    return cv2.merge([board, board, board])


def test_a_large_face_is_area_averaged_not_aliased():
    """A fine pattern shrunk 8x must come out as its mean grey, as a plain bilinear warp would not."""
    frame = _checker(1600, 2)
    matrix = _similarity(0, 1 / 8, 0, 0)
    chip = cut_chip(frame, matrix)
    assert chip.shape == (CHIP_SIZE, CHIP_SIZE, 3)
    assert abs(float(chip.mean()) - 127.5) < 3 and float(chip.std()) < 8
    plain = cv2.warpAffine(frame, matrix, (CHIP_SIZE, CHIP_SIZE), flags=cv2.INTER_LINEAR)
    # what the shortcut gives: every sample on the same phase of the pattern, or noise
    assert abs(float(plain.mean()) - 127.5) > 60 or float(plain.std()) > 60


def test_the_shrink_path_keeps_the_geometry():
    """A smooth image cut with and without the pre-shrink lands on the same pixels."""
    yy, xx = np.mgrid[0:1200, 0:1200].astype(np.float32)
    smooth = (127 + 100 * np.sin(xx / 90) * np.cos(yy / 70)).astype(np.uint8)
    frame = cv2.merge([smooth, smooth, smooth])
    matrix = _similarity(17, 0.2, -20, 10)
    shrunk = cut_chip(frame, matrix).astype(np.float32)
    direct = cv2.warpAffine(frame, matrix, (CHIP_SIZE, CHIP_SIZE), flags=cv2.INTER_LINEAR).astype(np.float32)
    inside = direct > 0
    assert np.abs(shrunk - direct)[inside].mean() < 2.0


def test_outside_the_frame_is_black():
    frame = np.full((100, 100, 3), 200, np.uint8)
    chip = cut_chip(frame, _similarity(0, 1.0, 60, 60))
    assert chip[0, 0].tolist() == [0, 0, 0] and chip[100, 100].tolist() == [200, 200, 200]


def test_keypoint_fallback_lands_the_eyes_on_the_template():
    keypoints = np.array([[200, 220], [300, 230], [250, 270], [252, 320], [150, 240], [350, 250]], np.float32)
    detection = Detection(np.array([140, 150, 360, 380], np.float32), keypoints, 0.9)
    frame = np.zeros((480, 640, 3), np.uint8)
    for x, y in keypoints[[0, 1, 3]].astype(int):
        cv2.circle(frame, (int(x), int(y)), 3, (255, 255, 255), -1)
    chip = align_face(frame, detection, None)
    assert chip.alignment == "keypoints_3point"
    for tx, ty in KEYPOINT_TEMPLATE:
        patch = chip.image[int(ty) - 3 : int(ty) + 4, int(tx) - 3 : int(tx) + 4]
        assert patch.max() > 128, (tx, ty)


@pytest.mark.parametrize("use_mesh", [True, False])
def test_align_face_says_which_landmarks_it_used(use_mesh):
    frame = np.zeros((300, 300, 3), np.uint8)
    detection = Detection(
        np.array([50, 50, 250, 250], np.float32),
        np.tile(np.float32([150, 150]), (6, 1)) + np.arange(12).reshape(6, 2),
        0.9,
    )
    mesh = np.tile(np.float32([150, 150]), (468, 1)) + np.random.default_rng(1).normal(0, 20, (468, 2))
    chip = align_face(frame, detection, mesh.astype(np.float32) if use_mesh else None)
    assert chip.alignment == ("mesh_5point" if use_mesh else "keypoints_3point")
