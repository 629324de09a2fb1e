#!/usr/bin/env python3
"""How near its threshold must a single-view probe's score come before the mirror image is worth embedding?

    python scripts/mirror_band.py [--data ../shared/data] [--work DIR] [--write]

Chosen on faces that report no figure (nothing from LFW, whose folds make the curves and the published
accuracy): the deepface identities (verification/deepface/identities_derived.csv) and the faces of the
developers' video clips (video/*/*: every 5th frame's largest face that passes the quality gate, as the
terminal would embed it). Each face is embedded as the terminal does, both ways: its single view (the chip
alone) and its flip average (chip + mirror image). Every face is then a probe against every other face as a
flip-averaged template (templates are always flip-averaged), and against mean-of-3 templates of the deepface
identities.

The banded rule (device.identity.probe) decides on the single view when |s - T_single| > band, else on the
flip average at T_flip, each threshold off its own shipped curve at the same per-comparison FAR. The band is
the smallest (in steps of 0.0005) at which the banded rule accepts no fewer same-identity comparisons (to
within one in 10,000) and no more other-identity ones than always embedding the mirror, at every curve point from FAR 1e-2 to the curve's
end, plus one step. Printed: per FAR, the share of same- and other-identity probes the band sends to the
mirror, and what each rule accepts.
--write records the band and how it was chosen in models/manifest.json (thresholds.single_view.mirror_band);
the model files are untouched.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from device.config.vision import VisionConfig  # noqa: E402
from device.identity.thresholds import CurveSet  # noqa: E402
from device.infra.modelstore import ModelStore  # noqa: E402
from device.vision.detect import FaceDetector  # noqa: E402
from device.vision.embed import Embedder, FaceEncoder  # noqa: E402
from device.vision.landmarks import FaceMeshModel  # noqa: E402
from device.vision.quality import QualityGate  # noqa: E402
from device.vision.stills import load_image  # noqa: E402
from faceonly_lab.lfw import central_face  # noqa: E402

STEP = 0.0005
# "No fewer same-identity accepts" within this share: one in 10,000 (a few near-duplicate video frames sit on
# the threshold at every curve point; requiring none to move would size the band for them alone).
TOLERANCE = 1e-4
FRAME_STRIDE = 5
TOP_FAR, MEAN_OF = 1e-2, 3


def faces(data: Path, progress) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """(source names, identities, flip embeddings, single embeddings) of the deepface images and the clips."""
    import cv2

    store, vision = ModelStore(), VisionConfig()
    detector = FaceDetector(store, vision.detector, vision.detector_min_score, vision.nms_iou)
    encoder = FaceEncoder(Embedder(store), FaceMeshModel(store))
    gate = QualityGate(vision.quality)
    names, ids, flips, singles = [], [], [], []

    def add(name: str, identity: str, image: np.ndarray, face) -> None:
        enc = encoder.encode(image, face)
        names.append(name)
        ids.append(identity)
        flips.append(enc.embedding)
        singles.append(enc.single)

    folder = data / "verification/deepface"
    with open(folder / "identities_derived.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            image = load_image(folder / row["file"])
            face = central_face(detector.detect(image), image.shape)
            if face is not None:
                add(f"deepface/{row['file']}", f"deepface:{row['identity_id']}", image, face)
    progress(f"deepface: {len(names)} faces")
    for clip in sorted((data / "video").glob("*/*")):
        if clip.suffix not in (".mp4", ".webm"):
            continue
        cap = cv2.VideoCapture(str(clip))
        index, kept = 0, 0
        while True:
            ok, image = cap.read()
            if not ok:
                break
            if index % FRAME_STRIDE == 0:
                found = detector.detect(image)
                if found:
                    face = max(found, key=lambda d: float((d.box[2] - d.box[0]) * (d.box[3] - d.box[1])))
                    if gate.assess(image, face).ok:
                        add(f"{clip.parent.name}/{clip.name}#{index}", f"clip:{clip.name}", image, face)
                        kept += 1
            index += 1
        cap.release()
        progress(f"{clip.parent.name}/{clip.name}: {kept} faces")
    return names, ids, np.stack(flips), np.stack(singles)


def comparisons(ids: list[str], flips: np.ndarray, singles: np.ndarray) -> dict[str, np.ndarray]:
    """s, f and same-identity for every probe against every other face as a template, and against the
    deepface identities' mean-of-3 templates (the probe's own images left out of its own identity's mean)."""
    n = len(ids)
    labels = np.asarray(ids)
    s, f = singles @ flips.T, flips @ flips.T
    off = ~np.eye(n, dtype=bool)
    out_s, out_f, same = [s[off]], [f[off]], [(labels[:, None] == labels[None, :])[off]]
    for identity in sorted({i for i in ids if i.startswith("deepface:")}):
        rows = np.flatnonzero(labels == identity)
        if len(rows) < MEAN_OF + 1:
            continue
        members = rows[:MEAN_OF]
        mean = flips[members].mean(axis=0)
        mean /= np.linalg.norm(mean)
        probes = np.setdiff1d(np.arange(n), members)
        out_s.append(singles[probes] @ mean)
        out_f.append(flips[probes] @ mean)
        same.append(labels[probes] == identity)
    return {"s": np.concatenate(out_s), "f": np.concatenate(out_f), "same": np.concatenate(same)}


