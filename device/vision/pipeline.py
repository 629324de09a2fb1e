"""Frames in, one FaceObservation per track and pass out: detect -> track -> quality -> liveness -> embed.

Per track the pipeline keeps only small copies: the aligned embedder chip and the face crop (box + margin)
of its best good frame, never the frame. The face mesh runs on every new best frame whatever the liveness
policy (the chip is aligned on it) and on every frame of a pending challenge; one run serves both. A track
is decided once: "accepted" as soon as liveness passes (embedded from its best frame), "rejected" when
liveness fails, the decision takes too long, or the track ends without qualifying (with the most frequent
reasons). Tracks shorter than a few frames (detector flicker) end silently and are counted.

An exception in a stage never stops the service: in detection (or tracking) the frame is dropped; in a
track's stages (quality, landmarks, align, liveness, embed) that track is dropped, rejected with reason
`track.stage_failed`. Both are counted per stage (device.vision.faults; health's `stage_failures` alarm).

Size (~500 lines): one track's path through the stages in order, readable top to bottom; every stage
itself lives in its own module (detect, track, quality, landmarks, align, liveness, embed).

With the challenge policy but no prompt channel there is nobody to ask: the pipeline then runs passive
liveness, says so once in the log and in stats(), and every observation carries that reason.

Time: the liveness sessions measure every duration (pauses, step limits, onset, the decision timeout) on
`clock`: by default the monotonic capture time of the frame being processed (a replay's recorded time), never
its wall-clock stamp, which NTP may step.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from device.config import Config
from device.config.vision import VisionConfig
from device.contracts import (
    Detection,
    FaceGuide,
    FaceObservation,
    Frame,
    GuideSink,
    Prompt,
    PromptSink,
    Reason,
)
from device.vision.align import AlignedChip
from device.vision.detect import FaceDetector
from device.vision.embed import Embedder, FaceEncoder
from device.vision.facecrop import FaceCrop, cut_face_crop
from device.vision.faults import StageFaults
from device.vision.landmarks import FaceMesh, FaceMeshModel, IrisModel, trusted_xy
from device.vision.liveness.calibration import CueCalibration, CueSample
from device.vision.liveness.cues import edge_cue, high_frequency_share
from device.vision.liveness.features import eye_openness, mesh_motion
from device.vision.liveness.irisgate import IrisGate
from device.vision.liveness.session import Clock, LiveFrame, LivenessSession
from device.vision.meshpoints import GUIDE_POINTS, eyelid_opening
from device.vision.quality import QualityGate, QualityResult, face_patch
from device.vision.tracker import Tracker
from device.vision.window import RecentWindow

log = logging.getLogger(__name__)

LEFT = Reason("track.left", "left before a decision")
NO_CHANNEL = Reason(
    "liveness.no_prompt_channel", "no prompt channel: running WITHOUT a challenge (passive liveness only)"
)
# fps and latencies are over the last STATS_WINDOW_S seconds, not since start
STATS_WINDOW_S = 10.0
STAGES = ("detect", "track", "quality", "landmarks", "align", "liveness", "embed")
# The replay cues (2+ ms: the bezel search reads a region 2.2x the face) run on the 1st, 5th, 9th... good
# frame of a track: their score is a median over the track, and neighbouring frames repeat each other.
REPLAY_CUE_STRIDE = 4
# (stage, ms) for every stage run: `faceonly bench` collects each sample; the service leaves it None.
StageHook = Callable[[str, float], None]
# (frame, its detections) after detection: the camera's face-metered exposure control listens here.
FacesHook = Callable[[Frame, list[Detection]], None]
# A quality problem that lasts this many frames of a track is shown to the person as a hint, once.
HINT_AFTER_FRAMES = 8


def _box_tuple(box: np.ndarray) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = (float(v) for v in box)
    return x0, y0, x1, y1


@dataclass
class _Best:
    score: float
    t: float
    box: tuple[float, float, float, float]
    quality: dict[str, float]
    chip: AlignedChip
    face_crop: FaceCrop


@dataclass
class _Track:
    session: LivenessSession
    iris_gate: IrisGate
    first_seen: float  # frame timestamps: what the observation says
    last_seen: float
    started: float  # frame.monotonic of the first frame: the track's age runs on it
    frames: int = 0
    good_frames: int = 0
    rejections: Counter = field(default_factory=Counter)
    best: _Best | None = None
    last_box: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    last_quality: dict[str, float] = field(default_factory=dict)
    prev_nose: np.ndarray | None = None
    done: bool = False
    cues: list[CueSample] = field(default_factory=list)
    bad_run: Counter = field(default_factory=Counter)  # consecutive frames each quality reason held
    hinted: set[str] = field(default_factory=set)


class VisionPipeline:
    def __init__(
        self,
        config: VisionConfig,
        detector: FaceDetector,
        encoder: FaceEncoder,
        iris: IrisModel | None,
        prompt_sink: PromptSink | None = None,
        calibration: CueCalibration | None = None,
    ) -> None:
        self.config = config
        self._detector, self._encoder, self._iris = detector, encoder, iris
        self._mesh = encoder.mesh_model
        self._tracker = Tracker(config.tracker)
        self._quality = QualityGate(config.quality)
        self._tracks: dict[int, _Track] = {}
        self._latency = {s: RecentWindow(STATS_WINDOW_S) for s in STAGES}
        self._frame_times = RecentWindow(STATS_WINDOW_S)
        self._counts: Counter[str] = Counter()
        self._started: float | None = None
        self.faults = StageFaults()
        self._stage = "track"  # the stage running now: the one to blame if it raises
        self.stage_hook: StageHook | None = None
        self._guides: GuideSink | None = None
        self.faces_hook: FacesHook | None = None
        self.calibration = calibration if calibration is not None else CueCalibration(None)
        self.learn_calibration = True  # successful challenge passes refine the camera's live baseline
        self._frame_time = 0.0
        self._clock: Clock = lambda: self._frame_time
        self.set_prompt_sink(prompt_sink)

    def set_guide_sink(self, sink: GuideSink | None) -> None:
        """Where each tracked face's guide goes (the door screen): geometry and quality codes, no pixels."""
        self._guides = sink

    def set_prompt_sink(self, sink: PromptSink | None) -> None:
        """Attach (or detach) the prompt channel; applies to tracks that start afterwards."""
        self._sink = sink
        policy = self.config.liveness.policy
        self.policy = "passive" if policy == "challenge" and sink is None else policy
        self.liveness_note = NO_CHANNEL if policy == "challenge" and sink is None else f"policy {policy}"

    # ---- stages ----------------------------------------------------------------------------------------
    def _timed(self, stage: str, t0: float) -> float:
        now = time.perf_counter()
        ms = (now - t0) * 1000.0
        self._latency[stage].add(ms)
        if self.stage_hook is not None:
            self.stage_hook(stage, ms)
        return now

    def _detect(self, frame: Frame) -> list[Detection]:
        small = frame.detect_image
        if small is None:
            return self._detector.detect(frame.image)
        # picamera2 lores stream: same field of view, smaller; map boxes back to the main stream.
        sx = frame.image.shape[1] / small.shape[1]
        sy = frame.image.shape[0] / small.shape[0]
        scale = np.array([sx, sy], np.float32)
        return [
            Detection(box=d.box * np.tile(scale, 2), keypoints=d.keypoints * scale, score=d.score)
            for d in self._detector.detect(small)
        ]

    def process(self, frame: Frame) -> list[FaceObservation]:
        if self._started is None:
            self._started = time.monotonic()
            if self.policy != self.config.liveness.policy:
                log.warning(NO_CHANNEL)  # said once, when it starts to matter (the sink may come late)
        self._counts["frames"] += 1
        self._frame_times.add()
        self._frame_time = frame.monotonic
        t0 = time.perf_counter()
        try:
            self._stage = "detect"
            detections = self._detect(frame)
            t0 = self._timed("detect", t0)
            if self.faces_hook is not None:
                self.faces_hook(frame, detections)
            self._stage = "track"
            update = self._tracker.update(detections, frame.monotonic)
            t0 = self._timed("track", t0)
        except Exception as exc:  # noqa: BLE001 - a failing stage drops this frame, never the service
            self.faults.record(self._stage, exc, f"frame {frame.index}")
            return []
        out = []
        for tid in update.ended:
            out += self._guarded(tid, partial(self._end, tid, frame.timestamp, LEFT))
            self._tracks.pop(tid, None)
        for tid, det in update.matched:
            others = [d.box for d in detections if d is not det]
            out += self._guarded(tid, partial(self._process_face, frame, tid, det, others))
        return out

    def _guarded(self, tid: int, step: Callable[[], FaceObservation | None]) -> list[FaceObservation]:
        """The observation `step` finishes for track `tid`; if a stage raises, the track is dropped."""
        try:
            obs = step()
        except Exception as exc:  # noqa: BLE001 - a failing stage drops this track, never the service
            self.faults.record(self._stage, exc, f"track {tid}")
            obs = self._dropped(tid)
        return [obs] if obs is not None else []

    def _dropped(self, tid: int) -> FaceObservation | None:
        """The rejected observation of a track a stage failed on (None if it had one already): made only of
        what the track holds, so the failing stage is not run again."""
        tr = self._tracks.get(tid)
        if tr is None or tr.done:
            return None
        tr.done = True  # its later frames are ignored until the tracker ends it
        self._counts["rejected"] += 1
        return FaceObservation(
            track_id=tid,
            decision="rejected",
            first_seen=tr.first_seen,
            last_seen=tr.last_seen,
            best_frame_time=tr.last_seen,
            box=tr.last_box,
            quality=dict(tr.last_quality),
            liveness={},
            reasons=(Reason("track.stage_failed", f"the {self._stage} stage failed on this track"),),
        )

    def _process_face(
        self, frame: Frame, tid: int, det: Detection, others: list[np.ndarray]
    ) -> FaceObservation | None:
        t = frame.timestamp
        tr = self._tracks.get(tid)
        if tr is None:
            self._stage = "liveness"
            session = LivenessSession(
                tid,
                self.config.liveness,
                self.policy,
                self._sink,
                self._clock,
                self.config.max_decision_s,
                self.calibration.calibrated,
            )
            tr = _Track(session, IrisGate(self.config.liveness), t, t, frame.monotonic)
            self._tracks[tid] = tr
        tr.last_seen, tr.frames = t, tr.frames + 1
        tr.last_box = _box_tuple(det.box)
        if tr.done:
            return None
        t0 = time.perf_counter()
        self._stage = "quality"
        q = self._quality.assess(frame.image, det)
        candidate = q.ok and (tr.best is None or q.score > tr.best.score)
        t0 = self._timed("quality", t0)
        challenge = self.policy == "challenge" and tr.session.status == "pending"
        self._stage = "landmarks"
        mesh = None
        if self._mesh is not None and (candidate or challenge):
            mesh = self._mesh.run(frame.image, det)
            if q.ok or q.metrics.get("brightness", 255.0) < self.config.quality.dim_brightness:
                q = self._quality.with_mesh(q, mesh)  # a dim face: the mesh says whether it is too dark
        new_best = candidate and q.ok
        tr.last_quality = q.metrics
        if q.ok:
            tr.good_frames += 1
        else:
            tr.rejections.update(r.split(" (")[0] for r in q.reasons)
        self._hint(tr, tid, q, t)
        live = self._live_frame(frame, det, q, tr, mesh if challenge else None)
        if self._guides is not None:
            self._guides.guide(_face_guide(frame, tid, det, q, mesh))
        t0 = self._timed("landmarks", t0)
        if new_best:
            self._stage = "align"
            self._keep_best(tr, frame, det, q, mesh, others)
            t0 = self._timed("align", t0)
        self._stage = "liveness"
        result = tr.session.update(live)
        self._timed("liveness", t0)
        if result.status == "passed" and tr.best is not None:
            self._learn(tr)
            return self._finish(tid, "accepted")
        if result.status == "failed":
            return self._finish(tid, "rejected")
        return None  # the session times the decision out on its own clock (max_decision_s)

    def _hint(self, tr: _Track, tid: int, q: QualityResult, t: float) -> None:
        """Tell the person what keeps the face unusable (too dark, too far...), once per reason and track."""
        held = {r.code for r in q.reasons if isinstance(r, Reason)}
        tr.bad_run = Counter({code: tr.bad_run[code] + 1 for code in held})
        if self._sink is None:
            return
        for code, frames in tr.bad_run.items():
            if frames >= HINT_AFTER_FRAMES and code.startswith("quality.") and code not in tr.hinted:
                tr.hinted.add(code)
                self._sink.publish(Prompt(tid, "hint", None, 0, 0, 0.0, code, t))

    def _learn(self, tr: _Track) -> None:
        """A challenge passed: its cue values are one more live pass of this camera (when learning is on)."""
        if not (self.learn_calibration and self.policy == "challenge" and tr.cues):
            return
        sample = CueSample(
            float(np.median([c.share for c in tr.cues])), float(np.median([c.edges for c in tr.cues]))
        )
        self.calibration.learn(sample, tr.session.result().scores.get("replay_risk"))

    def _keep_best(
        self,
        tr: _Track,
        frame: Frame,
        det: Detection,
        q: QualityResult,
        mesh: FaceMesh | None,
        others: list[np.ndarray],
    ) -> None:
        face_crop = cut_face_crop(frame.image, det, trusted_xy(mesh), others, self.config.crop_margin)
        tr.best = _Best(
            score=q.score,
            t=frame.timestamp,
            box=_box_tuple(det.box),
            quality=q.metrics,
            chip=self._encoder.chip(frame.image, det, mesh),
            face_crop=face_crop,
        )

    def _live_frame(
        self, frame: Frame, det: Detection, q: QualityResult, tr: _Track, mesh: FaceMesh | None
    ) -> LiveFrame:
        """What liveness needs of this frame; `mesh` is given only while a challenge is pending."""
        risk = None
        if q.ok and self.policy != "off" and (tr.good_frames - 1) % REPLAY_CUE_STRIDE == 0:
            patch = face_patch(frame.image, det.box, shrink=0.1)
            if patch is not None:
                sample = CueSample(high_frequency_share(patch), edge_cue(frame.image, det.box))
                tr.cues.append(sample)
                risk = self.calibration.scores(sample, self.config.liveness.sharpness_ref).risk
        yaw = q.metrics["yaw"]
        if mesh is None:
            return LiveFrame(frame.timestamp, frame.index, yaw, risk=risk, good=q.ok)
        moved = mesh_motion(mesh.xy, tr.prev_nose, self.config.liveness)
        tr.prev_nose, yaw, steady = moved.nose, moved.yaw, moved.steady
        openness = None
        if (
            self._iris is not None
            and steady
            and tr.session.wants_eyes
            and tr.iris_gate.due(frame.monotonic, eyelid_opening(mesh.xy), tr.session.eyes_urgent)
        ):
            openness = eye_openness(self._iris, frame.image, mesh)
        return LiveFrame(
            frame.timestamp,
            frame.index,
            yaw,
            mesh.xy.copy(),
            openness,
            steady,
            face_aspect=moved.aspect,
            risk=risk,
            good=q.ok,
        )

    # ---- decisions -------------------------------------------------------------------------------------
    def _end(self, tid: int, t: float, reason: Reason) -> FaceObservation | None:
        tr = self._tracks.get(tid)
        if tr is None:
            return None
        if tr.done:
            del self._tracks[tid]
            return None
        if tr.frames < self.config.tracker.min_frames_for_event:
            del self._tracks[tid]
            self._counts["short_tracks"] += 1
            return None
        if tr.good_frames == 0:
            common = ", ".join(r for r, _ in tr.rejections.most_common(2))
            if common:
                reason = Reason("track.never_good_enough", f"never good enough: {common}")
        self._stage = "liveness"
        tr.session.give_up(reason, t)
        obs = self._finish(tid, "rejected")
        del self._tracks[tid]
        return obs

    def _finish(self, tid: int, decision: str) -> FaceObservation:
        tr = self._tracks[tid]
        self._stage = "liveness"
        live = tr.session.result()
        reasons = list(live.reasons)
        if self.policy != self.config.liveness.policy:
            reasons.append(NO_CHANNEL)
        embedding = probe = None
        best = tr.best
        accepted = decision == "accepted" and best is not None
        if accepted and best is not None:
            t0 = time.perf_counter()
            self._stage = "embed"
            # One invoke: the chip alone. Its mirror image is embedded only if a decision needs it (identity
            # on a close call, a template, a backend that decides): FaceObservation.with_flip.
            probe = self._encoder.embedder.probe(best.chip.image)
            embedding = probe.single
            self._timed("embed", t0)
        self._counts[decision] += 1
        tr.done = True  # only now: a stage that failed above leaves the track to _dropped
        return FaceObservation(
            track_id=tid,
            decision=decision,  # type: ignore[arg-type]
            first_seen=tr.first_seen,
            last_seen=tr.last_seen,
            best_frame_time=best.t if best else tr.last_seen,
            box=best.box if best else tr.last_box,
            quality=dict(best.quality if best else tr.last_quality),
            liveness=live.scores,
            reasons=tuple(reasons),
            embedding=embedding,
            face_crop=best.face_crop.image if accepted and best else None,
            crop_face_box=best.face_crop.face_box if accepted and best else None,
            crop_face_outline=best.face_crop.outline if accepted and best else None,
            embedding_model=self._encoder.embedder.model if accepted else None,
            alignment=best.chip.alignment if accepted and best else None,
            probe="single" if probe is not None else "flip",
            mirror=probe.flip if probe is not None else None,
        )

    @property
    def embedding_dim(self) -> int:
        return self._encoder.embedder.dim

    def flush(self) -> list[FaceObservation]:
        t = max((tr.last_seen for tr in self._tracks.values()), default=0.0)
        ended = self._tracker.finish()
        out = []
        for tid in ended:
            out += self._guarded(tid, partial(self._end, tid, t, LEFT))
        self._tracks.clear()
        return out

    def stats(self) -> dict[str, Any]:
        def ms(window: RecentWindow, q: float) -> float | None:
            value = window.percentile(q)
            return None if value is None else round(value, 2)

        return {
            "schema": 1,
            "frames": self._counts["frames"],
            "window_s": STATS_WINDOW_S,
            "fps": round(self._frame_times.rate(since=self._started), 2) if self._started else 0.0,
            "latency_ms": {s: ms(w, 50) for s, w in self._latency.items()},
            "latency_p95_ms": {s: ms(w, 95) for s, w in self._latency.items()},
            "active_tracks": self._tracker.active,
            "accepted": self._counts["accepted"],
            "rejected": self._counts["rejected"],
            "drops": {"short_tracks": self._counts["short_tracks"]},
            "stage_failures": self.faults.snapshot(),
            "liveness": self.liveness_note,
            "liveness_calibration": self.calibration.status(),
        }


