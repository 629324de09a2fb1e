"""Shared helpers for the vision tests: the real model store (skips when the models are not built yet), and
deepface's real photos of the same people years apart (not LFW: nothing is fitted on them)."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from device.infra.modelstore import ModelError, ModelStore
from tests.conftest import missing_data


def model_store() -> ModelStore:
    try:
        return ModelStore()
    except ModelError as exc:
        missing_data(f"models not built: {exc}")


def deepface_faces(shared_data: Path, detector: Any) -> Iterator[tuple[str, np.ndarray, Any]]:
    """(identity, frame, its central face) of every deepface photo where the detector finds one."""
    from faceonly_lab.lfw import central_face

    folder = shared_data / "verification" / "deepface"
    with (folder / "identities_derived.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        frame = cv2.imread(str(folder / row["file"]))
        face = central_face(detector.detect(frame), frame.shape)
        if face is not None:
            yield row["identity_id"], frame, face
