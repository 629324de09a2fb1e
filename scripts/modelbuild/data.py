"""Real face data for calibration and evaluation: ../shared/data when present, scikit-image otherwise.

Nothing is copied into the project; images are read in place.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"
LFW_DIR = SHARED_DATA / "verification" / "lfw"
LFW_PAIRS = LFW_DIR / "pairs_view2_local.csv"


@dataclass(frozen=True)
class Pair:
    fold: int
    img1: str
    img2: str
    same: bool


def have_shared_data() -> bool:
    return LFW_PAIRS.is_file()


def lfw_pairs() -> list[Pair]:
    with LFW_PAIRS.open(newline="") as fh:
        return [Pair(int(r["fold"]), r["img1"], r["img2"], r["same"] == "1") for r in csv.DictReader(fh)]


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


VIDEO_SAMPLES = 10  # frames per development video: more would weight one person's face too heavily
VIDEO_STEP = 25


def extra_development_frames() -> tuple[list[np.ndarray], str]:
    """Non-LFW faces beyond the calibration photos: the blink stills and frames sampled from the videos.

    Used (with the calibration faces) to fit the embedder's mean descriptor; empty without ../shared/data.
    """
    if not have_shared_data():
        return [], ""
    frames = [
        read_bgr(p)
        for p in sorted((SHARED_DATA / "blink_stills").iterdir())
        if p.suffix.lower() in IMAGE_SUFFIXES
    ]
    videos = sorted(p for p in (SHARED_DATA / "video").rglob("*") if p.suffix.lower() in {".mp4", ".webm"})
    for path in videos:
        cap = cv2.VideoCapture(str(path))
        index = 0
        taken = 0
        while taken < VIDEO_SAMPLES:
            ok, frame = cap.read()
            if not ok:
                break
            if index % VIDEO_STEP == 0:
                frames.append(frame)
                taken += 1
            index += 1
        cap.release()
    desc = (
        f"../shared/data blink_stills/ and up to {VIDEO_SAMPLES} frames (every {VIDEO_STEP}th) of each of "
        f"video/ ({len(videos)} videos)"
    )
    return frames, desc


def deepface_identities() -> list[tuple[Path, str]]:
    """(image, identity) of ../shared/data/verification/deepface: the non-LFW development verification set."""
    folder = SHARED_DATA / "verification" / "deepface"
    with (folder / "identities_derived.csv").open(newline="") as fh:
        return [(folder / r["file"], r["identity_id"]) for r in csv.DictReader(fh)]
