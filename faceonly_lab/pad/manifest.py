"""The PAD manifest: which clips and stills to present, as what (ISO/IEC 30107-3: bona fide or an attack
type), from which camera, and where in each clip the person performs which motion.

CSV (or TSV) with a header; columns (only `path` and `label` are required):
  path     file, relative to the manifest's folder unless --data-root is given
  label    bona_fide | print_photo | screen_replay | video_replay_motion | not_a_presentation; the issue's
           words ("bona fide", "print/photo", "screen replay", "replayed video with motion") and common
           synonyms (real, live, genuine; print, photo; replay, video replay) are read as these
  camera   the capture device (cue calibration and BPCER are per camera); default: the file's folder
  person   who is shown (tries per person); default: the file name
  split    tune | test: clips whose timing set the onset window are `tune` (their figures are reported apart)
  motions  annotated motions in the clip, frame ranges onset-end: "turn_left@36-48 blink@6-8 ..."
           (turn_left = towards the subject's left); a still has none. Without the column, or with
           `auto`, a video's motions are proposed from its own traces (faceonly_lab/pad/motions.py)
  role     present (default) | calibrate: stills of a camera's live faces used only to calibrate its cue
  note     free text (why a clip is excluded, who annotated what)
A `file` column is read as `path`, and labels_derived.csv's `real`/`spoof` + `attack_type` are understood: a
spoof that replays a video (a video file, or `media` = video) is a replayed video with motion, whether the clip
really has the motions is then found out per prompt ("cannot answer").
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


# Words a manifest may use for a label, normalised (lower case; spaces, '-' and '/' as '_').
SYNONYMS = {
    "bonafide": "bona_fide",
    "live": "bona_fide",
    "genuine": "bona_fide",
    "print": "print_photo",
    "photo": "print_photo",
    "printed_photo": "print_photo",
    "screen": "screen_replay",
    "replayed_video_with_motion": "video_replay_motion",
    "replayed_video": "video_replay_motion",
    "video_replay": "video_replay_motion",
}
# Words that say "an attack" without its type: `attack_type`, else the file, says which.
GENERIC_ATTACKS = ("spoof", "attack", "fake", "replay", "deepfake")


def _words(text: str) -> str:
    return re.sub(r"[\s/-]+", "_", text.strip().lower())


def _label(row: dict[str, str], video: bool) -> str:
    word = _words(row.get("label") or "")
    if word in LABELS:
        return word
    if word in SYNONYMS:
        return SYNONYMS[word]
    if word.startswith("real"):  # labels_derived.csv writes "real?" where it is unsure
        return "bona_fide"
    if word in GENERIC_ATTACKS:
        attack = (row.get("attack_type") or "").lower()
        if "print" in attack or "mask" in attack or word == "deepfake":
            return "print_photo"
        return "video_replay_motion" if video else "screen_replay"
    raise ValueError(
        f"unknown label {row.get('label')!r} (expected one of {', '.join(LABELS)}, "
        f"or {', '.join(sorted(SYNONYMS))}, or {', '.join(GENERIC_ATTACKS)} with an attack_type)"
    )


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
        video = Path(rel).suffix.lower() not in STILL_SUFFIXES or _words(row.get("media", "")) == "video"
        try:
            label = _label(row, video)
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
