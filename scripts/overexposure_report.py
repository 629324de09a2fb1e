#!/usr/bin/env python3
"""What an overexposed face costs the embedder (printed, not a test): LFW probes brightened until their pixels
clip, matched against the same people's unaltered photos, binned by the clipped share the quality gate
measures (`quality.max_clipped`, device/vision/quality.py).

The quality gate refuses a face with more than max_clipped of its pixels at black or white. Issue 21 asks the
gate to judge by what the models need rather than by pixel statistics; this measures what the embedder needs.
Each image of the chosen LFW folds is embedded as the terminal embeds it (detector, mesh, 5-point chip,
flip-averaged embed) as it is and multiplied by each --gains value (clipped at 255). A pair's template is
one image unaltered, its probe the other image at a gain, both ways round. Printed per clipped-share bin of
the probe's face (the gate's own patch and measure): probes, their mean grey level, what the gate says of
them, the genuine pairs' accept rate at the shipped 1:1 thresholds (FAR 1e-3 and 1e-2), and the impostor
accept rate at FAR 1e-3 over every probe against every other person's unaltered template (comparisons share
people, so read it as a rate to compare between rows, not as a bound).

    python scripts/overexposure_report.py [--folds 1 2] [--gains 1.8 2.2 2.6]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from device.config import load_config  # noqa: E402
from device.infra.modelstore import ModelStore  # noqa: E402
from device.vision.detect import FaceDetector  # noqa: E402
from device.vision.embed import Embedder, FaceEncoder  # noqa: E402
from device.vision.landmarks import FaceMeshModel  # noqa: E402
from device.vision.quality import QualityGate  # noqa: E402
from faceonly_lab.lfw import central_face, read_pairs  # noqa: E402

BINS = ((0.0, 0.1), (0.1, 0.25), (0.25, 0.4), (0.4, 0.55), (0.55, 0.7), (0.7, 1.0))


@dataclass
class Probe:
    embedding: np.ndarray
    clipped: float
    brightness: float
    reasons: tuple[str, ...]


@dataclass
class Row:
    brightness: list[float] = field(default_factory=list)
    refused: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    genuine: list[float] = field(default_factory=list)
    impostor_accepts: int = 0
    impostor_comparisons: int = 0


def embed_all(images: list[Path], gains: list[float], progress: bool) -> dict[float, dict[Path, Probe]]:
    cfg = load_config(None, {})
    store = ModelStore()
    vision = cfg.vision
    detector = FaceDetector(store, vision.detector, vision.detector_min_score, vision.nms_iou)
    encoder = FaceEncoder(Embedder(store), FaceMeshModel(store))
    gate = QualityGate(vision.quality)
    out: dict[float, dict[Path, Probe]] = {g: {} for g in gains}
    start = time.monotonic()
    for i, path in enumerate(images):
        if progress and i % 500 == 0:
            print(f"  {i}/{len(images)} images, {time.monotonic() - start:.0f} s", file=sys.stderr)
        image = cv2.imread(str(path))
        if image is None:
            continue
        for gain in gains:
            shown = image if gain == 1.0 else cv2.convertScaleAbs(image, alpha=gain)
            face = central_face(detector.detect(shown), shown.shape)
            if face is None:
                continue
            q = gate.assess(shown, face)
            out[gain][path] = Probe(
                encoder.encode(shown, face).embedding,
                float(q.metrics["clipped"]),
                float(q.metrics["brightness"]),
                tuple(r.code for r in q.reasons),
            )
    return out


def bin_label(clipped: float) -> str:
    low, high = next(b for b in BINS if clipped < b[1] or b is BINS[-1])
    return f"{low:.2f}-{high:.2f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--folds", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--gains", type=float, nargs="+", default=[1.8, 2.2, 2.6])
    args = ap.parse_args()
    lfw = args.data_root / "verification" / "lfw"
    pairs = [
        p
        for p in read_pairs(lfw / "pairs.txt")
        if p.fold in args.folds and p.img1.is_file() and p.img2.is_file()
    ]
    if not pairs:
        print(f"no LFW pairs of folds {args.folds} under {lfw}", file=sys.stderr)
        return 1
    thresholds = ModelStore().entry("embedder").info["thresholds"]["per_comparison"]
    t3, t2 = float(thresholds["far_1e-3"]), float(thresholds["far_1e-2"])
    gains = [1.0, *[g for g in args.gains if g != 1.0]]
    images = sorted({p.img1 for p in pairs} | {p.img2 for p in pairs})
    print(f"LFW folds {args.folds}: {len(pairs)} pairs, {len(images)} images, gains {gains}", file=sys.stderr)
    probes = embed_all(images, gains, progress=True)
    clean = probes[1.0]
    paths = sorted(clean)
    templates = np.stack([clean[p].embedding for p in paths])
    people = np.array([p.parent.name for p in paths])
    rows: dict[str, Row] = {"unaltered": Row(), **{bin_label(low): Row() for low, _ in BINS}}

    def row_of(gain: float, probe: Probe) -> Row:
        return rows["unaltered" if gain == 1.0 else bin_label(probe.clipped)]

    for gain, found in probes.items():
        for pair in pairs:
            if not pair.same:
                continue
            for template, probe in ((pair.img1, pair.img2), (pair.img2, pair.img1)):
                if template in clean and probe in found:
                    score = float(np.dot(clean[template].embedding, found[probe].embedding))
                    row_of(gain, found[probe]).genuine.append(score)
        for path, probe in found.items():
            row = row_of(gain, probe)
            row.brightness.append(probe.brightness)
            row.refused += bool(probe.reasons)
            row.reasons.update(probe.reasons)
            others = people != path.parent.name
            row.impostor_accepts += int(np.count_nonzero(templates[others] @ probe.embedding >= t3))
            row.impostor_comparisons += int(np.count_nonzero(others))

    print(f"\nShipped 1:1 thresholds: {t3} (FAR 1e-3), {t2} (FAR 1e-2). Probes at gains {gains[1:]} are")
    print("binned by their face's clipped share; 'unaltered' is every probe at gain 1.\n")
    print(
        "| probe face clipped | probes | mean grey | gate refuses | genuine pairs | accepted at 1e-3 | at 1e-2 "
        "| impostors accepted at 1e-3 (comparisons) | the gate's reasons (most common) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, row in rows.items():
        count = len(row.brightness)
        if not count:
            continue
        genuine = np.array(row.genuine)
        common = ", ".join(f"{code} {n}" for code, n in row.reasons.most_common(3))
        print(
            f"| {name} | {count} | {np.mean(row.brightness):.0f} | {row.refused / count:.0%} | "
            f"{len(genuine)} | {np.mean(genuine >= t3):.3f} | {np.mean(genuine >= t2):.3f} | "
            f"{row.impostor_accepts / max(row.impostor_comparisons, 1):.5f} ({row.impostor_comparisons:,}) | "
            f"{common} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
