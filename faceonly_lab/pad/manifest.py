"""The PAD manifest: which clips and stills to present, as what (ISO/IEC 30107-3: bona fide or an attack
type), from which camera, and where in each clip the person performs which motion.

CSV (or TSV) with a header; columns (only `path` and `label` are required):
  path     file, relative to the manifest's folder unless --data-root is given
  label    bona_fide | print_photo | screen_replay | video_replay_motion | not_a_presentation
  camera   the capture device (cue calibration and BPCER are per camera); default: the file's folder
  person   who is shown (tries per person); default: the file name
  split    tune | test: clips whose timing set the onset window are `tune` (their figures are reported apart)
  motions  annotated motions in the clip, frame ranges onset-end: "turn_left@36-48 blink@6-8 ..."
           (turn_left = towards the subject's left); a still has none. Without the column, or with
           `auto`, a video's motions are proposed from its own traces (faceonly_lab/pad/motions.py)
  role     present (default) | calibrate: stills of a camera's live faces used only to calibrate its cue
  note     free text (why a clip is excluded, who annotated what)
A `file` column is read as `path`, and labels_derived.csv's `real`/`spoof` + `attack_type` are understood.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

from device.vision.replay import STILL_SUFFIXES

LABELS = ("bona_fide", "print_photo", "screen_replay", "video_replay_motion", "not_a_presentation")
ATTACK_NAMES = {
    "print_photo": "print/photo",
    "screen_replay": "screen replay",
    "video_replay_motion": "replayed video with motion",
}
KINDS = ("turn_left", "turn_right", "blink")
_MOTION = re.compile(r"^(turn_left|turn_right|blink)@(\d+)-(\d+)$")


@dataclass(frozen=True)
class Motion:
    kind: str
    onset: int  # first frame of the motion
    end: int  # last frame (the head is back, the eye is open again)


@dataclass(frozen=True)
class Item:
    path: Path
    label: str
    camera: str
    person: str
    split: str = "test"
    motions: tuple[Motion, ...] = field(default_factory=tuple)
    role: str = "present"
    note: str = ""
    annotated: bool = True  # False: the manifest leaves the motions to be proposed from the clip's traces

    @property
    def still(self) -> bool:
        return self.path.suffix.lower() in STILL_SUFFIXES

    @property
    def bona_fide(self) -> bool:
        return self.label == "bona_fide"

    def can(self, kind: str) -> bool:
        return any(m.kind == kind for m in self.motions)


def parse_motions(text: str) -> tuple[Motion, ...]:
    out = []
    for token in text.replace(";", " ").split():
        m = _MOTION.match(token.strip())
        if m is None:
            raise ValueError(f"motion {token!r}: expected KIND@ONSET-END with KIND in {', '.join(KINDS)}")
        onset, end = int(m.group(2)), int(m.group(3))
        if end < onset:
            raise ValueError(f"motion {token!r}: end before onset")
        out.append(Motion(m.group(1), onset, end))
    return tuple(sorted(out, key=lambda m: m.onset))


def _label(row: dict[str, str]) -> str:
    label = (row.get("label") or "").strip().lower().replace(" ", "_")
    if label in LABELS:
        return label
    attack = (row.get("attack_type") or "").lower()
    if label.startswith("real"):
        return "bona_fide"
    if label in ("spoof", "deepfake"):
        if "print" in attack or "mask" in attack or label == "deepfake":
            return "print_photo"
        return "screen_replay"
    raise ValueError(f"unknown label {row.get('label')!r} (expected one of {', '.join(LABELS)})")


def read_manifest(path: Path, data_root: Path | None = None) -> list[Item]:
    text = Path(path).read_text(encoding="utf-8")
    dialect = "excel-tab" if "\t" in text.splitlines()[0] else "excel"
    root = data_root if data_root is not None else Path(path).parent
    items = []
    for n, row in enumerate(csv.DictReader(text.splitlines(), dialect=dialect), start=2):
        row = {k.strip(): (v or "").strip() for k, v in row.items() if k}
        rel = row.get("path") or row.get("file") or row.get("local_path")
        if not rel:
            raise ValueError(f"{path}:{n}: no path")
        try:
            label = _label(row)
            cell = row.get("motions")
            annotated = cell is not None and cell.lower() != "auto"
            motions = parse_motions(cell) if annotated and cell else ()
        except ValueError as exc:
            raise ValueError(f"{path}:{n}: {exc}") from None
        file = root / rel
        items.append(
            Item(
                path=file,
                label=label,
                camera=row.get("camera") or Path(rel).parent.name,
                person=row.get("person") or Path(rel).stem,
                split=row.get("split") or "test",
                motions=motions,
                role=row.get("role") or "present",
                note=row.get("note", ""),
                annotated=annotated,
            )
        )
    return items
