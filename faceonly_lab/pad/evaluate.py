"""`faceonly evaluate --pad MANIFEST`: every item under every seed (and every robustness variant of the bona fide
clips), then the ISO/IEC 30107-3 figures: BPCER per camera/clip, APCER per attack type (worst case over the
attack instruments of that type), the reason codes of every failure and the tries per person.

Which runs are made:
- a bona fide clip runs each challenge whose motions it has (shipped = turn + blink, and each step alone);
  a clip without any prompted motion is reported "cannot answer" from its annotations, without a run; a clip
  the manifest does not annotate has its motions proposed from its traces (faceonly_lab/pad/motions.py);
- an attack video runs under two attacker models: it PLAYS (ignores prompts) or is SCRUBBED to the motion;
- a still (print, photo, a screen showing a still) is held up by a responsive attacker (shipped challenge);
- each under the cue UNCALIBRATED (as shipped) and, where the camera has live material, CALIBRATED on it.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from device.config.vision import VisionConfig
from device.vision.liveness.blink import BlinkDetector
from device.vision.liveness.calibration import CueCalibration, CueSample
from device.vision.liveness.cues import edge_cue, high_frequency_share
from device.vision.liveness.features import eye_openness, mesh_motion
from device.vision.quality import face_patch
from device.vision.stills import load_image
from faceonly_lab.pad import motions, variants
from faceonly_lab.pad.manifest import ATTACK_NAMES, Item
from faceonly_lab.pad.run import Clip, Evaluator, Run

Progress = Callable[[str], None]
CALIBRATION_CHUNK_S = 1.0  # one calibration "pass" per second of a bona fide clip
STILL_SEEDS = 2  # stills are rendered afresh every frame (nothing to cache): fewer seeds, 1 when calibrated


def _largest(faces):
    return max(faces, key=lambda d: float((d.box[2] - d.box[0]) * (d.box[3] - d.box[1]))) if faces else None


def _cue_sample(image: np.ndarray, face) -> CueSample | None:
    patch = face_patch(image, face.box, shrink=0.1)
    return None if patch is None else CueSample(high_frequency_share(patch), edge_cue(image, face.box))


def still_cue_sample(ev: Evaluator, path: Path) -> CueSample | None:
    import cv2

    image = load_image(path)
    pad = max(image.shape[:2]) // 2  # tight face crops: give the detector some context
    image = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    face = _largest(ev.detector.detect(image))
    return None if face is None else _cue_sample(image, face)


Features = tuple[CueSample | None, float, float, bool, float]  # cue, yaw, openness, steady, face aspect


def clip_features(ev: Evaluator, clip: Clip) -> list[Features | None]:
    """Per frame of the original clip, played straight: its Features (None: no face), via the cache."""
    memo = clip.memo("original")

    def compute() -> np.ndarray:
        # share, edges, yaw, openness, steady, face found, face aspect
        rows = np.full((len(clip.frames), 7), np.nan, np.float32)
        prev = None
        for i, image in enumerate(clip.frames):
            memo.frame = i
            face = _largest(memo.detect(image))
            if face is None:
                prev = None
                continue
            mesh = memo.run(image, face)
            moved = mesh_motion(mesh.xy, prev, ev.config.liveness)
            prev = moved.nose
            sample = _cue_sample(image, face)
            share, edges = (sample.share, sample.edges) if sample else (np.nan, np.nan)
            openness = eye_openness(memo.iris_model, image, mesh)
            rows[i] = (share, edges, moved.yaw, openness, float(moved.steady), 1.0, moved.aspect)
        return rows

    rows = memo.cached("features_v2", compute)
    return [
        None
        if r[5] != 1.0  # NaN (no face) too
        else (
            CueSample(float(r[0]), float(r[1])) if np.isfinite(r[0]) else None,
            float(r[2]),
            float(r[3]),
            bool(r[4]),
            float(r[6]),
        )
        for r in rows
    ]


def onset_lags(item: Item, features, fps: float, config) -> list[dict[str, Any]]:
    """Detected minus annotated onset of every annotated motion (what the onset window must absorb)."""
    rows = []
    for m in item.motions:
        lag = None
        if m.kind == "blink":
            blink = BlinkDetector(config)
            for i, f in enumerate(features[: m.end + 6]):
                if f is None:
                    continue
                event = blink.update(i / fps, i, f[2], f[3], f[4])
                if event is not None and event.end_index >= m.onset - 3:
                    lag = (event.start_index - m.onset) / fps
                    break
        else:
            sign = 1.0 if m.kind == "turn_left" else -1.0
            rest = [f[1] for f in features[max(0, m.onset - 8) : m.onset + 1] if f is not None]
            base = float(np.median(rest)) if rest else 0.0
            for i in range(m.onset, min(m.end + 1, len(features))):
                f = features[i]
                if f is not None and sign * (f[1] - base) >= config.turn_onset_deg:
                    lag = (i - m.onset) / fps
                    break
        rows.append(
            {"path": item.path.name, "split": item.split, "kind": m.kind, "onset": m.onset, "lag_s": lag}
        )
    return rows


def _calibration(samples: list[CueSample]) -> CueCalibration | None:
    cal = CueCalibration(None)
    for s in samples:
        cal.learn(s, save=False)
    return cal if cal.calibrated else None


def _chunk_samples(features, fps: float) -> list[CueSample]:
    """One calibration "pass" per CALIBRATION_CHUNK_S of a bona fide clip: the median cue of its frames."""
    step = max(1, round(CALIBRATION_CHUNK_S * fps))
    out = []
    for s in range(0, len(features), step):
        chunk = [f[0] for f in features[s : s + step] if f is not None and f[0] is not None]
        if chunk:
            share = float(np.median([c.share for c in chunk]))
            out.append(CueSample(share, float(np.median([c.edges for c in chunk]))))
    return out


class _Plan:
    """Collects what evaluate_pad learns per camera before the runs: calibration material, onset lags, and
    the motions of clips whose motions are proposed (`propose_all`: every video's, annotated or not)."""

    def __init__(
        self, ev: Evaluator, items: list[Item], progress: Progress, propose_all: bool = False
    ) -> None:
        self.samples: dict[str, list[CueSample]] = defaultdict(list)
        self.source: dict[str, str] = {}
        self.lags: list[dict[str, Any]] = []
        self.proposals: list[dict[str, Any]] = []
        self.yaw: dict[Path, list[float]] = {}  # per video, its head yaw per frame: where its presenter waits
        for item in items:
            if item.role == "calibrate" and (sample := still_cue_sample(ev, item.path)) is not None:
                self.samples[item.camera].append(sample)
                self.source[item.camera] = "live stills of this camera (role=calibrate)"
        self.videos = [
            i for i in items if i.role == "present" and i.label != "not_a_presentation" and not i.still
        ]
        for k, item in enumerate(self.videos):
            progress(f"pad: features {k + 1}/{len(self.videos)} {item.path.name}")
            clip = ev.clip(item)
            features = clip_features(ev, clip)
            clip.save()
            self.yaw[item.path] = [np.nan if f is None else f[1] for f in features]
            if item.annotated:
                self.lags += onset_lags(item, features, clip.fps, ev.config.liveness)
            if propose_all or not item.annotated:
                item = self.videos[k] = self._proposed(item, features, clip.fps, ev.config.liveness)
            if item.bona_fide:
                self.samples[item.camera] += _chunk_samples(features, clip.fps)
                self.source.setdefault(
                    item.camera, "this camera's bona fide clip (original frames, 1 s chunks)"
                )
        self.calibrations = {cam: _calibration(s) for cam, s in self.samples.items()}

    def _proposed(self, item: Item, features, fps: float, config) -> Item:
        proposed = motions.propose(features, fps, config)
        row: dict[str, Any] = {
            "path": str(item.path),
            "label": item.label,
            "split": item.split,
            "proposed": " ".join(f"{m.kind}@{m.onset}-{m.end}" for m in proposed),
        }
        if item.annotated:
            row["agreement"] = motions.agreement(proposed, item.motions)
        self.proposals.append(row)
        return replace(item, motions=proposed, annotated=False)

    def conditions(self, camera: str) -> list[CueCalibration | None]:
        cal = self.calibrations.get(camera)
        return [None, cal] if cal is not None else [None]


def _bona_fide_runs(ev, clip, plan, seeds, names, cannot) -> list[Run]:
    item = clip.item
    todo = [c for c, steps in ev.challenges.items() if all(_answerable(item, s) for s in steps)]
    by = "annotation" if item.annotated else "proposal"
    cannot += [
        {"path": str(item.path), "camera": item.camera, "challenge": c, "by": by}
        for c in ev.challenges
        if c not in todo
    ]
    runs = []
    for variant in names:
        ev.progress(f"pad: {item.path.name} {variant}")
        # Calibrated: on the original pixels only (with the shipped step-up the cue adds a step, it never
        # rejects; the variants test the models and the challenge, which the calibration does not touch).
        conditions = plan.conditions(item.camera) if variant == "original" else [None]
        for challenge in todo:
            for condition in conditions:
                runs += [ev.clip_run(clip, variant, challenge, "answer", s, condition) for s in range(seeds)]
        clip.save()
    return runs


def _attack_runs(ev, clip, plan, seeds) -> list[Run]:
    ev.progress(f"pad: {clip.item.path.name}")
    runs = []
    for attacker in ("play", "scrub"):
        for condition in plan.conditions(clip.item.camera):
            runs += [ev.clip_run(clip, "original", "shipped", attacker, s, condition) for s in range(seeds)]
    clip.save()
    return runs


@dataclass(frozen=True)
class PadOptions:
    seeds: int = 10
    tries: int = 2  # walk-ups per person
    with_variants: bool = True  # the robustness variants of every bona fide clip
    # Every video's motions proposed from its traces, even where the manifest annotates them (the report then
    # compares the two); otherwise only where it does not.
    propose_motions: bool = False
    # The terminal config whose vision settings (challenge steps, retries, thresholds) are evaluated; None: the
    # shipped defaults.
    vision: VisionConfig | None = None


def evaluate_pad(
    items: list[Item], store: Any, options: PadOptions, cache_dir: Path | None, progress: Progress
) -> dict[str, Any]:
    seeds, tries, with_variants = options.seeds, options.tries, options.with_variants
    ev = Evaluator(store, cache_dir, progress, tries, options.vision)
    plan = _Plan(ev, items, progress, options.propose_motions)
    names = list(variants.VARIANTS) if with_variants else ["original"]
    runs: list[Run] = []
    cannot: list[dict[str, Any]] = []
    for item in plan.videos:
        clip = ev.clip(item)
        clip.yaw = plan.yaw[item.path]
        if item.bona_fide:
            runs += _bona_fide_runs(ev, clip, plan, seeds, names, cannot)
        else:
            runs += _attack_runs(ev, clip, plan, seeds)
        del clip
    stills = [i for i in items if i.still and i.role == "present" and i.label != "not_a_presentation"]
    for k, item in enumerate(stills):
        progress(f"pad: still {k + 1}/{len(stills)} {item.path.name}")
        for condition in plan.conditions(item.camera):
            n = min(seeds, STILL_SEEDS if condition is None else 1)
            runs += [ev.still_run(item, "shipped", s, condition) for s in range(n)]
    return {
        "runs": [r.as_dict() for r in runs],
        "onset_lags": plan.lags,
        "cannot_answer_by_annotation": cannot,
        "motion_proposals": plan.proposals,
        "excluded": [{"path": str(i.path), "note": i.note} for i in items if i.label == "not_a_presentation"],
        "calibration": {
            cam: {
                "samples": len(plan.samples[cam]),
                "calibrated": cal is not None,
                "source": plan.source.get(cam, ""),
            }
            for cam, cal in plan.calibrations.items()
        },
        "config": {
            "seeds": seeds,
            "still_seeds": min(seeds, STILL_SEEDS),
            "tries": tries,
            "liveness": ev.config.liveness.model_dump(mode="json"),
            "changed": _changed(VisionConfig().model_dump(mode="json"), ev.config.model_dump(mode="json")),
            "variants": names,
            "motion_rules": motions.rules(ev.config.liveness),
        },
    }


def _changed(shipped: dict[str, Any], evaluated: dict[str, Any], prefix: str = "vision") -> dict[str, Any]:
    """The evaluated config's settings that differ from the shipped ones, by dotted key."""
    out: dict[str, Any] = {}
    for key, value in evaluated.items():
        if isinstance(value, dict) and isinstance(shipped.get(key), dict):
            out.update(_changed(shipped[key], value, f"{prefix}.{key}"))
        elif value != shipped.get(key):
            out[f"{prefix}.{key}"] = value
    return out


def _answerable(item: Item, step: str) -> bool:
    return item.can("blink") if step == "blink" else item.can("turn_left") or item.can("turn_right")


def summarise(result: dict[str, Any]) -> dict[str, Any]:
    """BPCER/APCER tables from the runs (see the module docstring)."""
    runs = result["runs"]
    bona = [r for r in runs if r["label"] == "bona_fide"]
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in bona:
        groups[
            (r["camera"], Path(r["path"]).name, r["split"], r["challenge"], r["variant"], r["calibrated"])
        ].append(r)
    bpcer_rows = []
    for (camera, clip, split, challenge, variant, calibrated), rs in sorted(groups.items()):
        decided = [r for r in rs if r["outcome"] != "cannot_answer"]
        fails = [r for r in decided if r["outcome"] == "fail"]
        first = [r for r in decided if r["outcome"] == "pass" and r["tries_used"] == 1]
        bpcer_rows.append(
            {
                "camera": camera,
                "clip": clip,
                "split": split,
                "challenge": challenge,
                "variant": variant,
                "calibrated": calibrated,
                "runs": len(rs),
                "cannot_answer": len(rs) - len(decided),
                "bpcer_2_tries": len(fails) / len(decided) if decided else None,
                "bpcer_1_try": 1 - len(first) / len(decided) if decided else None,
                "mean_tries": float(np.mean([r["tries_used"] for r in decided])) if decided else None,
                "mean_step_tries": float(np.mean([t["step_tries"] for r in decided for t in r["tries"]]))
                if decided
                else None,
                "fail_reasons": dict(
                    Counter(
                        c
                        for r in fails
                        for t in r["tries"]
                        for c in t["reasons"]
                        if not c.endswith("_passed") and c != "liveness.step_up"
                    )
                ),
            }
        )
    attacks: dict[tuple, list[dict]] = defaultdict(list)
    for r in runs:
        if r["label"] != "bona_fide":
            attacks[(r["label"], r["calibrated"])].append(r)
    apcer_rows = []
    for (label, calibrated), rs in sorted(attacks.items()):
        per_pai: dict[tuple, list[dict]] = defaultdict(list)
        for r in rs:
            per_pai[(Path(r["path"]).name, r["attacker"])].append(r)
        rates = {
            f"{p} ({a})": sum(x["outcome"] == "pass" for x in v) / len(v) for (p, a), v in per_pai.items()
        }
        worst = max(rates.items(), key=lambda kv: kv[1])
        apcer_rows.append(
            {
                "attack_type": ATTACK_NAMES.get(label, label),
                "calibrated": calibrated,
                "runs": len(rs),
                "instruments": len(per_pai),
                "accepted": sum(r["outcome"] == "pass" for r in rs),
                "apcer_pooled": sum(r["outcome"] == "pass" for r in rs) / len(rs),
                "apcer_worst": worst[1],
                "worst_instrument": worst[0],
                "reasons": dict(
                    Counter(
                        c
                        for r in rs
                        for t in r["tries"]
                        for c in t["reasons"]
                        if not c.endswith("_passed") and c != "liveness.step_up"
                    )
                ),
            }
        )
    lags = [x["lag_s"] for x in result["onset_lags"] if x["lag_s"] is not None]
    return {
        "bpcer": bpcer_rows,
        "apcer": apcer_rows,
        "lag_s": {
            "n": len(lags),
            "missed": sum(x["lag_s"] is None for x in result["onset_lags"]),
            "min": min(lags) if lags else None,
            "max": max(lags) if lags else None,
            "p50": float(np.median(lags)) if lags else None,
        },
    }
