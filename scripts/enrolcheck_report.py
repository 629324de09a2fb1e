"""How well the enrolment checks (device/identity/enrolcheck.py) do on real faces: LFW photos through the
terminal's own path (detector, quality gate, mesh, chip, embedder), as `faceonly backend subjects add` makes
them.

- one person or several: k photos of one person grouped as more than one person (an honest enrolment
  refused), and a+b photos of two people grouped as one (a mixed folder let through);
- duplicates: a person enrolled from 3 photos, then other photos of them as a new subject (caught?), and each
  person's new subject checked against everyone else enrolled (refused as someone else's duplicate?).

    python scripts/enrolcheck_report.py --lfw ../shared/data/verification/lfw/lfw-deepfunneled [--json out.json]

The thresholds come off the shipped curves, which were calibrated on LFW folds 1-5: these figures are on
(largely) the same people, not held-out ones.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from device.identity.enrolcheck import claim_threshold, clashes, person_groups, same_person_threshold
from device.identity.gallery import check_subject
from device.identity.thresholds import CurveSet


def embed_people(root: Path, min_photos: int, limit: int) -> dict[str, list[np.ndarray]]:
    from device.config.vision import VisionConfig
    from device.infra.modelstore import ModelStore
    from device.vision.detect import FaceDetector
    from device.vision.embed import Embedder, FaceEncoder
    from device.vision.landmarks import FaceMeshModel
    from device.vision.quality import QualityGate
    from device.vision.stills import load_image

    store, vision = ModelStore(), VisionConfig()
    detector = FaceDetector(store, vision.detector, vision.detector_min_score, vision.nms_iou)
    gate, encoder = QualityGate(vision.quality), FaceEncoder(Embedder(store), FaceMeshModel(store))
    people: dict[str, list[np.ndarray]] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        photos = sorted(folder.glob("*.jpg"))
        if len(photos) < min_photos:
            continue
        good = []
        for path in photos[:limit]:
            image = load_image(path)
            faces = detector.detect(image)
            if len(faces) == 1 and gate.assess(image, faces[0]).ok:
                good.append(encoder.encode(image, faces[0]).embedding)
        if len(good) >= min_photos:
            people[folder.name] = good
    return people


def one_person(
    people: dict[str, list[np.ndarray]], far: float, curves: CurveSet, pairs: int
) -> dict[str, float]:
    threshold = same_person_threshold(curves, far)
    out: dict[str, float] = {"threshold": round(threshold, 4)}
    for k in (2, 3, 4):
        sets = [v[:k] for v in people.values() if len(v) >= k]
        refused = sum(len(person_groups(np.stack(s), threshold)) > 1 for s in sets)
        out[f"one_person_{k}_photos_refused"] = round(refused / len(sets), 4)
        out[f"one_person_{k}_photos_sets"] = len(sets)
    rng = random.Random(0)
    names = sorted(people)
    for a, b in ((1, 1), (2, 2), (3, 1)):
        chosen = [tuple(rng.sample(names, 2)) for _ in range(pairs)]
        sets = [
            people[x][:a] + people[y][:b] for x, y in chosen if len(people[x]) >= a and len(people[y]) >= b
        ]
        let_through = sum(len(person_groups(np.stack(s), threshold)) == 1 for s in sets)
        out[f"two_people_{a}+{b}_let_through"] = round(let_through / len(sets), 4)
        out[f"two_people_{a}+{b}_sets"] = len(sets)
    return out


def duplicates(people: dict[str, list[np.ndarray]], far: float, curves: CurveSet) -> dict[str, float]:
    """Each person with 6+ photos: enrolled from photos 1-3 (a mean template), probed with photos 4-6."""

    def mean(rows: list[np.ndarray]) -> np.ndarray:
        m = np.mean(np.stack(rows), axis=0)
        return (m / np.linalg.norm(m)).astype(np.float32).reshape(1, -1)

    many = {n: v for n, v in people.items() if len(v) >= 6}
    held = [check_subject(f"{n}", None, mean(v[:3]), 3) for n, v in many.items()]
    caught = false_refusals = 0
    for n, v in many.items():
        probe = check_subject(f"new-{n}", None, mean(v[3:6]), 3)
        found = clashes([probe], held, curves, far)
        caught += any(c.other == n for c in found)
        false_refusals += any(c.other != n for c in found)
    return {
        "people": len(many),
        "duplicate_caught": round(caught / len(many), 4),
        "refused_as_someone_else": round(false_refusals / len(many), 4),
        "threshold_mean3_vs_mean3": round(claim_threshold(curves, 1, {3}, far), 4),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lfw", type=Path, required=True, help="a folder of LFW people folders")
    parser.add_argument("--pairs", type=int, default=2000, help="random pairs of people for the mixed sets")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    from device.infra.modelstore import ModelStore

    curves = CurveSet.from_manifest(ModelStore().entry("embedder").info)
    people = embed_people(args.lfw, 4, 8)
    report = {
        "people": len(people),
        "photos": sum(len(v) for v in people.values()),
        "one_person": {f"{far:g}": one_person(people, far, curves, args.pairs) for far in (1e-2, 1e-3)},
        "duplicates": {f"{far:g}": duplicates(people, far, curves) for far in (1e-4, 1e-3)},
    }
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
