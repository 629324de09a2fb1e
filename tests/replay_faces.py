"""A replay of many separate face appearances, built from scikit-image's astronaut face.

Each appearance is the real face pasted at a new place in otherwise empty grey frames for a few
frames, followed by empty frames long enough for the tracker to end the track: one track, one event.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

FRAME_W, FRAME_H = 320, 240
FACE_SIDE = 120
FPS = 10.0


def _face() -> np.ndarray:
    from skimage import data

    rgb = data.astronaut()
    crop = rgb[20:230, 130:330]  # head and shoulders of the astronaut
    bgr = cv2.cvtColor(crop, cv2.COLOR_RGB2BGR)
    return cv2.resize(bgr, (FACE_SIDE, int(FACE_SIDE * crop.shape[0] / crop.shape[1])))


def make_replay(
    folder: Path, appearances: int, face_frames: int = 4, gap_s: float = 1.5, places: int = 6
) -> Path:
    """Write `folder` with replay.json: `appearances` tracks; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    face = _face()
    h, w = face.shape[:2]
    empty = np.full((FRAME_H, FRAME_W, 3), 96, np.uint8)
    cv2.imwrite(str(folder / "empty.png"), empty)
    for k in range(places):
        frame = empty.copy()
        x = 10 + (k * 37) % (FRAME_W - w - 20)
        y = max(0, (FRAME_H - h) // 2 + (k % 3 - 1) * 8)
        frame[y : y + h, x : x + w] = face[: FRAME_H - y]
        cv2.imwrite(str(folder / f"face{k}.png"), frame)
    frames, t = [], 0.0
    for i in range(appearances):
        for _ in range(face_frames):
            frames.append({"file": f"face{i % places}.png", "t": round(t, 3)})
            t += 1 / FPS
        frames.append({"file": "empty.png", "t": round(t, 3)})
        t += gap_s
    frames.append({"file": "empty.png", "t": round(t, 3)})
    (folder / "replay.json").write_text(json.dumps({"format": 1, "frames": frames}))
    return folder
