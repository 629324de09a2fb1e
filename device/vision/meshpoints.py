"""Face-mesh landmark indices the terminal relies on (MediaPipe's 468-point mesh), and the eye measures
built on them: one definition for the iris crop, liveness geometry, quality and alignment."""

from __future__ import annotations

import numpy as np

# The subject's right eye is on the image's left in a frontal, unmirrored frame.
RIGHT_EYE_CORNERS = (33, 133)  # outer, inner
LEFT_EYE_CORNERS = (362, 263)  # inner, outer
NOSE_TIP = 1
SUBNASAL = 2


# Upper and lower eyelid points facing each other (outer to inner), per eye: the mesh's own eye opening.
RIGHT_EYELIDS = ((160, 144), (159, 145), (158, 153))
LEFT_EYELIDS = ((385, 380), (386, 374), (387, 373))


def eyelid_opening(mesh_xy: np.ndarray) -> float:
    """Mean eyelid gap over eye width, both eyes: the mesh's (coarse) eye opening. It moves far less than
    the iris model's contour in a blink, so it only says when that model is worth running."""
    total = 0.0
    for lids, corners in ((RIGHT_EYELIDS, RIGHT_EYE_CORNERS), (LEFT_EYELIDS, LEFT_EYE_CORNERS)):
        upper, lower = mesh_xy[[u for u, _ in lids]], mesh_xy[[lo for _, lo in lids]]
        gap = float(np.linalg.norm(upper - lower, axis=1).mean())
        total += gap / max(float(np.linalg.norm(mesh_xy[corners[0]] - mesh_xy[corners[1]])), 1e-6)
    return total / 2


def eye_centres(mesh_xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(subject's right eye, subject's left eye): the midpoints of each eye's corners."""
    right = mesh_xy[list(RIGHT_EYE_CORNERS)].mean(axis=0)
    left = mesh_xy[list(LEFT_EYE_CORNERS)].mean(axis=0)
    return right, left


def inter_ocular(mesh_xy: np.ndarray) -> float:
    right, left = eye_centres(mesh_xy)
    return float(np.linalg.norm(left - right))


# The face guide on the door screen (device/screen): the face outline (MediaPipe's face oval, 36 points), the
# brows, eye corners, nose tip and mouth. Enough to see the face's place, size and turn; no texture.
FACE_OVAL = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
    152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)  # fmt: skip
GUIDE_POINTS = (*FACE_OVAL, 70, 105, 300, 334, 33, 133, 362, 263, 1, 61, 291, 13, 14)


LIPS_CENTRE = (13, 14)  # inner upper and lower lip, middle


def face_aspect(mesh_xy: np.ndarray) -> float:
    """Eye line to lips over the inter-ocular distance: a blink leaves it alone (a few %), a photo pitched
    towards or away from the camera shrinks it with the eyes (cos of the pitch)."""
    right, left = eye_centres(mesh_xy)
    lips = mesh_xy[list(LIPS_CENTRE)].mean(axis=0)
    return float(np.linalg.norm(lips - (right + left) / 2)) / max(inter_ocular(mesh_xy), 1e-6)
