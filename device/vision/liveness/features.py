"""The per-frame liveness measures, one definition for the pipeline and for `faceonly evaluate` (so a
figure measured there is the terminal's own): head pose and steadiness from the mesh, eye openness from the
iris model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from device.config.vision import LivenessConfig
from device.vision.liveness.planarity import mesh_yaw
from device.vision.meshpoints import NOSE_TIP, face_aspect, inter_ocular


@dataclass(frozen=True)
class MeshMotion:
    yaw: float  # degrees, from the mesh
    nose: np.ndarray  # this frame's nose tip: the next frame's `previous_nose`
    steady: bool  # frontal and still enough for the eye contour to mean anything
    aspect: float  # device.vision.meshpoints.face_aspect: a blink must leave it alone


def mesh_motion(mesh_xy: np.ndarray, previous_nose: np.ndarray | None, config: LivenessConfig) -> MeshMotion:
    """Yaw and steadiness: the nose tip's movement since the previous frame, in inter-ocular distances."""
    yaw = mesh_yaw(mesh_xy)
    nose = mesh_xy[NOSE_TIP].copy()
    iod = inter_ocular(mesh_xy)
    motion = 0.0 if previous_nose is None else float(np.linalg.norm(nose - previous_nose)) / max(iod, 1e-6)
    steady = abs(yaw) <= config.steady_max_yaw_deg and motion <= config.steady_max_motion
    return MeshMotion(yaw, nose, steady, face_aspect(mesh_xy))


def eye_openness(iris_model: Any, image: np.ndarray, mesh: Any) -> float:
    """Mean eye aspect ratio of both eyes (device.vision.landmarks.IrisModel on the mesh's eye regions)."""
    right, left = iris_model.run(image, mesh)
    return (right.aspect_ratio + left.aspect_ratio) / 2
