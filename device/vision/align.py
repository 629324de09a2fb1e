"""The embedder's face crop: detector box enlarged x1.4, made square, roll corrected by the eye line.

One similarity transform (rotation about the box centre + uniform scale + shift) maps the frame to the
canonical 224x224 crop; it is cut in one warp, so the frame is read once and nothing else is copied.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from device.vision.types import Detection

RIGHT_EYE, LEFT_EYE = 0, 1  # MediaPipe keypoint order (subject's right eye is on the image's left)


@dataclass(frozen=True)
class CropSpec:
    size: int = 224
    enlarge: float = 1.4
    correct_roll: bool = True
    max_roll_deg: float = 45.0  # beyond this the eye keypoints are not trusted for roll


def crop_transform(detection: Detection, spec: CropSpec = CropSpec()) -> np.ndarray:
    """2x3 affine matrix from frame pixels to crop pixels."""
    box = np.asarray(detection.box, np.float64)
    cx, cy = (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0
    side = spec.enlarge * max(box[2] - box[0], box[3] - box[1])
    angle = 0.0
    if spec.correct_roll:
        kp = np.asarray(detection.keypoints, np.float64)
        dx, dy = kp[LEFT_EYE] - kp[RIGHT_EYE]
        roll = math.degrees(math.atan2(dy, dx))
        if abs(roll) <= spec.max_roll_deg:
            angle = roll
    return square_roi_transform((cx, cy), side, angle, spec.size)


def square_roi_transform(
    centre: tuple[float, float], side: float, angle_deg: float, out_size: int
) -> np.ndarray:
    """2x3 affine: the square of `side` frame pixels centred on `centre`, turned by `angle_deg` (the angle
    of its x axis in image coordinates, y down), onto an out_size x out_size image (upright)."""
    cx, cy = float(centre[0]), float(centre[1])
    matrix = cv2.getRotationMatrix2D((cx, cy), angle_deg, out_size / max(side, 1e-6))
    matrix[:, 2] += (out_size / 2.0 - cx, out_size / 2.0 - cy)
    return matrix


def crop_face(frame_bgr: np.ndarray, detection: Detection, spec: CropSpec = CropSpec()) -> np.ndarray:
    """The size x size BGR uint8 crop (outside-of-frame pixels are black)."""
    matrix = crop_transform(detection, spec)
    return cv2.warpAffine(
        frame_bgr, matrix, (spec.size, spec.size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
    )
