#!/usr/bin/env python3
"""Probe fusion over a track: does averaging the embeddings of a track's best few frames (quality-weighted)
accept more of the enrolled at the same promised stranger rate than the one best frame the terminal embeds?

    python scripts/track_fusion_report.py --pairs ../shared/data/verification/lfw/pairs_view2_local.csv \
        --lfw-embeddings /tmp/ident/lfw_embeddings.npz --videos ../shared/data/video --work /tmp/fusion \
        [--json OUT]

Probe kinds (a track's frames ranked by the quality gate's score, device.vision.quality):
  best1   the best frame's embedding (what the terminal sends today)
  qw3     the quality-weighted mean of the 3 best frames' embeddings, L2-normalised
  qw5     the same over the 5 best
  mean    the plain mean over every frame of the track

1. LFW simulation. A "track" is FRAMES frame-like variants of one photo: the last photo (by file name) of every
   identity of folds 1-5 with at least 2 photos (746), each variant a seeded random similarity warp (rotation +-6 deg, scale 0.93-1.07, shift
   +-4 px), gain 0.85-1.15 and offset +-12 grey levels, Gaussian blur sigma 0-1.2 px, sensor noise sigma 1-4
   and a JPEG re-encode at quality 70-95, then detected, aligned and embedded exactly as the terminal does.
   Templates are the un-augmented photos (--lfw-embeddings: the identification report's cache, the same path).
   Genuine: a track against every OTHER photo of its identity; impostor: against every photo of another
   identity. Identity-disjoint: curves (the shipped recipe: 95% identity-bootstrap bound) from one half of the
   identities (lfwsets' alternating halves) give each kind's threshold for a per-comparison FAR target; genuine
   accept and FAR are measured on the other half, both crossings pooled.
2. Dev videos (single-person clips): every frame through detect -> track -> quality -> align -> embed; the
   clip's main track cut into windows of WINDOW frames (a walk-up's worth); a window is a track. Genuine: a
   window against the best frame of the clip's FIRST window (same session: optimistic); impostor: every window
   against every LFW image, with a 95% interval from resampling the clips (11 people). Thresholds: each kind's
   bound curve fitted on ALL the LFW tracks of part 1, and "best1@shipped" the terminal's own: its best frame
   at the shipped single-photo curve.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from device.identity.thresholds import ThresholdCurve
from device.vision.embed import l2_normalise
from faceonly_lab import farbound
from faceonly_lab import thresholdcurves as tc
from faceonly_lab.lfwsets import lfw_images, select_half

FRAMES = 5
WINDOW = 15
KINDS = ("best1", "qw3", "qw5", "mean")
TARGETS = (1e-3, 1e-4, 1e-5)
VIDEO_CLIPS = (
    "blink/repeating_blink_video_v1.mp4",
    "krzysiek354/real_live_headturn.webm",
    "sadtalker/st_aoc_talking_blinks.mp4",
    *(
        f"liveportrait/lp_{name}.mp4"
        for name in (
            "d0_asian_man_greenscreen_gaze_smile",
            "d10_young_woman_talking_selfie",
            "d13_man_glasses_phone_selfie_mall",
            "d14_young_woman_wink_gaze",
            "d19_man_glasses_studio_wink",
            "d20_young_man_outdoor_film",
            "d6_woman_funny_faces",
            "d9_man_glasses_selfie_indoor",
        )
    ),
)


def fuse(embeddings: np.ndarray, quality: np.ndarray, kind: str) -> np.ndarray:
    """One probe embedding from a track's frame embeddings (rows) and their quality scores."""
    order = np.argsort(-quality, kind="stable")
    if kind == "best1":
        return embeddings[order[0]]
    if kind == "mean":
        return l2_normalise(embeddings.mean(axis=0))
    top = order[: int(kind.removeprefix("qw"))]
    weights = np.maximum(quality[top], 1e-6)
    return l2_normalise((embeddings[top] * weights[:, None]).sum(axis=0))


