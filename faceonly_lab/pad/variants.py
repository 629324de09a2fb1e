"""Robustness variants of a bona fide clip: what another camera or light would have made of the same person.

Deterministic per (variant, frame index): the noise of frame 17 is the same in every run, so per-frame model
outputs can be cached and every seed sees the same pixels.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from device.vision.normalise import gamma_lut

Variant = Callable[[np.ndarray, int], np.ndarray]


def _scale(factor: float) -> Variant:
    lut = np.clip(np.arange(256) * factor + 0.5, 0, 255).astype(np.uint8)
    return lambda image, _index: cv2.LUT(image, lut)


def _gamma(gamma: float) -> Variant:
    lut = gamma_lut(gamma)
    return lambda image, _index: cv2.LUT(image, lut)


def _blur(image: np.ndarray, _index: int) -> np.ndarray:
    return cv2.GaussianBlur(image, (0, 0), 1.5)


def _noise(image: np.ndarray, index: int) -> np.ndarray:
    rng = np.random.default_rng(10_007 + index)
    return np.clip(image + rng.normal(0.0, 8.0, image.shape), 0, 255).astype(np.uint8)


VARIANTS: dict[str, Variant | None] = {
    "original": None,
    "brightness_x0.6": _scale(0.6),
    "brightness_x1.4": _scale(1.4),
    "gamma_0.7": _gamma(0.7),
    "gamma_1.4": _gamma(1.4),
    "blur_sigma1.5": _blur,
    "noise_sigma8": _noise,
    "half_fps": None,  # every other frame (see `frame_step`)
}


def frame_step(variant: str) -> int:
    return 2 if variant == "half_fps" else 1


def pixels_variant(variant: str) -> str:
    """The variant whose pixels (and cached model outputs) this one uses: half_fps reuses the original's."""
    return "original" if variant == "half_fps" else variant


def apply(variant: str, image: np.ndarray, index: int) -> np.ndarray:
    fn = VARIANTS[variant]
    return image if fn is None else fn(image, index)
