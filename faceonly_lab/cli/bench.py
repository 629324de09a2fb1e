"""`faceonly bench`: per-stage latency, face and idle frame cost, fps, frame-to-ack latency, CPU and RSS
of the real pipeline on replays, next to the face_recognition peer on the same frames (--peer).

The numbers are printed and, with --json, written as a document described by faceonly_lab/bench/schema.json.
No frame pixels are written or printed: only times, counts and the sources' names.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from device.transport.client import PROTOCOLS


def register(sub: argparse._SubParsersAction) -> None:
    b = sub.add_parser("bench", help="measure the pipeline's speed on replays (optionally next to a peer)")
    b.add_argument(
        "--source",
        action="append",
        help="replay:PATH to run (repeatable; default replay:demo); the first also gives the steady face",
    )
    b.add_argument(
        "--threads", type=int, default=1, help="model and OpenCV threads (1 = the reference, ~ one Pi core)"
    )
    b.add_argument("--pin", type=int, metavar="CORE", help="pin the process to this CPU core")
    b.add_argument(
        "--embedder-runtime",
        choices=("litert", "onnxruntime"),
        default="litert",
        help="what runs the embedder (as [vision] embedder_runtime; default litert)",
    )
    b.add_argument("--broker", help="mqtt://host:port: also outbox + publish each event and wait for its ack")
    b.add_argument("--protocol", choices=PROTOCOLS, default="5", help="MQTT protocol version (default 5)")
    b.add_argument("--peer", choices=("face_recognition",), help="run this peer on the same frames")
    b.add_argument("--steady-frames", type=int, default=60, help="frames of the steady (held) face")
    b.add_argument("--scaling-frames", type=int, default=8, help="frames per scaling point (0: no scaling)")
    b.add_argument("--max-frames", type=int, help="stop each replay after this many frames")
    b.add_argument("--models-dir", type=Path, default=None)
    b.add_argument(
        "--json", type=Path, help="also write the figures as JSON here (faceonly_lab/bench/schema.json)"
    )
    b.add_argument(
        "--acceptance",
        action="store_true",
        help="judge each acceptance figure against issue 25's target (holds / MISSED); without it the "
        "figures and the targets are printed, no verdict",
    )
    b.add_argument("--plots", type=Path, help="write PNG plots to this folder (needs the plots extra)")
    b.set_defaults(func=_bench)


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _bench(args: argparse.Namespace) -> int:
    from device.contracts import SourceError
    from device.infra.modelstore import ModelError
    from faceonly_lab.bench import report as rep
    from faceonly_lab.bench.peer import PeerUnavailable
    from faceonly_lab.bench.runner import Bench, BenchOptions

    if args.threads < 1 or args.steady_frames < 1 or args.scaling_frames < 0:
        print("bench: --threads and --steady-frames must be >= 1, --scaling-frames >= 0", file=sys.stderr)
        return 2
    from device.infra.heap import cap_heap_arenas

    cap_heap_arenas()  # the terminal's heap, so that the RSS measured is the terminal's
    if args.pin is not None:
        try:
            os.sched_setaffinity(0, {args.pin})
        except (OSError, ValueError) as exc:
            print(f"bench: cannot pin to core {args.pin}: {exc}", file=sys.stderr)
            return 2
    if args.plots is not None:
        from faceonly_lab.plots.base import require_matplotlib

        try:
            require_matplotlib()
        except ImportError as exc:
            print(f"bench: {exc}", file=sys.stderr)
            return 2
    import cv2

    # OpenCV runs its own thread pool beside LiteRT's: with --threads 1 the whole frame is on one thread,
    # the reference for one Pi core (the service itself leaves OpenCV's default).
    cv2.setNumThreads(args.threads)
    options = BenchOptions(
        sources=tuple(args.source or ("replay:demo",)),
        threads=args.threads,
        embedder_runtime=args.embedder_runtime,
        broker=args.broker,
        protocol=args.protocol,
        peer=args.peer,
        steady_frames=args.steady_frames,
        scaling_frames=args.scaling_frames,
        max_frames=args.max_frames,
        scaling=args.scaling_frames > 0,
        models_dir=args.models_dir,
    )
    started = time.monotonic()
    try:
        body = Bench(options, _progress).run()
    except (ValueError, OSError, ModelError, SourceError, PeerUnavailable) as exc:
        print(f"bench failed: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    document = {"schema": 1, "machine": rep.machine(args.threads, args.pin, args.embedder_runtime), **body}
    document["acceptance"] = rep.acceptance(document)
    document["figures"] = rep.figures(document)
    print(rep.text(document, judge=args.acceptance))
    print(f"\n({time.monotonic() - started:.0f} s)", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(document, indent=2), encoding="utf-8")
    if args.plots is not None:
        from faceonly_lab.bench.plots import write_plots

        for path in write_plots(document, args.plots):
            print(f"wrote {path}", file=sys.stderr)
    return 0
