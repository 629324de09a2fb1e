#!/usr/bin/env python3
"""What a PHOTO of an enrolled person does at the gate under each liveness policy, measured.

    python scripts/gate_photo_report.py --work /tmp/gatephotos \
        [--lfw ../shared/data/verification/lfw/lfw-deepfunneled --people 30] [--json OUT]

The terminal's decision path (real pipeline, real 1:N on a gallery made by `faceonly gallery build`, a
gpio gate on gpiozero's MockFactory; tests/gate_rig.py GateBench) is fed:

1. the demo replay (`faceonly replay demo`'s frames: scikit-image's astronaut photo walking up to the
   camera), with the astronaut enrolled from that same photo;
2. with --lfw: printed-photo attacks (tests/photo_attacks.py: a still moved in front of the camera like a
   print or a phone, blur, noise, JPEG) of the first --people LFW identities (sorted) with at least 4
   photos, each enrolled from its first 3 photos (one mean template, the default) and attacked with its
   4th, which the gallery never saw (people none of whose 3 photos passes the quality gate are not enrolled
   and not attacked).

Per policy: how many runs opened the gate, and for whom. Nothing is fitted: the threshold is the shipped
one for the gallery's size at identity.false_accept_per_search (default 1e-3).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from device.contracts import Frame  # noqa: E402
from device.identity.gallery import decode_body  # noqa: E402
from device.identity.operator import read_update  # noqa: E402
from device.infra.modelstore import ModelStore  # noqa: E402
from device.vision.demo import make_demo  # noqa: E402
from device.vision.replay import ReplaySource  # noqa: E402
from device.vision.stills import load_image  # noqa: E402
from tests.gate_rig import GateBench, build_gallery, enrol_astronaut  # noqa: E402
from tests.photo_attacks import photo_attack_frames  # noqa: E402

POLICIES = ("off", "passive", "challenge")


def _outcome(runs: list[tuple[str, list]]) -> dict:
    """Runs, each (the subject the photo shows, GateBench.run's result) -> counts."""
    opened_right = opened_wrong = 0
    decisions: dict[str, int] = {}
    scores = []
    for shown, result in runs:
        for obs, match, opened in result:
            key = f"{obs.decision}: {'+'.join(r.code for r in obs.reasons)}"
            decisions[key] = decisions.get(key, 0) + 1
            if match is not None and match.subject is not None:
                scores.append((match.subject, round(match.score, 4), round(match.threshold, 4)))
            if opened and match is not None and match.subject == shown:
                opened_right += 1
            elif opened:
                opened_wrong += 1
    return {
        "runs": len(runs),
        "runs_opened": sum(1 for _, result in runs if any(opened for _, _, opened in result)),
        "opened_for_the_person_shown": opened_right,
        "opened_for_someone_else": opened_wrong,
        "decisions": decisions,
        "matches_score_threshold": scores[:5],
    }


def demo(work: Path, store: ModelStore) -> dict:
    fog, pub = enrol_astronaut(work / "demo-gallery")
    replay = make_demo(work / "demo-replay")
    out = {}
    for policy in POLICIES:
        bench = GateBench(work / f"demo-{policy}", fog, pub, policy, store)
        source = ReplaySource(replay)
        frames = []
        for frame in source.frames():
            frames.append(Frame(frame.index, frame.timestamp, frame.monotonic, frame.image.copy()))
            source.release(frame)
        result = bench.run(frames)
        bench.close()
        opened_at = [round(obs.last_seen, 2) for obs, _, opened in result if opened]
        out[policy] = {**_outcome([("eileen", result)]), "opened_at_replay_s": opened_at}
    return out


def lfw(work: Path, store: ModelStore, root: Path, people: int) -> dict:
    names = sorted(p.name for p in root.iterdir() if p.is_dir() and len(list(p.glob("*.jpg"))) >= 4)[:people]
    photos = work / "lfw-photos"
    attacks = {}
    for name in names:
        images = sorted((root / name).glob("*.jpg"))
        sid = name.replace("'", "")[:120]
        (photos / sid).mkdir(parents=True, exist_ok=True)
        for src in images[:3]:
            shutil.copy(src, photos / sid / src.name)
        attacks[sid] = images[3]
    fog, pub = build_gallery(work / "lfw-gallery", photos)
    enrolled = {s.id for s in decode_body(read_update(fog).result)[0]}
    # A person none of whose 3 photos passed `gallery build`'s quality gate is not enrolled: not attacked.
    attacks = {sid: still for sid, still in attacks.items() if sid in enrolled}
    out = {"people": len(names), "enrolled_and_attacked": len(attacks)}
    for policy in ("passive", "challenge"):
        runs = []
        for k, (sid, still_path) in enumerate(attacks.items()):
            bench = GateBench(work / f"lfw-{policy}-{k}", fog, pub, policy, store)
            frames = [
                Frame(i, i / 15.0, i / 15.0, image)
                for i, image in enumerate(photo_attack_frames(load_image(still_path), seed=k))
            ]
            runs.append((sid, bench.run(frames)))
            bench.close()
        out[policy] = _outcome(runs)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", type=Path, required=True, help="scratch folder (galleries, replays)")
    parser.add_argument("--lfw", type=Path, default=None, help="LFW deep-funneled folder")
    parser.add_argument("--people", type=int, default=30)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.work.exists():
        shutil.rmtree(args.work)
    args.work.mkdir(parents=True)
    store = ModelStore()
    t0 = time.monotonic()
    report = {"demo": demo(args.work, store)}
    if args.lfw is not None:
        report["lfw_photo_attacks"] = lfw(args.work, store, args.lfw, args.people)
    report["seconds"] = round(time.monotonic() - t0, 1)
    print(json.dumps(report, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
