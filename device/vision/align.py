"""Geometry of face crops: the embedder's aligned chip and the square ROIs of the landmark models.

The embedder (dlib's ResNet face descriptor) was trained on 150x150 chips made by dlib's 5-point
alignment. `chip_transform` fits a least-squares similarity (rotation, uniform scale, shift; never a
reflection) from face landmarks onto that template, and `cut_chip` cuts the chip in one warp, so the frame
is read once and nothing else is copied. With the face mesh the points are both corners of both eyes and
the sub-nasal point (what dlib's 5-point model finds); without it, BlazeFace's eye and mouth keypoints.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from device.contracts import Detection
from device.vision.meshpoints import LEFT_EYE_CORNERS, RIGHT_EYE_CORNERS, SUBNASAL

CHIP_SIZE = 150
# Face mesh indices: outer/inner corner of the subject's left eye, of the right eye, sub-nasal point.
MESH_ALIGN_POINTS = (*LEFT_EYE_CORNERS[::-1], *RIGHT_EYE_CORNERS, SUBNASAL)
# dlib's 5-point template at padding 0.25 ((0.25 + p) / 1.5 * 150), in MESH_ALIGN_POINTS order.
MESH_TEMPLATE = np.array(
    [[110.957, 46.350], [89.606, 47.897], [37.058, 46.373], [58.409, 47.906], [74.011, 87.780]], np.float64
)
# BlazeFace keypoints 0, 1, 3 (subject's right eye, left eye, mouth centre) on the same chip.
KEYPOINT_ALIGN_POINTS = (0, 1, 3)
KEYPOINT_TEMPLATE = np.array([[47.549, 46.599], [100.476, 46.599], [74.013, 105.766]], np.float64)

Alignment = Literal["mesh_5point", "keypoints_3point"]


@dataclass(frozen=True)
class AlignedChip:
    """A CHIP_SIZE x CHIP_SIZE BGR uint8 chip and which landmarks aligned it."""

    image: np.ndarray
    alignment: Alignment


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2x3 least-squares similarity mapping src points onto dst (Umeyama 1991, reflection excluded)."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    s, d = src - mu_s, dst - mu_d
    u, sigma, vt = np.linalg.svd(d.T @ s / len(src))
    sign = np.diag([1.0, float(np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0)])
    rotation = u @ sign @ vt
    variance = float(np.mean(np.sum(s * s, axis=1)))
    scale = float(np.trace(np.diag(sigma) @ sign)) / max(variance, 1e-12)
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = mu_d - scale * rotation @ mu_s
    return matrix


def chip_transform(points: np.ndarray, template: np.ndarray) -> np.ndarray:
    """Frame pixels -> chip pixels for landmark `points` (n, 2) that correspond to `template` (n, 2)."""
    return similarity_transform(np.asarray(points, np.float64)[:, :2], template)


def mesh_chip_transform(mesh_xy: np.ndarray) -> np.ndarray:
    return chip_transform(np.asarray(mesh_xy)[list(MESH_ALIGN_POINTS)], MESH_TEMPLATE)


def keypoint_chip_transform(detection: Detection) -> np.ndarray:
    return chip_transform(np.asarray(detection.keypoints)[list(KEYPOINT_ALIGN_POINTS)], KEYPOINT_TEMPLATE)


def cut_chip(frame_bgr: np.ndarray, matrix: np.ndarray, size: int = CHIP_SIZE) -> np.ndarray:
    """The size x size chip under `matrix` (outside-of-frame pixels black).

    A face that shrinks by more than 2x is area-averaged down first: a bilinear warp alone would alias
    (it samples 4 of the many frame pixels behind each chip pixel). Only the chip's footprint is resized.
    """
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    if scale >= 0.5:
        return _warp(frame_bgr, matrix, size)
    inverse = cv2.invertAffineTransform(matrix)
    corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], np.float64)
    footprint = corners @ inverse[:, :2].T + inverse[:, 2]
    h, w = frame_bgr.shape[:2]
    x0, y0 = (max(0, int(np.floor(v)) - 1) for v in footprint.min(axis=0))
    x1, y1 = min(w, int(np.ceil(footprint[:, 0].max())) + 1), min(h, int(np.ceil(footprint[:, 1].max())) + 1)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return _warp(frame_bgr, matrix, size)
    region = frame_bgr[y0:y1, x0:x1]
    new_w, new_h = max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale))
    small = cv2.resize(region, (new_w, new_h), interpolation=cv2.INTER_AREA)
    fx, fy = new_w / (x1 - x0), new_h / (y1 - y0)
    # cv2.resize maps pixel centres: frame x = (small x + 0.5) / fx - 0.5 + x0.
    to_frame = np.array([[1 / fx, 0, 0.5 / fx - 0.5 + x0], [0, 1 / fy, 0.5 / fy - 0.5 + y0]])
    combined = matrix[:, :2] @ to_frame[:, :2]
    shift = matrix[:, :2] @ to_frame[:, 2] + matrix[:, 2]
    return _warp(small, np.hstack([combined, shift[:, None]]), size)


def _warp(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    return cv2.warpAffine(
        image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )


def align_face(frame_bgr: np.ndarray, detection: Detection, mesh_xy: np.ndarray | None) -> AlignedChip:
    """The embedder's chip: from the face mesh when there is one, else from the detector keypoints."""
    if mesh_xy is not None:
        return AlignedChip(cut_chip(frame_bgr, mesh_chip_transform(mesh_xy)), "mesh_5point")
    return AlignedChip(cut_chip(frame_bgr, keypoint_chip_transform(detection)), "keypoints_3point")


def square_roi_transform(
    centre: tuple[float, float], side: float, angle_deg: float, out_size: int
) -> np.ndarray:
    """2x3 affine: the square of `side` frame pixels centred on `centre`, turned by `angle_deg` (the angle
    of its x axis in image coordinates, y down), onto an out_size x out_size image (upright)."""
    cx, cy = float(centre[0]), float(centre[1])
    matrix = cv2.getRotationMatrix2D((cx, cy), angle_deg, out_size / max(side, 1e-6))
    matrix[:, 2] += np.array([out_size / 2.0 - cx, out_size / 2.0 - cy])
    return matrix
