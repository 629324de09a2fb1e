"""`faceonly record`: DEVELOPMENT TOOL that records a replay from a camera, with the filmed people's consent.

The terminal service never records; this command exists so integrators can build test replays. It writes
frames only into the folder it is given (which must be new or empty), as a replay folder with replay.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import cv2

from device.config.vision import VisionConfig
from device.contracts import SourceError
from device.vision.replay import MANIFEST_FORMAT, MANIFEST_NAME
from device.vision.sources import iter_frames, open_source

BANNER = (
    "faceonly record is a DEVELOPMENT TOOL: it writes camera frames to {out}.\n"
    "Record only people who have agreed to it; the terminal service itself never records."
)


def register(sub: argparse._SubParsersAction) -> None:
    rec = sub.add_parser(
        "record", help="development tool: record a replay folder (needs the filmed people's consent)"
    )
    rec.add_argument("--source", required=True, help="picamera2 | v4l2:N | replay:PATH")
    rec.add_argument("--out", required=True, type=Path, help="new or empty folder to write the replay into")
    rec.add_argument("--seconds", type=float, default=10.0, help="how long to record")
    rec.add_argument("--max-frames", type=int, default=0, help="stop after this many frames (0 = no limit)")
    rec.add_argument(
        "--consent",
        action="store_true",
        help="confirm that everyone in view agreed to be recorded (required)",
    )
    rec.set_defaults(func=_record)


def record(
    source_spec: str, out: Path, seconds: float, max_frames: int = 0, config: VisionConfig | None = None
) -> int:
    """Record frames from the source into `out`; returns the number of frames written."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not an empty folder; refusing to write there")
    config = config or VisionConfig(replay_pace="recorded")
    source = open_source(source_spec, config)
    out.mkdir(parents=True, exist_ok=True)
    entries: list[dict[str, Any]] = []
    start_wall = time.monotonic()
    t0: float | None = None
    try:
        with iter_frames(source) as frames:
            for frame in frames:
                t0 = frame.timestamp if t0 is None else t0
                name = f"{len(entries):06d}.png"
                if not cv2.imwrite(str(out / name), frame.image):
                    raise OSError(f"could not write {out / name}")
                entries.append({"file": name, "t": round(frame.timestamp - t0, 6)})
                if (max_frames and len(entries) >= max_frames) or time.monotonic() - start_wall >= seconds:
                    break
    finally:
        source.close()
        (out / MANIFEST_NAME).write_text(
            json.dumps({"format": MANIFEST_FORMAT, "frames": entries}), encoding="utf-8"
        )
    return len(entries)


def _record(args: argparse.Namespace) -> int:
    print(BANNER.format(out=args.out), file=sys.stderr)
    if not args.consent:
        print("refusing to record without --consent", file=sys.stderr)
        return 2
    try:
        n = record(args.source, args.out, args.seconds, args.max_frames)
    except (FileExistsError, OSError, SourceError) as exc:
        print(f"record failed: {exc}", file=sys.stderr)
        return 1
    print(f"recorded {n} frames into {args.out}", file=sys.stderr)
    return 0
