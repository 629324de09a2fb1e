"""Per-frame model outputs of one clip variant, computed once and reused by every seed and every run.

The evaluation replays the same decoded frames in many orders (each seed schedules its own prompts): the
detector, face mesh and iris model give the same output for the same pixels, so they are memoised by
(source frame index, the model's input geometry) and kept in a compressed .npz next to nothing but other
caches. A cache is named by the clip's content hash, the variant, the models' sha256 and CACHE_VERSION, so a
new model or a new normalisation can never be served stale outputs. Only landmarks and boxes are stored,
never pixels.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np

from device.contracts import Detection
from device.vision.landmarks import NUM_CONTOUR_POINTS, EyeContour, FaceMesh

log = logging.getLogger(__name__)

CACHE_VERSION = 3  # bump when what a model is fed changes (crop, exposure normalisation, detector resize)


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def _geometry_key(*arrays: Any) -> str:
    h = hashlib.blake2b(digest_size=6)
    for a in arrays:
        h.update(np.round(np.asarray(a, np.float64), 2).tobytes())
    return h.hexdigest()


class ModelMemo:
    """Wraps the real detector, mesh and iris models; `frame` names the source frame being processed."""

    def __init__(self, detector: Any, mesh: Any, iris: Any, path: Path | None) -> None:
        self._detector, self._mesh, self._iris = detector, mesh, iris
        self.path = path
        self.frame: int | None = None  # None: a frame made on the fly (a held-up photo), not memoised
        self.hits = self.misses = 0
        self._store: dict[str, np.ndarray] = {}
        self._dirty = False
        if path is not None and path.is_file():
            try:
                with np.load(path) as data:
                    self._store = {k: data[k] for k in data.files}
            except (OSError, ValueError) as exc:
                log.warning("model cache %s unreadable (%s): recomputing", path, exc)

    def _get(self, key: str, compute) -> np.ndarray:
        return compute() if self.frame is None else self.cached(key, compute)

    def cached(self, key: str, compute) -> np.ndarray:
        """`compute()`'s array, kept under `key` for the next run."""
        value = self._store.get(key)
        if value is None:
            self.misses += 1
            value = compute()
            self._store[key] = value
            self._dirty = True
        else:
            self.hits += 1
        return value

    # the three model interfaces the pipeline calls ---------------------------------------------------------
    def detect(self, image: np.ndarray) -> list[Detection]:
        def compute() -> np.ndarray:
            faces = self._detector.detect(image)
            rows = [np.concatenate([d.box.ravel(), d.keypoints.ravel(), [d.score]]) for d in faces]
            return np.array(rows, np.float32).reshape(len(rows), 17)

        rows = self._get(f"d{self.frame}", compute)
        return [Detection(r[:4].copy(), r[4:16].reshape(6, 2).copy(), float(r[16])) for r in rows]

    def run(self, image: np.ndarray, detection: Detection) -> FaceMesh:
        def compute() -> np.ndarray:
            mesh = self._mesh.run(image, detection)
            return np.concatenate([mesh.points.ravel(), [mesh.presence, mesh.gamma]]).astype(np.float32)

        flat = self._get(f"m{self.frame}_{_geometry_key(detection.box, detection.keypoints)}", compute)
        return FaceMesh(flat[:-2].reshape(-1, 3).copy(), float(flat[-2]), float(flat[-1]))

    def iris_run(self, image: np.ndarray, mesh: FaceMesh) -> tuple[EyeContour, EyeContour]:
        def compute() -> np.ndarray:
            eyes = self._iris.run(image, mesh)
            return np.stack([np.concatenate([e.contour.ravel(), e.iris.ravel()]) for e in eyes]).astype(
                np.float32
            )

        rows = self._get(f"i{self.frame}_{_geometry_key(mesh.xy, [mesh.gamma])}", compute)
        n = NUM_CONTOUR_POINTS * 2
        return (
            EyeContour("right", rows[0, :n].reshape(-1, 2), rows[0, n:].reshape(-1, 2)),
            EyeContour("left", rows[1, :n].reshape(-1, 2), rows[1, n:].reshape(-1, 2)),
        )

    @property
    def mesh_model(self) -> MeshFace:
        return MeshFace(self)

    @property
    def iris_model(self) -> IrisFace:
        return IrisFace(self)

    def save(self) -> None:
        if self.path is None or not self._dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, **self._store)  # type: ignore[arg-type]  # numpy's stub types **kwds as bool
        tmp.replace(self.path)
        self._dirty = False


class MeshFace:
    """The memo seen as a FaceMeshModel (`run(image, detection)`)."""

    def __init__(self, memo: ModelMemo) -> None:
        self._memo = memo

    def run(self, image: np.ndarray, detection: Detection) -> FaceMesh:
        return self._memo.run(image, detection)


class IrisFace:
    """The memo seen as an IrisModel (`run(image, mesh)`)."""

    def __init__(self, memo: ModelMemo) -> None:
        self._memo = memo

    def run(self, image: np.ndarray, mesh: FaceMesh) -> tuple[EyeContour, EyeContour]:
        return self._memo.iris_run(image, mesh)


def cache_path(folder: Path | None, clip_digest: str, variant: str, models_digest: str) -> Path | None:
    if folder is None:
        return None
    return folder / f"{clip_digest}-{variant}-{models_digest}-v{CACHE_VERSION}.npz"
