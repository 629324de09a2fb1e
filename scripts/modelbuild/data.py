"""Real face data for calibration and evaluation: ../shared/data when present, scikit-image otherwise.

Nothing is copied into the project; images are read in place.
"""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"
LFW_DIR = SHARED_DATA / "verification" / "lfw"
LFW_PAIRS = LFW_DIR / "pairs_view2_local.csv"


def have_shared_data() -> bool:
    return LFW_PAIRS.is_file()


def read_bgr(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise OSError(f"cannot read image {path}")
    return image


CALIB_DIRS = (
    "verification/compreface",
    "verification/deepface",
    "verification/face_recognition",
    "verification/facenet_pytorch",
    "verification/insightface",
    "verification/recognito",
    "detection",
)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


def calibration_frames() -> tuple[list[np.ndarray], str]:
    """Real photos with faces, disjoint from the LFW evaluation set, and a description of the set.

    Every face the float detector finds in them becomes a calibration crop (see build_models.py).
    """
    if have_shared_data():
        paths = sorted(
            p for d in CALIB_DIRS for p in (SHARED_DATA / d).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES
        )
        with (SHARED_DATA / "antispoof" / "labels_derived.csv").open(newline="") as fh:
            paths += sorted(
                SHARED_DATA / r["file"]
                for r in csv.DictReader(fh)
                if r["label"] == "real" and r["media"] == "image"
            )
        frames = []
        for p in paths:
            image = cv2.imread(str(p), cv2.IMREAD_COLOR)  # honours EXIF orientation
            if image is not None:
                frames.append(image)
        desc = (
            "../shared/data " + ", ".join(CALIB_DIRS) + " and the real (bona fide) stills of antispoof/"
            " (every face found; LFW excluded: it is the test set)"
        )
        return frames, desc
    from skimage.data import astronaut, lfw_subset

    faces = lfw_subset()[:100]
    frames = [cv2.cvtColor((f * 255).astype(np.uint8), cv2.COLOR_GRAY2BGR) for f in faces]
    frames = [
        cv2.copyMakeBorder(
            cv2.resize(i, (100, 100), interpolation=cv2.INTER_CUBIC), 50, 50, 50, 50, cv2.BORDER_REPLICATE
        )
        for i in frames
    ]
    frames.append(np.ascontiguousarray(astronaut()[..., ::-1]))
    return frames, "scikit-image lfw_subset (100 faces, 25x25 grayscale, upscaled) + astronaut"
