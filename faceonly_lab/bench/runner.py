"""The bench's passes over the real pipeline: replays, a steady face held undecided, idle frames, scaling.

Every pass builds a fresh VisionPipeline (its own tracks and liveness sessions) over one set of models,
loaded once through a timing ModelStore and warmed up, so no pass pays XNNPACK's first-invoke packing.
With a peer, each frame goes to our pipeline and then to the peer on the same decoded image before the
next frame is read: both see the same machine noise.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from device.config.vision import VisionConfig
from device.contracts import Frame
from device.identity.thresholds import CurveSet
from device.infra.modelstore import ModelError, ModelStore
from device.vision.detect import FaceDetector
from device.vision.embed import Embedder, FaceEncoder, Runtime
from device.vision.landmarks import FaceMeshModel, IrisModel
from device.vision.pipeline import VisionPipeline
from device.vision.quality import QualityGate
from device.vision.sources import iter_frames, open_source
from faceonly_lab.bench import frames as scenes
from faceonly_lab.bench.identification import BenchGallery, TrackLog, enrol_templates
from faceonly_lab.bench.peer import FaceRecognitionPeer, load_peer
from faceonly_lab.bench.probe import Probe, Samples, TimedStore, floor_comparison, peak_rss_mb, percentiles
from faceonly_lab.bench.publish import PublishPath

WARMUP_FRAMES = 5
STEADY_FPS = 15.0


class CountingSink:
    """A prompt channel that only counts: the challenge runs as on a terminal with a screen."""

    def __init__(self) -> None:
        self.prompts = 0

    def publish(self, prompt: object) -> None:
        self.prompts += 1

    def listening(self) -> bool:
        return True


@dataclass(frozen=True)
class BenchOptions:
    sources: tuple[str, ...] = ("replay:demo",)
    threads: int = 1
    embedder_runtime: Runtime = "litert"
    broker: str | None = None
    protocol: str = "5"
    peer: str | None = None
    steady_frames: int = 60
    idle_frames: int = 60
    scaling_frames: int = 8
    max_frames: int | None = None
    scaling: bool = True
    models_dir: Path | None = None


@dataclass
class _FrameCost:
    ms: float
    cpu_ms: float
    model_ms: float
    face: bool
    observations: list[Any]
    invokes: list[str]  # the models this frame invoked


def steady_config() -> VisionConfig:
    """The challenge held at its blink step (a still face never blinks): mesh on every frame, iris as the
    terminal runs it while a blink is awaited. The prompt comes on the first good frame (no random pause), so
    even a short run measures the held step."""
    liveness = {"steps": ["blink"], "blink_time_s": 20, "prompt_delay_min_s": 0.0, "prompt_delay_max_s": 0.0}
    return VisionConfig.model_validate({"max_decision_s": 120, "liveness": liveness})


class Bench:
    def __init__(self, options: BenchOptions, progress: Callable[[str], None]) -> None:
        self.options = options
        self.progress = progress
        store = ModelStore(options.models_dir)
        failed = [r for r in store.verify() if not r.ok]
        if failed:  # fail closed: a bench of a tampered model measures nothing worth printing
            raise ModelError("; ".join(r.problem for r in failed))
        self.probe = Probe()
        timed = TimedStore(store, self.probe)
        vision = VisionConfig()
        t = options.threads
        self.detector = FaceDetector(timed, vision.detector, vision.detector_min_score, vision.nms_iou, t)
        self.encoder = FaceEncoder(
            Embedder(timed, num_threads=t, runtime=options.embedder_runtime),
            FaceMeshModel(timed, num_threads=t),
        )
        self.iris = IrisModel(timed, num_threads=t)
        curves = CurveSet.from_manifest(store.entry("embedder").info)
        self.gallery = BenchGallery(self.encoder.embedder.dim, curves, self.probe.stage)
        self.peer: FaceRecognitionPeer | None = None
        self.steady_frames: list[tuple[float, list[str]]] = []  # (ms, invokes) of the reference steady pass

    def pipeline(self, config: VisionConfig) -> tuple[VisionPipeline, CountingSink]:
        sink = CountingSink()
        p = VisionPipeline(config, self.detector, self.encoder, self.iris, sink)
        p.stage_hook = self.probe.stage
        return p, sink

    # ---- one frame ------------------------------------------------------------------------------------
    def _frame(self, pipeline: VisionPipeline, frame: Frame) -> _FrameCost:
        samples = self.probe.samples
        samples.start_frame()
        faces_before = len(samples.stages["quality"])
        c0, t0 = time.process_time(), time.perf_counter()
        observations = pipeline.process(frame)
        ms = (time.perf_counter() - t0) * 1000.0
        cpu = (time.process_time() - c0) * 1000.0
        face = len(samples.stages["quality"]) > faces_before
        return _FrameCost(ms, cpu, samples.frame_model_ms, face, observations, list(samples.frame_invokes))

    def _peer(self, image: np.ndarray) -> tuple[float, int] | None:
        return None if self.peer is None else self.peer.run(image)

    # ---- passes ---------------------------------------------------------------------------------------
    def warm_up(self, scene: np.ndarray) -> None:
        pipeline, _ = self.pipeline(steady_config())
        for frame in scenes.stream(scene, WARMUP_FRAMES, STEADY_FPS):
            pipeline.process(frame)
        self.encoder.embedder.embed_chip(np.zeros((150, 150, 3), np.uint8))
        self.probe.new_pass()

    def replay(self, spec: str, publisher: PublishPath) -> dict[str, Any]:  # noqa: PLR0915 - one timed pass; splitting it would split what is timed
        """One replay through pipeline + match + protect/sign (+ outbox/publish/ack with a broker)."""
        samples = self.probe.new_pass()
        pipeline, sink = self.pipeline(VisionConfig(replay_pace="fast"))
        source = open_source(spec, VisionConfig(replay_pace="fast"))
        decode: list[float] = []
        total: list[float] = []
        cpu: list[float] = []
        face: list[float] = []
        idle: list[float] = []
        acks: list[float] = []
        peer_all: list[float] = []
        peer_face: list[float] = []
        ours_face: list[float] = []
        peer_faces = 0
        events = 0
        models_face: list[float] = []
        frames_iter = iter(source.frames())
        try:
            while self.options.max_frames is None or len(total) < self.options.max_frames:
                start = time.perf_counter()
                c0 = time.process_time()
                try:
                    frame = next(frames_iter)
                except StopIteration:
                    break
                d_ms = (time.perf_counter() - start) * 1000.0
                d_cpu = (time.process_time() - c0) * 1000.0
                samples.stage("decode", d_ms)
                try:
                    cost = self._frame(pipeline, frame)
                    out_ms = self._emit(cost.observations, publisher, start, acks)
                    peer = self._peer(frame.image)
                finally:
                    source.release(frame)
                events += len(cost.observations)
                frame_ms = d_ms + cost.ms + out_ms
                decode.append(d_ms)
                total.append(frame_ms)
                cpu.append(d_cpu + cost.cpu_ms)
                (face if cost.face else idle).append(cost.ms)
                if cost.face:
                    models_face.append(cost.model_ms)
                if peer is not None:
                    peer_all.append(d_ms + peer[0])
                    peer_faces += peer[1]
                    if cost.face:
                        peer_face.append(peer[0])
                        ours_face.append(cost.ms)
            flushed = pipeline.flush()
            events += len(flushed)
            self._emit(flushed, publisher, time.perf_counter(), acks)
        finally:
            source.close()
        wall_s = sum(total) / 1000.0
        result: dict[str, Any] = {
            "source": spec,
            "frames": len(total),
            "face_frames": len(face),
            "idle_frames": len(idle),
            "events": events,
            "acked": len(acks),
            "prompts": sink.prompts,
            "wall_s": round(wall_s, 3),
            "fps": round(len(total) / wall_s, 2) if wall_s else 0.0,
            "frame_ms": percentiles(total),
            "face_frame_ms": percentiles(face),
            "idle_frame_ms": percentiles(idle),
            "cpu_ms_per_frame": round(float(np.mean(cpu)), 3) if cpu else 0.0,
            "frame_to_ack_ms": percentiles(acks),
            "outside_inference_share": _outside_share(face, models_face),
            "stages": _stages(samples),
            "models": {m: percentiles(v) for m, v in sorted(samples.models.items())},
        }
        if self.peer is not None:
            peer_wall = sum(peer_all) / 1000.0
            result["peer"] = {
                "wall_s": round(peer_wall, 3),
                "fps": round(len(peer_all) / peer_wall, 3) if peer_wall else 0.0,
                "face_frame_ms": percentiles(peer_face),
                "faces_encoded": peer_faces,
            }
            result["ratio"] = {
                "whole_replay": _ratio(peer_wall, wall_s),
                "face_frame_p50": _ratio(
                    np.median(peer_face) if peer_face else 0, np.median(ours_face) if ours_face else 0
                ),
            }
        return result

    def _emit(
        self, observations: list[Any], publisher: PublishPath, start: float, acks: list[float]
    ) -> float:
        """Match and send each observation; ms spent. A broker ack's latency is taken from frame start."""
        t0 = time.perf_counter()
        for obs in observations:
            obs = self.gallery.match(obs)
            if publisher.send(obs, None, self.probe.stage):
                acks.append((time.perf_counter() - start) * 1000.0)
        return (time.perf_counter() - t0) * 1000.0

    def identification(self, spec: str) -> dict[str, Any]:
        """What an accepted face costs in embedder invokes: the replay once more with passive liveness (a
        recording cannot answer the challenge's random prompts, so under it nothing is accepted), every
        accepted face matched as the terminal matches it, the replay's own person enrolled."""
        samples = self.probe.new_pass()
        config = VisionConfig.model_validate({"replay_pace": "fast", "liveness": {"policy": "passive"}})
        pipeline = VisionPipeline(config, self.detector, self.encoder, self.iris, None)
        tracks = pipeline.faces_hook = TrackLog(config.tracker)
        source = open_source(spec, config)
        observations: list[Any] = []
        try:
            with iter_frames(source) as frames:
                for n, frame in enumerate(frames):
                    if self.options.max_frames is not None and n >= self.options.max_frames:
                        break
                    observations += pipeline.process(frame)
            observations += pipeline.flush()
        finally:
            source.close()
        accepted = [o for o in observations if o.decision == "accepted"]
        invokes = len(samples.models.get("embedder", []))  # the pipeline's: one per accepted face
        templates = enrol_templates(spec, tracks, accepted, self.encoder)
        mark = len(samples.models.get("embedder", []))  # the enrolments' invokes are not the faces'
        outcome = self.gallery.identify_each(accepted, templates)
        invokes += len(samples.models.get("embedder", [])) - mark
        return {"accepted": len(accepted), "embedder_invokes": invokes, **outcome}

    def steady(
        self, scene: np.ndarray, frames: int, label: dict[str, Any], keep: bool = False
    ) -> dict[str, Any]:
        """The same scene frame after frame with the challenge pending: the liveness path's cost. `keep`:
        this is the reference pass whose frames the acceptance compares with the models' floors."""
        samples = self.probe.new_pass()
        pipeline, sink = self.pipeline(steady_config())
        ours, cpu, model, peer_ms, peer_faces = [], [], [], [], 0
        if keep:
            self.steady_frames = []
        for frame in scenes.stream(scene, frames, STEADY_FPS):
            cost = self._frame(pipeline, frame)
            ours.append(cost.ms)
            cpu.append(cost.cpu_ms)
            model.append(cost.model_ms)
            if keep:
                self.steady_frames.append((cost.ms, cost.invokes))
            peer = self._peer(frame.image)
            if peer is not None:
                peer_ms.append(peer[0])
                peer_faces = peer[1]
        stats = pipeline.stats()
        result: dict[str, Any] = {
            **label,
            "frames": frames,
            "faces_detected": len(self.detector.detect(scene)),
            "held_undecided": int(stats["accepted"] + stats["rejected"] == 0),
            "prompts": sink.prompts,
            "frame_ms": percentiles(ours),
            "model_ms": percentiles(model),
            "cpu_ms_per_frame": round(float(np.mean(cpu)), 3),
            "outside_inference_share": _outside_share(ours, model),
            "stages": _stages(samples),
            "models": {m: percentiles(v) for m, v in sorted(samples.models.items())},
        }
        if peer_ms:
            result["peer"] = {"frame_ms": percentiles(peer_ms), "faces_encoded": peer_faces}
            result["ratio"] = {"frame_p50": _ratio(np.median(peer_ms), np.median(ours))}
        return result

    def idle(self, frames: int) -> dict[str, Any]:
        """A 720p frame without a face: what the terminal pays while nobody is there."""
        samples = self.probe.new_pass()
        pipeline, _ = self.pipeline(VisionConfig())
        scene = scenes.tiled_scene(None, 0)
        costs = [self._frame(pipeline, f) for f in scenes.stream(scene, frames, STEADY_FPS)]
        ours = [c.ms for c in costs]
        return {
            "resolution": "720p",
            "frames": frames,
            "frame_ms": percentiles(ours),
            "outside_inference_share": _outside_share(ours, [c.model_ms for c in costs]),
            "stages": _stages(samples),
        }

    def run(self) -> dict[str, Any]:
        o = self.options
        first = open_source(o.sources[0], VisionConfig(replay_pace="fast"))
        try:
            tile = scenes.face_tile(_images(first), self.detector, QualityGate(VisionConfig().quality))
        finally:
            first.close()
        if tile is None:
            raise ValueError(f"no face found in the first {scenes.SCAN_FRAMES} frames of {o.sources[0]}")
        one_face = scenes.tiled_scene(tile, 1)
        self.warm_up(one_face)
        self.progress("bench: our pipeline alone (idle, steady)")
        idle = self.idle(o.idle_frames)
        label = {"resolution": "720p", "faces": 1}
        # Alone, the reference for the models' floors: nothing else runs between its frames.
        steady_alone = self.steady(one_face, o.steady_frames, label, keep=True)
        rss = peak_rss_mb()  # before the peer's models are loaded: the terminal's own footprint
        self.peer = load_peer(o.peer)
        report: dict[str, Any] = {"peak_rss_mb": rss, "idle": idle}
        if self.peer is not None:
            self.progress(f"bench: steady, interleaved with {self.peer.name}")
            report["steady"] = self.steady(one_face, o.steady_frames, label)
            report["steady_alone"] = steady_alone
        else:
            report["steady"] = steady_alone
        publisher = PublishPath(o.broker, o.protocol)
        try:
            report["replays"] = []
            for spec in o.sources:
                self.progress(f"bench: replay {spec}")
                replayed = self.replay(spec, publisher)
                self.progress(f"bench: identification on {spec} (passive liveness, its person enrolled)")
                replayed["identification"] = self.identification(spec)
                report["replays"].append(replayed)
        finally:
            publisher.close()
        if o.scaling:
            report["scaling"] = self.scaling(tile)
        report["floors_ms"] = {m: round(v, 3) for m, v in sorted(self.probe.floors.items())}
        report["face_frame_floor"] = floor_comparison(self.steady_frames, self.probe.floors)
        return report

    def scaling(self, tile: np.ndarray) -> dict[str, list[dict[str, Any]]]:
        n = self.options.scaling_frames
        faces, resolutions = [], []
        for count in scenes.FACE_COUNTS:
            self.progress(f"bench: scaling, {count} face(s) at 720p")
            scene = scenes.tiled_scene(tile, count)
            faces.append(self.steady(scene, n, {"resolution": "720p", "faces": count}))
        one = scenes.tiled_scene(tile, 1)
        for name in scenes.RESOLUTIONS:
            self.progress(f"bench: scaling, one face at {name}")
            resolutions.append(self.steady(scenes.scaled(one, name), n, {"resolution": name, "faces": 1}))
        return {"faces": faces, "resolution": resolutions}


def _images(source) -> Iterable[np.ndarray]:
    with iter_frames(source) as frames:
        for frame in frames:
            yield frame.image.copy()


def _stages(samples: Samples) -> dict[str, dict[str, float | int]]:
    return {s: percentiles(v) for s, v in samples.stages.items()}


def _outside_share(frame_ms: list[float], model_ms: list[float]) -> float:
    """Share of the pipeline's time on these frames spent outside model invokes (OpenCV, numpy, Python)."""
    total = sum(frame_ms)
    return round(max(0.0, 1.0 - sum(model_ms) / total), 4) if total > 0 else 0.0


def _ratio(peer: float, ours: float) -> float:
    return round(float(peer) / float(ours), 2) if ours > 0 else 0.0
