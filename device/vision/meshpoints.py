"""Face-mesh landmark indices the terminal relies on (MediaPipe's 468-point mesh), and the eye measures
built on them: one definition for the iris crop, liveness geometry, quality and alignment."""

from __future__ import annotations

import numpy as np

# The subject's right eye is on the image's left in a frontal, unmirrored frame.
RIGHT_EYE_CORNERS = (33, 133)  # outer, inner
LEFT_EYE_CORNERS = (362, 263)  # inner, outer
NOSE_TIP = 1
SUBNASAL = 2


def eye_centres(mesh_xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(subject's right eye, subject's left eye): the midpoints of each eye's corners."""
    right = mesh_xy[list(RIGHT_EYE_CORNERS)].mean(axis=0)
    left = mesh_xy[list(LEFT_EYE_CORNERS)].mean(axis=0)
    return right, left


def inter_ocular(mesh_xy: np.ndarray) -> float:
    right, left = eye_centres(mesh_xy)
    return float(np.linalg.norm(left - right))
