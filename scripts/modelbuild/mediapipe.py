"""Calibration inputs and float-vs-quantized agreement for the MediaPipe models (detector, mesh, iris)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from device.contracts import Detection
from device.vision.detect import VARIANTS, FaceDetector, letterbox
from device.vision.landmarks import (
    LEFT_EYE_CORNERS,
    RIGHT_EYE_CORNERS,
    FaceMeshModel,
    IrisModel,
    _crop,
    _rgb01,
    square_roi_transform,
)

from .evaluate import interpreter


def detector(path: Path, variant: str) -> FaceDetector:
    return FaceDetector(None, variant, interpreter=interpreter(path))


def detector_inputs(frames: list[np.ndarray], variant: str) -> np.ndarray:
    size = VARIANTS[variant].input_size
    return np.stack([letterbox(f, size)[0].astype(np.float32) / 127.5 - 1.0 for f in frames])


def faces(frames: list[np.ndarray], det: FaceDetector, min_side: float = 40) -> list[tuple[int, Detection]]:
    out = []
    for i, frame in enumerate(frames):
        for d in det.detect(frame):
            if min(d.box[2] - d.box[0], d.box[3] - d.box[1]) >= min_side:
                out.append((i, d))
    return out


def mesh_inputs(frames, found, mesh: FaceMeshModel) -> np.ndarray:
    return np.concatenate([_rgb01(_crop(frames[i], mesh.roi_transform(d), mesh.size)) for i, d in found])


def iris_inputs(frames, found, mesh: FaceMeshModel, iris: IrisModel) -> np.ndarray:
    out = []
    for i, d in found:
        xy = mesh.run(frames[i], d).xy
        for (a, b), mirror in ((RIGHT_EYE_CORNERS, False), (LEFT_EYE_CORNERS, True)):
            p0, p1 = xy[a].astype(np.float64), xy[b].astype(np.float64)
            m = square_roi_transform(
                tuple((p0 + p1) / 2),
                2.3 * float(np.linalg.norm(p1 - p0)),
                float(np.degrees(np.arctan2(*(p1 - p0)[::-1]))),
                iris.size,
            )
            out.append(_rgb01(_crop(frames[i], m, iris.size), mirror))
    return np.concatenate(out)


def mesh_agreement(frames, found, float_path: Path, quant_path: Path) -> dict:
    """Mean/p95 point distance quantized vs float, in pixels and as a fraction of inter-ocular distance."""
    fm = FaceMeshModel(None, interpreter=interpreter(float_path))
    qm = FaceMeshModel(None, interpreter=interpreter(quant_path))
    px, rel = [], []
    for i, d in found:
        a, b = fm.run(frames[i], d), qm.run(frames[i], d)
        dist = np.linalg.norm(a.xy - b.xy, axis=1)
        iod = float(np.linalg.norm(a.xy[33] - a.xy[263]))
        px.append(dist.mean())
        rel.append(dist.mean() / max(iod, 1e-6))
    return {
        "faces": len(found),
        "mean_point_error_px": round(float(np.mean(px)), 3),
        "mean_point_error_interocular": round(float(np.mean(rel)), 4),
        "p95_point_error_interocular": round(float(np.percentile(rel, 95)), 4),
    }


def iris_agreement(frames, found, mesh_path: Path, float_path: Path, quant_path: Path) -> dict:
    """Eye aspect ratio (blink signal) quantized vs float, over both eyes of every face."""
    mesh = FaceMeshModel(None, interpreter=interpreter(mesh_path))
    fi = IrisModel(None, interpreter=interpreter(float_path))
    qi = IrisModel(None, interpreter=interpreter(quant_path))
    ear_f, ear_q, px = [], [], []
    for i, d in found:
        m = mesh.run(frames[i], d)
        for a, b in zip(fi.run(frames[i], m), qi.run(frames[i], m), strict=True):
            ear_f.append(a.aspect_ratio)
            ear_q.append(b.aspect_ratio)
            px.append(float(np.linalg.norm(a.contour[:16] - b.contour[:16], axis=1).mean()))
    ear_f, ear_q = np.array(ear_f), np.array(ear_q)
    return {
        "eyes": len(ear_f),
        "ear_abs_diff_mean": round(float(np.mean(np.abs(ear_f - ear_q))), 4),
        "ear_abs_diff_max": round(float(np.max(np.abs(ear_f - ear_q))), 4),
        "ear_float_mean": round(float(ear_f.mean()), 4),
        "eyelid_point_error_px_mean": round(float(np.mean(px)), 3),
    }


def blink_still_ears(mp_paths: dict[str, Path], blink_frames: dict[str, np.ndarray]) -> dict:
    """Per blink still: EAR (right, left) with the given detector/mesh/iris files (open vs closed check)."""
    det = detector(mp_paths["detector"], "short_range")
    mesh = FaceMeshModel(None, interpreter=interpreter(mp_paths["mesh"]))
    iris = IrisModel(None, interpreter=interpreter(mp_paths["iris"]))
    out = {}
    for name, frame in blink_frames.items():
        found = det.detect(frame)
        if not found:
            out[name] = None
            continue
        r, lft = iris.run(frame, mesh.run(frame, found[0]))
        out[name] = [round(r.aspect_ratio, 3), round(lft.aspect_ratio, 3)]
    return out
