"""The copy of a face that the privacy stage may turn into a thumbnail.

It is the face box plus a margin, cut from the frame, with every OTHER detected face's box blacked out
before anything else sees the copy (a neighbour pressed against the person at the gate never leaves the
terminal), and the face's own outline: the face mesh's oval, or an ellipse from the detector keypoints when
no mesh is trusted, so that the thumbnail's visible area can be fitted to the face rather than the box.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from device.contracts import Detection

# MediaPipe face mesh FACEMESH_FACE_OVAL, in order around the face (forehead, right side, chin, left side).
FACE_OVAL = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
    152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)  # fmt: skip
# Keypoint ellipse, measured against the mesh oval on frontal faces: half-width = half the tragion
# distance, half-height 1.3x that, centred between the eye line and the mouth, a little above the nose.
KEYPOINT_HEIGHT_RATIO = 1.3
KEYPOINT_CENTRE_FROM_EYES = 0.55  # share of the eye-line-to-mouth distance


@dataclass(frozen=True)
class FaceCrop:
    image: np.ndarray  # BGR uint8 copy of box + margin, other faces black
    face_box: tuple[float, float, float, float]  # the face box inside `image`
    outline: np.ndarray  # (n, 2) float32: the face's outline inside `image`
    origin: tuple[int, int]  # where `image` starts in the frame (x, y)


def keypoint_outline(detection: Detection) -> np.ndarray:
    """An ellipse around the face from BlazeFace's keypoints (eyes, nose, mouth, ear tragions)."""
    kp = np.asarray(detection.keypoints, np.float64)
    eyes_mid = (kp[0] + kp[1]) / 2
    centre = eyes_mid + KEYPOINT_CENTRE_FROM_EYES * (kp[3] - eyes_mid)
    half_width = max(float(np.linalg.norm(kp[5] - kp[4])) / 2, float(np.linalg.norm(kp[1] - kp[0])))
    t = np.linspace(0, 2 * np.pi, 36, endpoint=False)
    a = np.arctan2(*(kp[1] - kp[0])[::-1])
    u, v = half_width * np.cos(t), half_width * KEYPOINT_HEIGHT_RATIO * np.sin(t)
    x = centre[0] + u * np.cos(a) - v * np.sin(a)
    y = centre[1] + u * np.sin(a) + v * np.cos(a)
    return np.stack([x, y], axis=1).astype(np.float32)


def face_outline(detection: Detection, mesh_xy: np.ndarray | None) -> np.ndarray:
    if mesh_xy is not None:
        return np.asarray(mesh_xy, np.float32)[list(FACE_OVAL)].copy()
    return keypoint_outline(detection)


def cut_face_crop(
    image: np.ndarray,
    detection: Detection,
    mesh_xy: np.ndarray | None,
    other_boxes: list[np.ndarray],
    margin: float,
) -> FaceCrop:
    """The face box + margin (clipped to the frame) with other faces' boxes zeroed, and the outline."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = (float(v) for v in detection.box)
    mx, my = (x1 - x0) * margin, (y1 - y0) * margin
    xa, ya = max(0, int(np.floor(x0 - mx))), max(0, int(np.floor(y0 - my)))
    xb, yb = min(w, int(np.ceil(x1 + mx))), min(h, int(np.ceil(y1 + my)))
    crop = image[ya:yb, xa:xb].copy()
    for box in other_boxes:
        # Whole pixels that the other box touches, generously (floor/ceil): none of it may show.
        bx0, by0 = int(np.floor(box[0])) - xa, int(np.floor(box[1])) - ya
        bx1, by1 = int(np.ceil(box[2])) - xa, int(np.ceil(box[3])) - ya
        crop[max(0, by0) : max(0, by1), max(0, bx0) : max(0, bx1)] = 0
    outline = face_outline(detection, mesh_xy) - np.array([xa, ya], np.float32)
    return FaceCrop(crop, (x0 - xa, y0 - ya, x1 - xa, y1 - ya), outline, (xa, ya))
