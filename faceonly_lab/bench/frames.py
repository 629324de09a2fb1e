"""Scenes for the steady and scaling passes, built in RAM from one face of the replay itself.

One face region (a square 1.6x the detected box) is cut from the replay's best-quality early frame and
tiled into a grey canvas: 1, 2, 4 or 8 faces at 720p, or the one-face scene resized to 360p and 1080p.
The scenes never leave the process (nothing is written, logged or printed but their sizes).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from device.contracts import Frame
from device.vision.detect import FaceDetector
from device.vision.quality import QualityGate

RESOLUTIONS = {"360p": (640, 360), "720p": (1280, 720), "1080p": (1920, 1080)}
FACE_COUNTS = (1, 2, 4, 8)
TILE_SCALE = 1.6  # the tile is this many face widths: hair, ears and a little background around the face
BACKGROUND = 110  # grey canvas: no structure for the detector or the bezel cue to find
SCAN_FRAMES = 90  # early frames searched for the best face


def face_tile(frames, detector: FaceDetector, gate: QualityGate) -> np.ndarray | None:
    """A copy of the square region around the best-quality face (the gate's score) in the first frames.

    Where the square runs off the frame it is padded with the canvas grey, so the face stays centred.
    """
    best: tuple[float, np.ndarray] | None = None
    for n, image in enumerate(frames):
        if n >= SCAN_FRAMES:
            break
        for det in detector.detect(image):
            q = gate.assess(image, det)
            if not q.ok or (best is not None and q.score <= best[0]):
                continue
            x0, y0, x1, y1 = (float(v) for v in det.box)
            half = int(TILE_SCALE * max(x1 - x0, y1 - y0) / 2)
            cx, cy = int((x0 + x1) / 2), int((y0 + y1) / 2)
            pad = cv2.copyMakeBorder(
                image, half, half, half, half, cv2.BORDER_CONSTANT, value=(BACKGROUND,) * 3
            )
            best = (q.score, pad[cy : cy + 2 * half, cx : cx + 2 * half].copy())
    return None if best is None else best[1]


def grid(n: int) -> tuple[int, int]:
    """(columns, rows) for n faces on a 16:9 canvas: 1x1, 2x1, 2x2, 4x2 (others: a near-square grid)."""
    cols = {1: 1, 2: 2, 4: 2, 8: 4}.get(n, math.ceil(math.sqrt(n)))
    return cols, math.ceil(n / cols)


def tiled_scene(
    tile: np.ndarray | None, faces: int, size: tuple[int, int] = RESOLUTIONS["720p"]
) -> np.ndarray:
    """A BGR canvas of `size` (w, h) holding `faces` copies of `tile`, each centred in its grid cell."""
    w, h = size
    canvas = np.full((h, w, 3), BACKGROUND, np.uint8)
    if tile is None or faces == 0:
        return canvas
    cols, rows = grid(faces)
    cw, ch = w // cols, h // rows
    scale = min(cw / tile.shape[1], ch / tile.shape[0])
    resized = cv2.resize(tile, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    th, tw = resized.shape[:2]
    for i in range(faces):
        c, r = i % cols, i // cols
        x, y = c * cw + (cw - tw) // 2, r * ch + (ch - th) // 2
        canvas[y : y + th, x : x + tw] = resized
    return canvas


def scaled(scene: np.ndarray, resolution: str) -> np.ndarray:
    w, h = RESOLUTIONS[resolution]
    if scene.shape[1] == w and scene.shape[0] == h:
        return scene
    interp = cv2.INTER_AREA if w < scene.shape[1] else cv2.INTER_LINEAR
    return cv2.resize(scene, (w, h), interpolation=interp)


def stream(scene: np.ndarray, count: int, fps: float = 15.0):
    """`count` frames of the same scene at a camera's pace (timestamps only; nothing sleeps)."""
    for i in range(count):
        yield Frame(index=i, timestamp=i / fps, monotonic=i / fps, image=scene)
