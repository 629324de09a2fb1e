"""Exposure normalisation of a face region: one gamma, fitted to the face, before the models and the gate.

A dim webcam (face mean ~40 of 255) and a bright one hold the same face; the mesh, iris and the gate's
sharpness and contrast should see the same thing. A face whose mean lies inside `BAND` is left as it is (the
landmark and blink figures were measured on such faces); outside it, a gamma moves its mean to `TARGET_DIM`
or `TARGET_BRIGHT`. The gamma is bounded: a face so dark that it needs more is too dark, not normalised.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

BAND = (70.0, 190.0)
TARGET_DIM, TARGET_BRIGHT = 110.0, 150.0
GAMMA_RANGE = (0.2, 3.0)


def exposure_gamma(mean_grey: float) -> float:
    """The gamma that brings a face of this mean grey level into the band (1.0 inside it)."""
    if not math.isfinite(mean_grey) or BAND[0] <= mean_grey <= BAND[1]:
        return 1.0
    mean = float(np.clip(mean_grey, 1.0, 254.0)) / 255.0
    target = (TARGET_DIM if mean_grey < BAND[0] else TARGET_BRIGHT) / 255.0
    return float(np.clip(math.log(target) / math.log(mean), *GAMMA_RANGE))


def gamma_lut(gamma: float) -> np.ndarray:
    return np.clip(255.0 * (np.arange(256) / 255.0) ** gamma + 0.5, 0, 255).astype(np.uint8)


def apply_gamma(image: np.ndarray, gamma: float) -> np.ndarray:
    """`image` (uint8, any channels) through the gamma curve; the same array when gamma is 1."""
    if gamma == 1.0:
        return image
    return cv2.LUT(image, gamma_lut(gamma))


def central_mean(crop_bgr: np.ndarray, share: float = 0.5) -> float:
    """Mean grey level of the central `share` of a square crop (the face inside a landmark ROI)."""
    h, w = crop_bgr.shape[:2]
    dy, dx = int(h * (1 - share) / 2), int(w * (1 - share) / 2)
    centre = crop_bgr[dy : h - dy, dx : w - dx]
    grey = cv2.cvtColor(centre, cv2.COLOR_BGR2GRAY) if centre.ndim == 3 else centre
    return float(grey.mean()) if grey.size else float("nan")
