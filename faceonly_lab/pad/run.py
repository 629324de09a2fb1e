"""Run the shipped challenge on every manifest item, seed, variant and attacker model; one record per run.

A run is one person (or attack) walking up to the terminal up to `tries` times: each try is a fresh track
through the real VisionPipeline (quality gate, tracker, liveness session with its retries, cues), with the
models' outputs served from the per-frame cache. The presenter (faceonly_lab.pad.presenter) decides what the
camera sees; the pipeline's verdict is the only thing that decides the outcome.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from device.config.vision import LivenessConfig, VisionConfig
from device.contracts import FaceObservation, Frame, Prompt
from device.vision.embed import Embedder, FaceEncoder
from device.vision.liveness.calibration import CueCalibration
from device.vision.pipeline import VisionPipeline
from device.vision.replay import ReplaySource
from device.vision.sources import iter_frames
from device.vision.stills import load_image
from faceonly_lab.pad import variants
from faceonly_lab.pad.cache import ModelMemo, cache_path, file_digest
from faceonly_lab.pad.manifest import Item
from faceonly_lab.pad.presenter import ClipPresenter, PhotoPresenter

WALL_EPOCH = 1_800_000_000.0  # frames carry a wall-clock stamp; durations run on the virtual clock
# The challenges a bona fide clip is run under: the terminal's own steps ("shipped": [vision.liveness] steps of
# the evaluated config), and each step alone.
SINGLE_STEP_CHALLENGES: dict[str, tuple[str, ...]] = {"turn": ("turn",), "blink": ("blink",)}
Progress = Callable[[str], None]


@dataclass
class Try:
    decision: str  # accepted | rejected
    reasons: list[str]  # reason codes
    step_tries: int  # steps asked again inside the challenge, plus one
    asked: list[str]
    cannot_answer: list[str]


@dataclass
class Run:
    path: str
    label: str
    camera: str
    person: str
    split: str
    variant: str
    challenge: str
    attacker: str  # answer | play | scrub | photo
    calibrated: bool
    seed: int
    tries: list[Try] = field(default_factory=list)

    @property
    def outcome(self) -> str:
        """pass (accepted within the tries) | fail | cannot_answer (asked for a motion the clip lacks)."""
        if any(t.decision == "accepted" for t in self.tries):
            return "pass"
        if self.attacker == "answer" and any(t.cannot_answer for t in self.tries):
            return "cannot_answer"
        return "fail"

    @property
    def tries_used(self) -> int:
        for k, t in enumerate(self.tries, start=1):
            if t.decision == "accepted":
                return k
        return len(self.tries)

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "label": self.label,
            "camera": self.camera,
            "person": self.person,
            "split": self.split,
            "variant": self.variant,
            "challenge": self.challenge,
            "attacker": self.attacker,
            "calibrated": self.calibrated,
            "seed": self.seed,
            "outcome": self.outcome,
            "tries_used": self.tries_used,
            "tries": [t.__dict__ for t in self.tries],
        }


@dataclass
class Clip:
    """A decoded clip and its per-variant model caches (kept open while the clip is evaluated)."""

    item: Item
    frames: list[np.ndarray]
    fps: float
    evaluator: Evaluator
    memos: dict[str, ModelMemo] = field(default_factory=dict)
    yaw: list[float] | None = None  # head yaw per original frame (NaN: no face): where its presenter waits

    def memo(self, variant: str) -> ModelMemo:
        pixels = variants.pixels_variant(variant)
        if pixels not in self.memos:
            self.memos[pixels] = self.evaluator.memo(self.item, pixels)
        return self.memos[pixels]

    def save(self) -> None:
        for memo in self.memos.values():
            memo.save()


class _Recorder:
    def __init__(self) -> None:
        self.new: list[Prompt] = []

    def publish(self, prompt: Prompt) -> None:
        self.new.append(prompt)

    def listening(self) -> bool:
        return True


class Evaluator:
    def __init__(
        self,
        store: Any,
        cache_dir: Path | None,
        progress: Progress,
        tries: int = 2,
        config: VisionConfig | None = None,
    ) -> None:
        from device.vision.detect import FaceDetector
        from device.vision.landmarks import FaceMeshModel, IrisModel

        self.config = config or VisionConfig()
        c = self.config
        self.detector = FaceDetector(store, c.detector, c.detector_min_score, c.nms_iou)
        self.mesh, self.iris = FaceMeshModel(store), IrisModel(store)
        self.embedder = Embedder(store)
        self.models_digest = "".join(
            store.entry(n).sha256[:4] for n in (f"detector_{c.detector}", "face_landmark", "iris_landmark")
        )
        self.cache_dir, self.progress, self.tries = cache_dir, progress, tries
        self.challenges = {"shipped": tuple(c.liveness.steps), **SINGLE_STEP_CHALLENGES}

    # ---- frames --------------------------------------------------------------------------------------------
    @staticmethod
    def decode(path: Path) -> tuple[list[np.ndarray], float]:
        frames, times = [], []
        with iter_frames(ReplaySource(path, pace="fast")) as source:
            for frame in source:
                frames.append(frame.image.copy())
                times.append(frame.timestamp)
        span = times[-1] - times[0] if len(times) > 1 else 0.0
        fps = (len(times) - 1) / span if span > 0 else 30.0
        return frames, fps

    def memo(self, item: Item, variant: str) -> ModelMemo:
        path = cache_path(
            self.cache_dir, file_digest(item.path), variants.pixels_variant(variant), self.models_digest
        )
        return ModelMemo(self.detector, self.mesh, self.iris, path)

    def clip(self, item: Item) -> Clip:
        frames, fps = self.decode(item.path)
        return Clip(item, frames, fps, self)

    def _pipeline(
        self, memo: ModelMemo, steps: tuple[str, ...], seed: int, calibration: CueCalibration | None
    ):
        live = self.config.liveness.model_copy(update={"steps": steps, "seed": seed})
        config = self.config.model_copy(update={"liveness": LivenessConfig.model_validate(live.model_dump())})
        sink = _Recorder()
        encoder = FaceEncoder(self.embedder, memo.mesh_model)  # type: ignore[arg-type]
        pipeline = VisionPipeline(config, memo, encoder, memo.iris_model, sink, calibration)  # type: ignore[arg-type]
        pipeline.learn_calibration = False  # the evaluation never changes what it measures with
        return pipeline, sink

    # ---- one try -------------------------------------------------------------------------------------------
    def _try(self, memo: ModelMemo, presenter: Any, image_of, steps, seed, calibration) -> Try:
        pipeline, sink = self._pipeline(memo, steps, seed, calibration)
        limit = self.config.max_decision_s + 2.0
        t, k = 0.0, 0
        observations: list[FaceObservation] = []
        while t <= limit and not observations:
            key, image = image_of(presenter, t)
            memo.frame = key
            frame = Frame(
                index=k, timestamp=WALL_EPOCH + t, monotonic=t, image=image
            )  # durations: virtual time
            observations = pipeline.process(frame)
            for prompt in sink.new:
                presenter.prompt(prompt, t)
            sink.new.clear()
            t += presenter.dt
            k += 1
        observations = observations or pipeline.flush()
        if not observations:
            return Try(
                "rejected",
                ["track.never_good_enough"],
                1,
                list(presenter.asked),
                list(presenter.cannot_answer),
            )
        obs = observations[0]
        codes = [getattr(r, "code", str(r)) for r in obs.reasons]
        step_tries = int(obs.liveness.get("tries", 1))
        return Try(obs.decision, codes, step_tries, list(presenter.asked), list(presenter.cannot_answer))

    def clip_run(
        self, clip: Clip, variant: str, challenge: str, attacker: str, seed: int, calibration
    ) -> Run:
        run = self._run(clip.item, variant, challenge, attacker, seed, calibration)
        step = variants.frame_step(variant)
        pixels = variants.pixels_variant(variant)
        memo = clip.memo(variant)

        def image_of(presenter: ClipPresenter, t: float) -> tuple[int, np.ndarray]:
            index = presenter.frame(t)
            return index, variants.apply(pixels, clip.frames[index], index)

        for attempt in range(self.tries):
            rng = random.Random(f"{clip.item.path.name}|{variant}|{challenge}|{attacker}|{seed}|{attempt}")
            # A person waits holding still; an attacker parks the recording where it always did (the longest
            # stretch), so that this choice never weakens an attack.
            still = clip.yaw if attacker == "answer" else None
            presenter = ClipPresenter(
                len(clip.frames), clip.fps, clip.item.motions, rng, attacker, step, still
            )
            outcome = self._try(
                memo, presenter, image_of, self.challenges[challenge], seed * 10 + attempt, calibration
            )
            run.tries.append(outcome)
            if outcome.decision == "accepted":
                break
        return run

    def still_run(self, item: Item, challenge: str, seed: int, calibration: CueCalibration | None) -> Run:
        run = self._run(item, "original", challenge, "photo", seed, calibration)
        still = load_image(item.path)
        memo = ModelMemo(self.detector, self.mesh, self.iris, None)

        def image_of(presenter: PhotoPresenter, t: float) -> tuple[None, np.ndarray]:
            return None, presenter.render(t)

        for attempt in range(self.tries):
            rng = random.Random(f"{item.path.name}|{challenge}|photo|{seed}|{attempt}")
            presenter = PhotoPresenter(still, rng)
            outcome = self._try(
                memo, presenter, image_of, self.challenges[challenge], seed * 10 + attempt, calibration
            )
            run.tries.append(outcome)
            if outcome.decision == "accepted":
                break
        return run

    @staticmethod
    def _run(item: Item, variant: str, challenge: str, attacker: str, seed: int, calibration) -> Run:
        calibrated = calibration is not None and calibration.calibrated
        return Run(
            str(item.path),
            item.label,
            item.camera,
            item.person,
            item.split,
            variant,
            challenge,
            attacker,
            calibrated,
            seed,
        )