def frame_like(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One frame-like variant of a photo (see the module docstring for the ranges)."""
    h, w = image.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), rng.uniform(-6, 6), rng.uniform(0.93, 1.07))
    m[:, 2] += rng.uniform(-4, 4, size=2)
    out = cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    out = out.astype(np.float32) * rng.uniform(0.85, 1.15) + rng.uniform(-12, 12)
    sigma = rng.uniform(0, 1.2)
    if sigma > 0.3:
        out = cv2.GaussianBlur(out, (0, 0), sigma)
    out = np.clip(out + rng.normal(0, rng.uniform(1, 4), out.shape), 0, 255).astype(np.uint8)
    ok, jpeg = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(70, 96))])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return cv2.imdecode(jpeg, cv2.IMREAD_COLOR)


class TerminalPath:
    """Detect, quality, align, embed: the terminal's own parts on the shipped models."""

    def __init__(self) -> None:
        from device.config.vision import VisionConfig
        from device.infra.modelstore import ModelStore
        from device.vision.detect import FaceDetector
        from device.vision.embed import Embedder, FaceEncoder
        from device.vision.landmarks import FaceMeshModel
        from device.vision.quality import QualityGate

        store, self.vision = ModelStore(), VisionConfig()
        v = self.vision
        self.detector = FaceDetector(store, v.detector, v.detector_min_score, v.nms_iou)
        self.encoder = FaceEncoder(Embedder(store), FaceMeshModel(store))
        self.quality = QualityGate(v.quality)

    def frame(self, image: np.ndarray, face) -> tuple[float, bool, np.ndarray]:
        q = self.quality.assess(image, face)
        return q.score, q.ok, self.encoder.encode(image, face).embedding


def lfw_tracks(pairs: Path, cache: Path) -> dict:
    """{identity: (FRAMES quality scores, FRAMES embeddings)} of the augmented last photo, cached."""
    if cache.exists():
        data = np.load(cache, allow_pickle=False)
        return {
            str(n): (q, e) for n, q, e in zip(data["names"], data["quality"], data["embeddings"], strict=True)
        }
    from device.vision.stills import load_image
    from faceonly_lab.lfw import central_face

    path = TerminalPath()
    out = {}
    images = {n: ps for n, ps in lfw_images(pairs).items() if len(ps) >= 2}
    for i, (name, photos) in enumerate(images.items()):
        if i % 100 == 0:
            print(f"lfw tracks: {i}/{len(images)}", file=sys.stderr, flush=True)
        rng = np.random.default_rng(i)  # seeded by the identity's place in the sorted list
        photo = load_image(photos[-1])
        frames = []
        for _ in range(FRAMES):
            variant = frame_like(photo, rng)
            face = central_face(path.detector.detect(variant), variant.shape)
            if face is not None:
                score, _, emb = path.frame(variant, face)
                frames.append((score, emb))
        if len(frames) == FRAMES:
            out[name] = (np.array([f[0] for f in frames]), np.stack([f[1] for f in frames]))
    names = sorted(out)
    np.savez(
        cache,
        names=np.array(names),
        quality=np.stack([out[n][0] for n in names]),
        embeddings=np.stack([out[n][1] for n in names]),
    )
    return out


def _comparisons(probes: dict[str, np.ndarray], photos: dict[str, list[np.ndarray]], names: list[str]):
    """(genuine scores, Impostors) of the probes of `names` (one per identity with a track) against every
    photo of `names`: genuine = a probe vs every photo of its identity except the one its track came from
    (the last); impostor = vs every photo of another identity."""
    index = {n: i for i, n in enumerate(sorted(names))}
    with_track = [n for n in sorted(names) if n in probes]
    x = np.stack([p for n in sorted(names) for p in photos[n]])
    owners = np.array([index[n] for n in sorted(names) for _ in photos[n]])
    genuine = np.concatenate([np.asarray(photos[n][:-1]) @ probes[n] for n in with_track])
    probe_ids = np.array([index[n] for n in with_track])
    imp = farbound.cross_impostors(x, owners, np.stack([probes[n] for n in with_track]), probe_ids, 1.0)
    return genuine, imp


def paired_gain(flags: np.ndarray, base: np.ndarray, groups: np.ndarray) -> tuple[float, float, float]:
    """Mean of flags - base with a 95% interval from resampling the groups (a person's pairs go together)."""
    diff = flags.astype(float) - base.astype(float)
    names, inverse = np.unique(groups, return_inverse=True)
    sums, counts = np.bincount(inverse, diff), np.bincount(inverse)
    rng = np.random.default_rng(farbound.BOUND_SEED)
    draws = rng.multinomial(len(names), np.full(len(names), 1 / len(names)), size=1000)
    means = (draws @ sums) / (draws @ counts)
    return float(diff.mean()), float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def lfw_part(pairs: Path, lfw_embeddings: Path, tracks: dict) -> tuple[list[dict], dict[str, ThresholdCurve]]:
    data = np.load(lfw_embeddings, allow_pickle=False)
    emb = {Path(p).resolve(): e for p, e in zip(data["paths"], data["embeddings"], strict=True)}
    images = lfw_images(pairs)
    photos = {n: [emb[p.resolve()] for p in ps if p.resolve() in emb] for n, ps in images.items()}
    halves = {h: select_half(list(images), h) for h in ("a", "b")}
    everyone = sorted(halves["a"] + halves["b"])
    # whose genuine pair each is, in _comparisons' order, crossing a->b (measured on b) then b->a
    owners = np.array(
        [n for h in ("b", "a") for n in sorted(halves[h]) if n in tracks for _ in photos[n][:-1]]
    )
    rows, curves, flags = [], {}, {}
    for kind in KINDS:
        probes = {n: fuse(tracks[n][1], tracks[n][0], kind) for n in everyone if n in tracks}
        parts = {h: _comparisons(probes, photos, halves[h]) for h in ("a", "b")}
        fitted = {
            h: ThresholdCurve.from_points(tc.threshold_curve(parts[h][1].top(tc.CURVE_TOP_FAR)))
            for h in parts
        }
        curves[kind] = ThresholdCurve.from_points(
            tc.threshold_curve(_comparisons(probes, photos, everyone)[1].top(tc.CURVE_TOP_FAR))
        )
        for far in TARGETS:
            accepted, above, total, clamped = [], 0, 0, False
            for fit, measured in (("a", "b"), ("b", "a")):
                threshold, beyond = fitted[fit].threshold(far)
                clamped = clamped or beyond
                g, imp = parts[measured]
                accepted.append(g > threshold)
                above += int(np.count_nonzero(imp.scores > threshold))
                total += imp.total
            flags[kind, far] = np.concatenate(accepted)
            gain, lo, hi = paired_gain(flags[kind, far], flags["best1", far], owners)
            rows.append(
                {
                    "kind": kind,
                    "target": far,
                    "genuine_accept": float(flags[kind, far].mean()),
                    "gain_vs_best1": gain,
                    "gain_ci95": f"{lo:+.4f}..{hi:+.4f}",
                    "held_out_far": above / total,
                    "genuine_pairs": len(flags[kind, far]),
                    "impostor_comparisons": total,
                    "clamped": clamped,
                }
            )
    return rows, curves


def video_frames(clip: Path, path: TerminalPath) -> tuple[np.ndarray, np.ndarray]:
    """(quality scores, embeddings) of the clip's longest track, frame by frame."""
    from device.vision.tracker import Tracker

    tracker = Tracker(path.vision.tracker)
    per_track: dict[int, list[tuple[float, np.ndarray]]] = {}
    cap = cv2.VideoCapture(str(clip))
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    index = 0
    while True:
        ok, image = cap.read()
        if not ok:
            break
        update = tracker.update(path.detector.detect(image), index / fps)
        for tid, det in update.matched:
            score, _, emb = path.frame(image, det)
            per_track.setdefault(tid, []).append((score, emb))
        index += 1
    cap.release()
    main = max(per_track.values(), key=len)
    return np.array([f[0] for f in main]), np.stack([f[1] for f in main])


def video_part(
    videos: Path, cache: Path, lfw_embeddings: Path, curves: dict[str, ThresholdCurve]
) -> list[dict]:
    if cache.exists():
        data = np.load(cache, allow_pickle=False)
        clips = {str(c): (data[f"q{i}"], data[f"e{i}"]) for i, c in enumerate(data["clips"])}
    else:
        path = TerminalPath()
        clips = {}
        for name in VIDEO_CLIPS:
            print(f"video: {name}", file=sys.stderr, flush=True)
            clips[name] = video_frames(videos / name, path)
        arrays = {f"q{i}": clips[c][0] for i, c in enumerate(clips)} | {
            f"e{i}": clips[c][1] for i, c in enumerate(clips)
        }
        np.savez(cache, clips=np.array(list(clips)), **arrays)
    from device.infra.modelstore import ModelStore

    lfw = np.load(lfw_embeddings, allow_pickle=False)["embeddings"]
    # The terminal today: its best frame at the shipped single-photo curve.
    curves = {**curves, "best1@shipped": ThresholdCurve.from_manifest(ModelStore().entry("embedder").info)}
    rows = []
    for kind in ("best1@shipped", *KINDS):
        genuine, impostor, clip_of = [], [], []
        for c, (quality, emb) in enumerate(clips.values()):
            windows = [slice(s, s + WINDOW) for s in range(0, len(emb) - WINDOW + 1, WINDOW)]
            if len(windows) < 2:
                continue
            first = windows[0]
            template = emb[first][int(np.argmax(quality[first]))]
            for w in windows[1:]:
                probe = fuse(emb[w], quality[w], kind.split("@")[0])
                genuine.append(float(probe @ template))
                impostor.append(lfw @ probe)
                clip_of.append(c)
        scores, clip_ids = np.stack(impostor), np.asarray(clip_of)
        for far in TARGETS:
            threshold, clamped = curves[kind].threshold(far)
            above = (scores > threshold).mean(axis=1)  # per window
            # 95% interval over the people: resample the clips (a clip is one person).
            sums, counts = np.bincount(clip_ids, above), np.bincount(clip_ids)
            picked = np.random.default_rng(farbound.BOUND_SEED).multinomial(
                len(sums), np.full(len(sums), 1 / len(sums)), size=1000
            )
            resampled = (picked @ sums) / (picked @ counts)
            rows.append(
                {
                    "kind": kind,
                    "target": far,
                    "threshold": round(threshold, 5),
                    "genuine_accept": float(np.mean(np.asarray(genuine) > threshold)),
                    "windows": len(genuine),
                    "lfw_far": float(above.mean()),
                    "lfw_far_ci95": f"{np.quantile(resampled, 0.025):.2g}..{np.quantile(resampled, 0.975):.2g}",
                    "lfw_comparisons": scores.size,
                    "clamped": clamped,
                }
            )
    return rows


def table(title: str, rows: list[dict]) -> str:
    cols = list(rows[0])
    lines = [f"## {title}", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append(
            "| " + " | ".join(f"{r[c]:.4g}" if isinstance(r[c], float) else str(r[c]) for c in cols) + " |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=Path, required=True)
    ap.add_argument("--lfw-embeddings", type=Path, required=True, help="identification_report.py's cache")
    ap.add_argument("--videos", type=Path, required=True)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    tracks = lfw_tracks(args.pairs, args.work / "lfw_tracks.npz")
    lfw_rows, curves = lfw_part(args.pairs, args.lfw_embeddings, tracks)
    video_rows = video_part(args.videos, args.work / "video_frames.npz", args.lfw_embeddings, curves)
    print(
        table(
            "LFW tracks: genuine accept and FAR on held-out identities at each kind's own bound curve",
            lfw_rows,
        )
    )
    print(table("Dev videos: windows of the clip's track; thresholds from all LFW tracks", video_rows))
    if args.json:
        args.json.write_text(json.dumps({"lfw": lfw_rows, "videos": video_rows}, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
