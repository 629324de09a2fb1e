"""Real parts for the back office tests: the back office over a database of either kind (the `database`
fixture in conftest.py), and real face templates (the shipped embedder on scikit-image's astronaut and her
mirror image)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from device.config import deep_merge
from faceonly_backend.config import load_backend_config
from faceonly_backend.live import LiveView
from faceonly_backend.office import BackOffice
from faceonly_backend.store import Store

CONSENT = "I agree that my face template is used to record my attendance at this site.\n"


def office_config(tmp_path: Path, db: str, **sections: Any):
    """A backend config over `db` with a gallery key and a consent text (gdpr, the default profile)."""
    from device.identity.operator import keygen

    key = tmp_path / "gallery.key"
    if not key.exists():
        keygen(key)
    (tmp_path / "state").mkdir(exist_ok=True)
    text = tmp_path / "consent-v1.txt"
    text.write_text(CONSENT, encoding="utf-8")
    base = {
        "state_dir": str(tmp_path / "state"),
        "store": {"db": db},
        "identity": {"gallery_key_file": str(key)},
        "site": {"consent_text_file": str(text), "consent_version": "v1"},
    }
    return load_backend_config(None, deep_merge(base, sections))


def make_office(tmp_path: Path, db: str, **sections: Any) -> BackOffice:
    cfg = office_config(tmp_path, db, **sections)
    return BackOffice(cfg, Store(cfg.db), None, LiveView(50))


_ENCODED: dict[str, np.ndarray] = {}


def face_template(which: str = "astronaut") -> np.ndarray:
    """A real template: the shipped embedder on scikit-image's astronaut ("astronaut") or on her mirror image
    ("mirror": the same person as the terminal would see her turned around)."""
    if which not in _ENCODED:
        import cv2
        from skimage import data

        from device.config.vision import VisionConfig
        from device.infra.modelstore import ModelStore
        from device.vision.detect import FaceDetector
        from device.vision.embed import Embedder, FaceEncoder
        from device.vision.landmarks import FaceMeshModel

        image = np.ascontiguousarray(data.astronaut()[:, :, ::-1])
        if which == "mirror":
            image = np.ascontiguousarray(cv2.flip(image, 1))
        store, vision = ModelStore(), VisionConfig()
        detector = FaceDetector(store, vision.detector, vision.detector_min_score, vision.nms_iou)
        face = detector.detect(image)[0]
        _ENCODED[which] = FaceEncoder(Embedder(store), FaceMeshModel(store)).encode(image, face).embedding
    return _ENCODED[which]


def photo_folders(root: Path, subjects: dict[str, list[Path]], names: dict[str, str] | None = None) -> Path:
    """One folder per subject with copies of its photos (the layout `subjects add --photos` takes)."""
    import shutil

    for subject, photos in subjects.items():
        folder = root / subject
        folder.mkdir(parents=True, exist_ok=True)
        for n, photo in enumerate(photos, start=1):
            shutil.copy(photo, folder / f"{n}{photo.suffix}")
        if names and subject in names:
            (folder / "display_name.txt").write_text(names[subject] + "\n", encoding="utf-8")
    return root


def astronaut_photo(folder: Path, mirror: bool = False) -> Path:
    import cv2
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    image = data.astronaut()[:, :, ::-1]
    path = folder / ("mirror.png" if mirror else "astronaut.png")
    cv2.imwrite(str(path), cv2.flip(image, 1) if mirror else image)
    return path
