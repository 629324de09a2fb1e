"""What the vision pipeline hands to the privacy stage: one observation per track and pass.

The raw frame is not part of it; `face_crop` is a copy of the face box with a small margin,
which only the privacy stage turns into anything that leaves the terminal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from device.contracts.reasons import Reason


@dataclass(frozen=True)
class ModelRef:
    """Which model made something: its manifest name, file and sha256 (embeddings of two models never compare)."""

    name: str
    file: str
    sha256: str


@dataclass(frozen=True)
class FaceObservation:
    track_id: int
    decision: Literal["accepted", "rejected"]
    first_seen: float  # unix seconds (replays: recorded time)
    last_seen: float
    best_frame_time: float
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in frame pixels
    quality: dict[str, float]
    liveness: dict[str, float]
    reasons: tuple[Reason, ...]  # why rejected, or what liveness checks passed
    embedding: np.ndarray | None = field(default=None, repr=False)  # float32, L2-normalised
    face_crop: np.ndarray | None = field(default=None, repr=False)  # BGR uint8 copy, face box + margin
    crop_face_box: tuple[float, float, float, float] | None = None  # the face box inside face_crop
    # (n, 2) the face's own outline inside face_crop (mesh oval or keypoint ellipse): the thumbnail's shape
    crop_face_outline: np.ndarray | None = field(default=None, repr=False)
    embedding_model: ModelRef | None = None  # the embedder that made `embedding`
    alignment: str | None = (
        None  # which landmarks aligned the embedder's chip (mesh_5point, keypoints_3point)
    )
