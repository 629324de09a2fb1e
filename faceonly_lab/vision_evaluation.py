"""Measurements behind `faceonly evaluate`: detection, blinks and replay cues (verification: faceonly_lab.lfw).

Pure functions over file lists and models; the CLI (faceonly_lab/cli/evaluate.py) only parses arguments and prints.
"""

from __future__ import annotations

import csv
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import numpy as np

from device.config.vision import LivenessConfig, VisionConfig
from device.vision.boxes import iou
from device.vision.liveness.blink import BlinkDetector
from device.vision.liveness.cues import replay_cues
from device.vision.liveness.features import eye_openness, mesh_motion
from device.vision.liveness.irisgate import IrisGate
from device.vision.meshpoints import eyelid_opening
from device.vision.quality import face_patch
from device.vision.sources import iter_frames
from device.vision.stills import load_image

Progress = Callable[[str], None]


def _attribute(element: ET.Element, name: str, path: Path) -> str:
    value = element.get(name)
    if value is None:
        raise ValueError(f"{path}: a <{element.tag}> element has no {name!r} attribute")
    return value


def read_imglab(path: Path) -> list[tuple[Path, list[np.ndarray]]]:
    root = ET.parse(path).getroot()
    out = []
    for image in root.iter("image"):
        boxes = []
        for box in image.iter("box"):
            if box.get("ignore") == "1":
                continue
            top, left, width, height = (
                float(_attribute(box, k, path)) for k in ("top", "left", "width", "height")
            )
            boxes.append(np.array([left, top, left + width, top + height]))
        out.append((path.parent / _attribute(image, "file", path), boxes))
    return out


def detection(xml: Path, detector, progress: Progress, min_iou: float = 0.3) -> dict[str, float]:
    """Recall and false faces against imglab boxes (greedy matching; dlib boxes are tighter than BlazeFace's)."""
    items = read_imglab(xml)
    found = total = false = 0
    for i, (path, truth) in enumerate(items):
        progress(f"detection: {i + 1}/{len(items)} images")
        faces = detector.detect(load_image(path))
        used: set[int] = set()
        for face in faces:
            ious = [(iou(face.box, t), k) for k, t in enumerate(truth) if k not in used]
            best = max(ious, default=(0.0, -1))
            if best[0] >= min_iou:
                used.add(best[1])
            else:
                false += 1
        found += len(used)
        total += len(truth)
    return {
        "detection_images": float(len(items)),
        "detection_faces": float(total),
        "detection_recall": found / total if total else float("nan"),
        "detection_false_faces": float(false),
    }


def negatives(folder: Path, detector, progress: Progress) -> dict[str, float]:
    files = sorted(p for p in folder.iterdir() if p.is_file())
    false = 0
    for i, path in enumerate(files):
        progress(f"negatives: {i + 1}/{len(files)} images")
        false += len(detector.detect(load_image(path)))
    return {
        "negatives_images": float(len(files)),
        "negatives_false_faces": float(false),
        "negatives_false_per_20": 20.0 * false / max(len(files), 1),
    }


def eye_openness_series(
    source, detector, mesh_model, iris_model, config: LivenessConfig, blink: BlinkDetector | None = None
):
    """(index, t, openness, steady, face aspect) per frame of a FrameSource, for the largest face.

    With `blink` (the detector the values go to) the iris model runs as the terminal runs it: on the steady
    frames device.vision.liveness.irisgate picks, openness None on the others."""
    prev = None
    gate = IrisGate(config) if blink is not None else None
    with iter_frames(source) as frames:
        for frame in frames:
            faces = detector.detect(frame.image)
            if not faces:
                prev = None
                continue
            face = max(faces, key=lambda d: float((d.box[2] - d.box[0]) * (d.box[3] - d.box[1])))
            mesh = mesh_model.run(frame.image, face)
            moved = mesh_motion(mesh.xy, prev, config)
            prev = moved.nose
            openness = None
            if (
                gate is None
                or blink is None
                or not moved.steady
                or gate.due(frame.monotonic, eyelid_opening(mesh.xy), not blink.ready or blink.dipping)
            ):
                openness = eye_openness(iris_model, frame.image, mesh)
            yield frame.index, frame.timestamp, openness, moved.steady, moved.aspect


