"""Templates from enrolment photos, made exactly as the terminal makes them (detector, quality gate, mesh,
5-point chip, int8 embedder with flip averaging: device.vision.embed.FaceEncoder).

One folder per subject (the folder name is the subject id; an optional `display_name.txt` inside gives the
name shown at the gate). A photo is refused, and named in the report with why, when it has no face, more
than one face, or a face the terminal's quality gate would reject; a subject without a usable photo is left
out and said so. A subject whose good photos do not link as one person (device.identity.enrolcheck) is
refused whole (`several_people`, naming the groups of photos). Nothing about a photo but its file name and the
reasons reaches the report. A subject's good photos become one mean template (up to MAX_AVERAGED photos per mean; device.identity.templates), or each
its own template with mode "each".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from device.contracts import ModelRef
from device.identity.enrolcheck import SAME_PERSON_FAR, person_groups, same_person_threshold
from device.identity.gallery import ID_PATTERN, MAX_TEMPLATES_PER_SUBJECT, Subject, check_subject
from device.identity.templates import TemplateMode, make_templates
from device.identity.thresholds import CurveSet
from device.vision.stills import ImageError, load_image

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})


@dataclass(frozen=True)
class PhotoResult:
    subject: str
    file: str
    status: str  # ok | no_face | two_faces | poor_quality | unreadable | too_many | several_people
    reasons: tuple[str, ...] = ()


def subject_folders(photos: Path) -> list[str]:
    """The subject ids a photo folder names (one folder each)."""
    if not photos.is_dir():
        raise ValueError(f"{photos} is not a folder of subject folders")
    return sorted(p.name for p in photos.iterdir() if p.is_dir())


def _photo_template(
    path: Path, detector, quality_gate, encoder
) -> tuple[np.ndarray | None, str, tuple[str, ...]]:
    try:
        image = load_image(path)
    except (ImageError, OSError) as exc:
        return None, "unreadable", (str(exc),)
    faces = detector.detect(image)
    if not faces:
        return None, "no_face", ()
    if len(faces) > 1:
        return None, "two_faces", (f"{len(faces)} faces found",)
    quality = quality_gate.assess(image, faces[0])
    if not quality.ok:
        return None, "poor_quality", tuple(quality.reasons)
    return encoder.encode(image, faces[0]).embedding, "ok", ()


def build_subjects(
    photos: Path,
    detector,
    quality_gate,
    encoder,
    mode: TemplateMode = "mean",
    same_person: float | None = None,
    refused: Mapping[str, str] | None = None,
) -> tuple[list[Subject], list[PhotoResult]]:
    """(subjects with at least one usable photo, one result per photo and per refused folder);
    `same_person`: the 1:1 threshold a subject's photos must link at (None: not checked); `refused`: subject
    -> status, folders whose photos are not even read (no consent on record, say)."""
    if not photos.is_dir():
        raise ValueError(f"{photos} is not a folder of subject folders")
    subjects, report = [], []
    for folder in sorted(p for p in photos.iterdir() if p.is_dir()):
        sid = folder.name
        if not ID_PATTERN.match(sid):
            report.append(PhotoResult(sid, "", "bad_subject_id", (f"must match {ID_PATTERN.pattern}",)))
            continue
        if refused and sid in refused:
            report.append(PhotoResult(sid, "", refused[sid]))
            continue
        name_file = folder / "display_name.txt"
        display = name_file.read_text(encoding="utf-8").strip() or None if name_file.exists() else None
        templates: list[np.ndarray] = []
        names: list[str] = []
        for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            if len(templates) >= MAX_TEMPLATES_PER_SUBJECT:
                report.append(
                    PhotoResult(sid, path.name, "too_many", (f"at most {MAX_TEMPLATES_PER_SUBJECT}",))
                )
                continue
            emb, status, reasons = _photo_template(path, detector, quality_gate, encoder)
            report.append(PhotoResult(sid, path.name, status, reasons))
            if emb is not None:
                templates.append(emb)
                names.append(path.name)
        groups = person_groups(np.stack(templates), same_person) if same_person and len(templates) > 1 else []
        if len(groups) > 1:
            parts = "; ".join(", ".join(names[i] for i in g) for g in groups)
            report.append(
                PhotoResult(
                    sid, "", "several_people", (f"the photos fall into {len(groups)} people: {parts}",)
                )
            )
        elif templates:
            rows, averaged = make_templates(np.stack(templates), mode)
            subjects.append(check_subject(sid, display, rows, averaged))
        else:
            report.append(PhotoResult(sid, "", "no_usable_photo"))
    return subjects, report


def subjects_from_photos(
    photos: Path,
    models_dir: Path | None,
    mode: TemplateMode = "mean",
    same_person_far: float = SAME_PERSON_FAR,
    refused: Mapping[str, str] | None = None,
) -> tuple[list[Subject], list[PhotoResult], ModelRef]:
    """build_subjects with the terminal's own detector, quality gate, mesh and embedder from `models_dir`
    (verified against its manifest), a subject's photos linking as one person at `same_person_far`, the
    folders in `refused` left unread; also the embedder the templates were made with."""
    from device.config.vision import VisionConfig
    from device.infra.modelstore import ModelStore
    from device.vision.detect import FaceDetector
    from device.vision.embed import Embedder, FaceEncoder
    from device.vision.landmarks import FaceMeshModel
    from device.vision.quality import QualityGate

    store, vision = ModelStore(models_dir), VisionConfig()
    detector = FaceDetector(store, vision.detector, vision.detector_min_score, vision.nms_iou)
    encoder = FaceEncoder(Embedder(store), FaceMeshModel(store))
    entry = store.entry("embedder")
    threshold = same_person_threshold(CurveSet.from_manifest(entry.info), same_person_far)
    gate = QualityGate(vision.quality)
    subjects, report = build_subjects(photos, detector, gate, encoder, mode, threshold, refused)
    return subjects, report, ModelRef("embedder", entry.file, entry.sha256)
