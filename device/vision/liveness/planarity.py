"""Is the head 3D? A flat photo moves as one plane: one homography maps its rigid landmarks between any two
frames. A real head turning shows parallax (nose against cheeks) that a homography cannot explain.

The residual is the RMS reprojection error of a least-squares homography fitted on rigid face-mesh points
(no lips, eyelids or jaw), divided by the inter-ocular distance. Only frame pairs with enough yaw between
them count: a static real face looks flat too.
"""

from __future__ import annotations

import cv2
import numpy as np

from device.vision.meshpoints import NOSE_TIP, eye_centres, inter_ocular

# Face-mesh points that do not move with expression: forehead, temples, nose bridge and tip, eye corners,
# cheekbones.
RIGID = (
    10,
    151,
    9,
    8,
    168,
    6,
    197,
    195,
    5,
    4,
    1,
    19,
    94,
    33,
    133,
    362,
    263,
    130,
    359,
    234,
    454,
    93,
    323,
    127,
    356,
    116,
    345,
    50,
    280,
    123,
    352,
    117,
    346,
    21,
    251,
    54,
    284,
    103,
    332,
    67,
    297,
    109,
    338,
)
NOSE_DEPTH = 0.48  # nose tip in front of the eyes, in inter-ocular distances (see quality.keypoint_pose)


def mesh_yaw(mesh_xy: np.ndarray) -> float:
    """Degrees; positive = face turned towards the image's right (the subject's left), as quality.keypoint_pose."""
    right, left = eye_centres(mesh_xy)
    axis = left - right
    iod = max(float(np.linalg.norm(axis)), 1e-6)
    along = float(np.dot(mesh_xy[NOSE_TIP] - (left + right) / 2, axis / iod))
    return float(np.degrees(np.arctan(along / (NOSE_DEPTH * iod))))


def homography_residual(points_a: np.ndarray, points_b: np.ndarray, iod: float) -> float:
    """RMS error of the best homography a -> b over the rigid points, in inter-ocular distances; nan when
    it cannot be measured (non-finite input, no homography fits)."""
    a = np.asarray(points_a, np.float64)[list(RIGID)]
    b = np.asarray(points_b, np.float64)[list(RIGID)]
    if not (np.isfinite(a).all() and np.isfinite(b).all() and np.isfinite(iod)):
        return float("nan")
    matrix, _ = cv2.findHomography(a, b, 0)
    if matrix is None:
        # Degenerate points (collapsed, collinear): nothing was measured. Not "infinitely 3D": nan.
        return float("nan")
    projected = cv2.perspectiveTransform(a[None], matrix)[0]
    rms = float(np.sqrt(np.mean(np.sum((projected - b) ** 2, axis=1))))
    return rms / max(iod, 1e-6)


def planarity_pairs(yaws: list[float], max_pairs: int, min_deg: float) -> list[tuple[int, int]]:
    """Frame pairs (i, j), i < j, at least `min_deg` apart in yaw; the widest first, spread over the sequence."""
    pairs = [
        (i, j) for i in range(len(yaws)) for j in range(i + 1, len(yaws)) if abs(yaws[j] - yaws[i]) >= min_deg
    ]
    pairs.sort(key=lambda p: -abs(yaws[p[1]] - yaws[p[0]]))
    if len(pairs) <= max_pairs:
        return pairs
    step = len(pairs) / max_pairs
    return [pairs[int(k * step)] for k in range(max_pairs)]


def planarity_score(
    meshes: list[np.ndarray], yaws: list[float], min_deg: float, max_pairs: int = 24
) -> tuple[float, int]:
    """(median residual over measurable pairs, number of them); (nan, 0) when the head never rotated
    enough or no pair could be measured. Unmeasurable pairs are left out, so they can never count as 3D."""
    residuals = []
    for i, j in planarity_pairs(yaws, max_pairs, min_deg):
        iod = (inter_ocular(meshes[i]) + inter_ocular(meshes[j])) / 2
        residual = homography_residual(meshes[i], meshes[j], iod)
        if np.isfinite(residual):
            residuals.append(residual)
    if not residuals:
        return float("nan"), 0
    return float(np.median(residuals)), len(residuals)