def blinks(
    video: Path, events_csv: Path, detector, mesh_model, iris_model, tolerance: int = 3
) -> dict[str, float]:
    from device.vision.replay import ReplaySource

    config = VisionConfig().liveness
    blink = BlinkDetector(config)
    found = []
    iris_runs = frames = 0
    for index, t, openness, steady, aspect in eye_openness_series(
        ReplaySource(video, pace="fast"), detector, mesh_model, iris_model, config, blink
    ):
        frames += 1
        if openness is None:
            continue  # the gate skipped the iris model here, as the terminal does
        iris_runs += 1
        event = blink.update(t, index, openness, steady, aspect)
        if event is not None:
            found.append((event.start_index, event.end_index))
    with open(events_csv, newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("video", video.name) == video.name]
    truth = [(int(r["approx_start_frame"]), int(r["approx_end_frame"])) for r in rows]
    used: set[int] = set()
    hits = 0
    for start, end in truth:
        for k, (fs, fe) in enumerate(found):
            if k not in used and fs <= end + tolerance and fe >= start - tolerance:
                used.add(k)
                hits += 1
                break
    return {
        "blink_annotated": float(len(truth)),
        "blink_detected": float(len(found)),
        "blink_matched": float(hits),
        "blink_extra": float(len(found) - len(used)),
        "blink_iris_share": iris_runs / frames if frames else float("nan"),
    }


def _risk_of_image(image: np.ndarray, detector, sharpness_ref: float) -> float | None:
    faces = detector.detect(image)
    if not faces:
        return None
    face = max(faces, key=lambda d: float((d.box[2] - d.box[0]) * (d.box[3] - d.box[1])))
    patch = face_patch(image, face.box, shrink=0.1)
    return None if patch is None else replay_cues(image, face.box, patch, sharpness_ref).risk


def spoof(
    labels_csv: Path, data_root: Path, detector, progress: Progress, scores_out: dict | None = None
) -> dict[str, float]:
    """APCER per attack type, BPCER and ACER (ISO/IEC 30107-3) of the replay-risk score at the shipped threshold.

    `scores_out`, when given, receives the risk scores per kind ("bona fide" and each attack type) for plots.
    """
    from device.vision.replay import ReplaySource

    config = VisionConfig().liveness
    with open(labels_csv, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    attacks: dict[str, list[bool]] = {}
    bona_fide: list[bool] = []
    no_face = 0
    for i, row in enumerate(rows):
        progress(f"spoof: {i + 1}/{len(rows)} samples")
        path = data_root / row["file"]
        if row["media"] == "video":
            risks = []
            source = ReplaySource(path, pace="fast")
            with iter_frames(source) as frames:
                for frame in frames:
                    risk = _risk_of_image(frame.image, detector, config.sharpness_ref)
                    if risk is not None:
                        risks.append(risk)
            risk = float(np.median(risks)) if risks else None
        else:
            risk = _risk_of_image(load_image(path), detector, config.sharpness_ref)
        if risk is None:
            no_face += 1
            continue
        flagged = risk >= config.replay_risk_threshold
        label = row["label"].strip()
        if label.startswith("real"):
            bona_fide.append(flagged)
            kind = f"bona fide ({row['media']})"
        else:
            kind = f"{row['attack_type'].strip() or label} ({row['media']})"
            attacks.setdefault(kind, []).append(not flagged)
        if scores_out is not None:
            scores_out.setdefault("risks", {}).setdefault(kind, []).append(risk)
            scores_out["threshold"] = config.replay_risk_threshold
    out: dict[str, float] = {"spoof_no_face": float(no_face), "spoof_threshold": config.replay_risk_threshold}
    for kind, accepted in sorted(attacks.items()):
        out[f"apcer[{kind}] n={len(accepted)}"] = float(np.mean(accepted))
    bpcer = float(np.mean(bona_fide)) if bona_fide else float("nan")
    out[f"bpcer n={len(bona_fide)}"] = bpcer
    worst = max((float(np.mean(a)) for a in attacks.values()), default=float("nan"))
    out["acer (max apcer + bpcer) / 2"] = (worst + bpcer) / 2
    return out
