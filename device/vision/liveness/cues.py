"""Replay-risk cues, as soft scores (0 = looks live, 1 = looks like a replay); cheap, per frame.

A screen or print replay is softer than a live face on the same camera (less high-frequency energy) and a
phone or monitor shows its bezel as long straight edges around the face. Both separate replays within one
scene and camera but their thresholds do not transfer across cameras (../shared/LIVENESS.md): the terminal
scores them relative to its own camera's live baseline once calibrated (device.vision.liveness.calibration);
uncalibrated, the absolute score (`sharpness_ref`) may only step up, never reject.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

CROP = 128
CONTEXT = 2.2  # region around the face searched for bezel edges, in face sizes
MIN_LINE = 0.9  # a bezel edge is at least this long, in face heights


@dataclass(frozen=True)
class CueScores:
    softness: float  # 0..1
    edges: float  # 0..1
    risk: float  # 0..1

    def as_dict(self) -> dict[str, float]:
        return {
            "replay_softness": round(self.softness, 3),
            "replay_edges": round(self.edges, 3),
            "replay_risk": round(self.risk, 3),
        }


def high_frequency_share(grey_face: np.ndarray) -> float:
    """Share of the face's contrast energy above ~1/4 of its scale-normalised band."""
    face = cv2.resize(grey_face, (CROP, CROP), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.GaussianBlur(face, (0, 0), 1.5)
    total = float(np.var(face))
    return float(np.mean((face - low) ** 2) / total) if total > 1e-6 else 0.0


def bezel_edge_length(frame_bgr: np.ndarray, box: np.ndarray) -> float:
    """Longest straight edge near (not on) the face, in face heights."""
    h, w = frame_bgr.shape[:2]
    x0, y0, x1, y1 = (float(v) for v in box)
    fw, fh = x1 - x0, y1 - y0
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    half = CONTEXT * max(fw, fh) / 2
    xa, ya, xb, yb = (
        max(0, int(cx - half)),
        max(0, int(cy - half)),
        min(w, int(cx + half)),
        min(h, int(cy + half)),
    )
    if xb - xa < 16 or yb - ya < 16:
        return 0.0
    region = cv2.cvtColor(frame_bgr[ya:yb, xa:xb], cv2.COLOR_BGR2GRAY)
    scale = 160.0 / max(region.shape)
    region = cv2.resize(region, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    edges = cv2.Canny(region, 60, 160)
    min_len = MIN_LINE * fh * scale
    lines = cv2.HoughLinesP(edges, 1, np.pi / 180, threshold=40, minLineLength=int(min_len), maxLineGap=4)
    if lines is None:
        return 0.0
    # Ignore lines crossing the face itself (hair, glasses, collar lines cross it; a bezel surrounds it).
    fx0, fy0 = (x0 - xa) * scale, (y0 - ya) * scale
    fx1, fy1 = (x1 - xa) * scale, (y1 - ya) * scale
    longest = 0.0
    for xs, ys, xe, ye in lines.reshape(-1, 4):
        mx, my = (xs + xe) / 2, (ys + ye) / 2
        if fx0 <= mx <= fx1 and fy0 <= my <= fy1:
            continue
        longest = max(longest, float(np.hypot(xe - xs, ye - ys)))
    return longest / max(fh * scale, 1e-6)


def edge_cue(frame_bgr: np.ndarray, box: np.ndarray) -> float:
    """0..1: 0 without a bezel-long straight edge near the face, >= 0.5 with one."""
    edges = float(np.clip((bezel_edge_length(frame_bgr, box) - MIN_LINE) / MIN_LINE + 0.5, 0.0, 1.0))
    return edges if edges > 0.5 else 0.0


def softness_absolute(share: float, sharpness_ref: float) -> float:
    return float(np.clip(1.0 - share / sharpness_ref, 0.0, 1.0))


def fuse(softness: float, edges: float) -> CueScores:
    return CueScores(softness, edges, float(max(softness, edges) * 0.6 + min(softness, edges) * 0.4))


def replay_cues(
    frame_bgr: np.ndarray, box: np.ndarray, grey_face: np.ndarray, sharpness_ref: float
) -> CueScores:
    """The shipped absolute (uncalibrated) cues of one frame."""
    return fuse(softness_absolute(high_frequency_share(grey_face), sharpness_ref), edge_cue(frame_bgr, box))