def _face_guide(frame: Frame, tid: int, det: Detection, q: QualityResult, mesh: FaceMesh | None) -> FaceGuide:
    h, w = frame.image.shape[:2]
    scale = np.array([w, h], np.float64)
    points = (mesh.xy[list(GUIDE_POINTS)] if mesh is not None else det.keypoints) / scale
    x0, y0, x1, y1 = (float(v) for v in np.asarray(det.box, np.float64) / np.tile(scale, 2))
    return FaceGuide(
        track_id=tid,
        t=frame.timestamp,
        box=(x0, y0, x1, y1),
        points=tuple((float(x), float(y)) for x, y in points),
        reasons=tuple(r.code for r in q.reasons),
        aspect=w / h,
        mesh_presence=float(mesh.presence) if mesh is not None else None,
    )


def build_pipeline(
    config: Config | VisionConfig,
    model_store: Any,
    prompt_sink: PromptSink | None = None,
    num_threads: int = 1,
    calibration: CueCalibration | None = None,
) -> VisionPipeline:
    """The vision pipeline with every model loaded through `model_store` (sha256-checked).

    `config` is the whole Config (its `vision` section and `service.num_threads` are used) or a VisionConfig.
    """
    if isinstance(config, VisionConfig):
        vision = config
    else:
        vision, num_threads = config.vision, config.service.num_threads
    detector = FaceDetector(
        model_store, vision.detector, vision.detector_min_score, vision.nms_iou, num_threads=num_threads
    )
    if vision.embedder_runtime != "litert":
        log.info("the face embedder runs on %s (vision.embedder_runtime)", vision.embedder_runtime)
    # The mesh aligns the embedder's chip under every policy; the iris model serves only the blink challenge.
    encoder = FaceEncoder(
        Embedder(model_store, num_threads=num_threads, runtime=vision.embedder_runtime),
        FaceMeshModel(model_store, num_threads=num_threads),
    )
    iris = IrisModel(model_store, num_threads=num_threads) if vision.liveness.policy == "challenge" else None
    return VisionPipeline(vision, detector, encoder, iris, prompt_sink, calibration)
