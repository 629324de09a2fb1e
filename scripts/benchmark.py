#!/usr/bin/env python3
"""Speed and memory of the terminal, as numbers: per-model latency, the per-face embedding cost, the
pipeline over a replay, peak RSS.

    .venv/bin/python scripts/benchmark.py [--replay PATH] [--threads 1] [--repeat 50]

Benchmarks print numbers; no test asserts on time (timing tests flake on shared machines).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from device.config import Config
from device.infra.inference import TfliteRunner
from device.infra.modelstore import ModelStore
from device.vision.detect import FaceDetector
from device.vision.embed import Embedder, FaceEncoder
from device.vision.landmarks import FaceMeshModel
from device.vision.pipeline import build_pipeline
from device.vision.sources import iter_frames, open_source


def model_latencies(store: ModelStore, threads: int, repeat: int) -> None:
    print(f"| model | file | ms per call, {threads} thread(s): median | p90 |")
    print("|---|---|---|---|")
    rng = np.random.default_rng(0)
    for name, entry in store.entries.items():
        if entry.kind != "tflite":
            continue
        runner = TfliteRunner(store.interpreter(name, threads))
        inputs = [rng.uniform(0, 1, d["shape"]).astype(np.float32) for d in runner.inputs]
        runner.run(*inputs)  # warm-up: XNNPACK packs weights on the first call
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            runner.run(*inputs)
            times.append((time.perf_counter() - start) * 1e3)
        p90 = float(np.percentile(times, 90))
        print(f"| {name} | {entry.file} | {statistics.median(times):.2f} | {p90:.2f} |")


def _median_ms(fn, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def face_embedding_cost(store: ModelStore, threads: int, repeat: int) -> None:
    """What embedding one face costs on top of detection: face mesh, aligned chip, 2 invokes (chip + mirror)."""
    from skimage.data import astronaut

    frame = np.ascontiguousarray(astronaut()[..., ::-1])
    face = FaceDetector(store, "short_range", num_threads=threads).detect(frame)[0]
    mesh_model = FaceMeshModel(store, num_threads=threads)
    encoder = FaceEncoder(Embedder(store, num_threads=threads), mesh_model)
    mesh = mesh_model.run(frame, face)
    chip = encoder.chip(frame, face, mesh).image
    parts = {
        "face mesh": _median_ms(lambda: mesh_model.run(frame, face), repeat),
        "aligned chip": _median_ms(lambda: encoder.chip(frame, face, mesh), repeat),
        "2 embedder invokes + flip average": _median_ms(lambda: encoder.embedder.embed_chip(chip), repeat),
        "all of it (FaceEncoder.encode)": _median_ms(lambda: encoder.encode(frame, face), repeat),
    }
    print(f"\nper-face embedding cost, {threads} thread(s), scikit-image astronaut (512x512), median ms:")
    for part, ms in parts.items():
        print(f"  {part:36s} {ms:6.2f}")


class CountingPromptSink:
    """Times the challenge path (face mesh + iris every frame) as on a terminal with a screen."""

    def __init__(self) -> None:
        self.prompts = 0

    def publish(self, prompt: object) -> None:
        self.prompts += 1


def pipeline_run(store: ModelStore, replay: str, threads: int) -> None:
    cfg = Config.model_validate({"service": {"num_threads": threads}, "vision": {"replay_pace": "fast"}})
    sink = CountingPromptSink()
    pipeline = build_pipeline(cfg, store, prompt_sink=sink)
    source = open_source(replay, cfg.vision)
    frames = events = 0
    start = time.perf_counter()
    with iter_frames(source) as stream:
        for frame in stream:
            events += len(pipeline.process(frame))
            frames += 1
    events += len(pipeline.flush())
    elapsed = time.perf_counter() - start
    source.close()
    stats = pipeline.stats()
    print(
        f"\npipeline over {replay} (challenge policy): {frames} frames, {events} events, "
        f"{sink.prompts} prompts, {elapsed:.2f} s, {frames / elapsed:.1f} fps"
    )
    print(f"per-stage latency (ms over the last {stats['window_s']:g} s: median, p95):")
    for stage, ms in stats["latency_ms"].items():
        p95 = stats["latency_p95_ms"][stage]
        print(f"  {stage:12s} {'-' if ms is None else f'{ms:7.2f}'} {'' if p95 is None else f'{p95:7.2f}'}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--replay", default="replay:demo", help="frame source spec (default: the demo replay)"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--models-dir", type=Path, default=None)
    args = parser.parse_args()
    store = ModelStore(args.models_dir)
    model_latencies(store, args.threads, args.repeat)
    face_embedding_cost(store, args.threads, args.repeat)
    pipeline_run(store, args.replay, args.threads)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak RSS: {peak_mb:.0f} MB (python {sys.version.split()[0]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
