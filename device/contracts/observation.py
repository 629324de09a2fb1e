"""What the vision pipeline hands to the privacy stage: one observation per track and pass.

The raw frame is not part of it; `face_crop` is a copy of the face box with a small margin,
which only the privacy stage turns into anything that leaves the terminal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from device.contracts.reasons import Reason


@dataclass(frozen=True)
class ModelRef:
    """Which model made something: its manifest name, file and sha256 (embeddings of two models never compare)."""

    name: str
    file: str
    sha256: str


# What an embedding is: "flip" the normalised sum of the chip's and its mirror image's descriptors (what
# templates are, two embedder invokes), "single" the chip alone (one invoke). They score differently, so each
# is matched off its own threshold curves.
ProbeKind = Literal["single", "flip"]


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
    probe: ProbeKind = "flip"  # what `embedding` is
    # While `probe` is "single": the flip-averaged embedding of the same chip (one more embedder invoke, paid
    # on the first call only). Whoever needs the flip average (a close decision, a template) asks for it.
    mirror: Callable[[], np.ndarray] | None = field(default=None, repr=False, compare=False)

    def with_flip(self) -> FaceObservation:
        """This observation with the flip-averaged embedding (itself when it has it already, or cannot)."""
        if self.probe == "flip" or self.mirror is None or self.embedding is None:
            return self
        return replace(self, embedding=self.mirror(), probe="flip", mirror=None)
