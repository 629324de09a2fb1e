"""Frozen values passed between pipeline stages. Arrays are owned by the value that holds them."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Detection:
    """One face from the detector, in frame pixel coordinates.

    box: (x0, y0, x1, y1). keypoints: (6, 2) in MediaPipe order: right eye, left eye, nose tip,
    mouth centre, right ear tragion, left ear tragion ("right" is the subject's right).
    """

    box: np.ndarray
    keypoints: np.ndarray
    score: float


@dataclass(frozen=True)
class Frame:
    """A captured frame. `image` is BGR uint8 (OpenCV order) and lives only in RAM. `detect_image`: a second,
    smaller image of the same field of view to detect faces on (picamera2's lores stream), when the source
    has one; released with the frame.

    Two capture times: `timestamp` stamps what leaves (wall-clock unix seconds from a camera) and
    `monotonic` measures every duration (track age, decision time limits), so NTP stepping the clock of
    a Pi without RTC neither ends nor prolongs a track. A replay gives its recorded time for both."""

    index: int
    timestamp: float
    monotonic: float
    image: np.ndarray = field(repr=False)
    detect_image: np.ndarray | None = field(default=None, repr=False)