def choose(c: dict[str, np.ndarray], curves: CurveSet) -> tuple[float, list[dict]]:
    """The smallest band (steps of STEP) at which, at every curve point from TOP_FAR to the curve's end, the
    banded rule accepts no fewer same-identity comparisons (within TOLERANCE) and no more other-identity ones
    than always embedding the mirror; plus one step."""
    flip_curve, single_curve = curves.curve(1, "flip"), curves.curve(1, "single")
    points = []
    for far in [far for far in flip_curve.fars if far <= TOP_FAR]:
        t_flip, _ = flip_curve.threshold(far)
        t_single, _ = single_curve.threshold(far)
        points.append({"far": far, "t_flip": t_flip, "t_single": t_single})
    genuine, impostor = c["same"], ~c["same"]

    def counts(band: float, p: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        near = np.abs(c["s"] - p["t_single"]) <= band
        flip = c["f"] > p["t_flip"]
        return near, np.where(near, flip, c["s"] > p["t_single"]), flip

    def no_worse(band: float) -> bool:
        for p in points:
            _, banded, flip = counts(band, p)
            if banded[genuine].sum() < flip[genuine].sum() * (1 - TOLERANCE):
                return False
            if banded[impostor].sum() > flip[impostor].sum():
                return False
        return True

    steps = 0
    while not no_worse(steps * STEP):
        steps += 1
    band = round((steps + 1) * STEP, 4)
    for p in points:
        near, banded, flip = counts(band, p)
        differ = (c["s"] > p["t_single"]) != flip
        p["single_vs_flip_differ"] = int(differ.sum())
        p["banded_vs_flip_disagreements"] = int((banded != flip).sum())
        p["mirror_share_genuine"] = float(near[genuine].mean()) if genuine.any() else float("nan")
        p["mirror_share_impostor"] = float(near[impostor].mean())
        p["genuine_accepted"] = [int(banded[genuine].sum()), int(flip[genuine].sum())]
        p["impostors_accepted"] = [int(banded[impostor].sum()), int(flip[impostor].sum())]
    return band, points


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--work", type=Path, help="cache the embeddings here (outside the repository)")
    ap.add_argument("--write", action="store_true", help="record the band in models/manifest.json")
    args = ap.parse_args()

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    cache = args.work / "mirror_band_faces.npz" if args.work else None
    if cache is not None and cache.exists():
        data = np.load(cache, allow_pickle=False)
        names, ids = list(data["names"]), list(data["ids"])
        flips, singles = data["flips"], data["singles"]
    else:
        names, ids, flips, singles = faces(args.data, progress)
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            np.savez(cache, names=np.array(names), ids=np.array(ids), flips=flips, singles=singles)
    store = ModelStore()
    curves = CurveSet.from_manifest(store.entry("embedder").info)
    c = comparisons(ids, flips, singles)
    band, points = choose(c, curves)
    clips = len({i for i in ids if i.startswith("clip:")})
    print(f"faces: {len(ids)} ({sum(i.startswith('deepface:') for i in ids)} deepface images, {clips} clips)")
    print(f"comparisons: {len(c['s'])} ({int(c['same'].sum())} same identity)")
    print(f"mirror band: {band}")
    print(
        "far       T_flip   T_single  mirror: genuine impostor  accepted (banded / always mirror): same  other"
    )
    for p in [*points[:: max(1, len(points) // 12)], points[-1]]:
        g, i = p["genuine_accepted"], p["impostors_accepted"]
        print(
            f"{p['far']:.2e}  {p['t_flip']:.5f}  {p['t_single']:.5f}  {p['mirror_share_genuine']:14.1%} "
            f"{p['mirror_share_impostor']:8.2%}  {g[0]:>17d} / {g[1]:<6d} {i[0]:>6d} / {i[1]}"
        )
    if args.write:
        path = store.root / "manifest.json"
        manifest = json.loads(path.read_text(encoding="utf-8"))
        share = {
            k: [round(p[k], 4) for p in points] for k in ("mirror_share_genuine", "mirror_share_impostor")
        }
        manifest["models"]["embedder"]["thresholds"]["single_view"]["mirror_band"] = {
            "value": band,
            "how": "scripts/mirror_band.py: the smallest band (steps of 0.0005, plus one step) at which deciding "
            "on the single view beyond it and on the flip average within it accepts no fewer same-identity "
            "(to within one in 10,000) and no more other-identity comparisons than always embedding the mirror "
            "image, at every curve point "
            "from FAR 1e-2 to the curve's end; on faces that report no figure: the deepface identities and the "
            "developers' video clips (every 5th frame's largest face passing the quality gate), never LFW",
            "faces": len(ids),
            "comparisons": len(c["s"]),
            "same_identity_comparisons": int(c["same"].sum()),
            "mirror_share_at_curve_fars": {"fars": [p["far"] for p in points], **share},
        }
        path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        print(f"wrote the band into {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
