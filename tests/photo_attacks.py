"""Photo-attack replays for liveness tests: a real still held up to the camera and moved like a print or a
phone would be (pan, zoom, in-plane rotation, 3D tilt of the photo's plane), with per-frame blur, noise and
JPEG compression. Deterministic for a given seed. (The responsive attacker of `faceonly evaluate --pad`,
which tilts the photo on cue, is faceonly_lab.pad.presenter.PhotoPresenter.)
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import cv2
import numpy as np

from faceonly_lab.pad.photo import plane_homography

SIZE = (640, 480)


def photo_attack_frames(
    still_bgr: np.ndarray, seed: int, n: int = 90, fps: float = 15.0
) -> Iterator[np.ndarray]:
    """Frames of `still_bgr` being waved at the camera; the tilt swings up to +-40 deg like a faked head turn."""
    rng = np.random.default_rng(seed)
    h, w = still_bgr.shape[:2]
    background = np.full((SIZE[1], SIZE[0], 3), rng.integers(60, 200, 3), np.uint8)
    phase = rng.uniform(0, 2 * math.pi, 6)
    for i in range(n):
        t = i / fps
        yaw = math.radians(40) * math.sin(1.3 * t + phase[0])
        pitch = math.radians(15) * math.sin(0.9 * t + phase[1])
        roll = math.radians(12) * math.sin(0.7 * t + phase[2])
        centre = (
            SIZE[0] / 2 + 60 * math.sin(0.5 * t + phase[3]),
            SIZE[1] / 2 + 30 * math.sin(0.8 * t + phase[4]),
        )
        height = 330 + 70 * math.sin(0.6 * t + phase[5])
        matrix = plane_homography((w, h), height, centre, yaw, pitch, roll)
        frame = cv2.warpPerspective(
            still_bgr, matrix, SIZE, dst=background.copy(), borderMode=cv2.BORDER_TRANSPARENT
        )
        sigma = rng.uniform(0, 1.5)
        if sigma > 0.3:
            frame = cv2.GaussianBlur(frame, (0, 0), sigma)
        frame = np.clip(frame + rng.normal(0, rng.uniform(0, 6), frame.shape), 0, 255).astype(np.uint8)
        ok, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(50, 95))])
        assert ok
        yield cv2.imdecode(jpeg, cv2.IMREAD_COLOR)
