"""The peer: `face_recognition` (dlib HOG detection + 128-d ResNet encodings) with its default settings.

Optional extra `bench` (dlib-bin, face-recognition-models; face_recognition itself is installed without
its `dlib` requirement, which would build dlib from source: scripts/setup.sh does that). The peer loads
its own model files from the face_recognition_models package; nothing is downloaded at run time.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

PEERS = ("face_recognition",)


class PeerUnavailable(RuntimeError):
    """The peer library is not installed (the message says how to install it)."""


class FaceRecognitionPeer:
    name = "face_recognition"

    def __init__(self) -> None:
        try:
            import face_recognition
        except ImportError as exc:
            raise PeerUnavailable(
                f"--peer face_recognition needs the bench extra ({exc}): bash scripts/setup.sh --bench"
            ) from None
        self._fr: Any = face_recognition

    def run(self, frame_bgr: np.ndarray) -> tuple[float, int]:
        """(ms, faces encoded) for the peer's whole job on one frame: HOG boxes, then every face's encoding."""
        t0 = time.perf_counter()
        rgb = np.ascontiguousarray(frame_bgr[..., ::-1])
        boxes = self._fr.face_locations(rgb, model="hog")
        encodings = self._fr.face_encodings(rgb, boxes)
        return (time.perf_counter() - t0) * 1000.0, len(encodings)


def load_peer(name: str | None) -> FaceRecognitionPeer | None:
    if name is None:
        return None
    if name != "face_recognition":
        raise PeerUnavailable(f"unknown peer {name!r}; choose one of {', '.join(PEERS)}")
    return FaceRecognitionPeer()
