"""The geometry of a photo held up to a camera: the homography of its plane turned by yaw/pitch/roll."""

from __future__ import annotations

import math

import cv2
import numpy as np

FOCAL_PX = 700.0


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    cy, sy = math.cos(yaw), math.sin(yaw)
    cp, sp = math.cos(pitch), math.sin(pitch)
    cr, sr = math.cos(roll), math.sin(roll)
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return rz @ rx @ ry


def plane_homography(
    photo_wh: tuple[int, int],
    height_px: float,
    centre: tuple[float, float],
    yaw: float,
    pitch: float,
    roll: float,
) -> np.ndarray:
    """Homography photo -> canvas for the photo's plane turned by yaw/pitch/roll (radians) in front of a camera."""
    w, h = photo_wh
    depth = FOCAL_PX * h / height_px  # so that the untilted photo appears `height_px` tall
    corners = np.array(
        [[-w / 2, -h / 2, 0], [w / 2, -h / 2, 0], [w / 2, h / 2, 0], [-w / 2, h / 2, 0]], np.float64
    )
    world = corners @ _rotation(yaw, pitch, roll).T + np.array([0, 0, depth])
    image = FOCAL_PX * world[:, :2] / world[:, 2:3] + np.array(centre)
    src = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
    return cv2.getPerspectiveTransform(src, image.astype(np.float32))
