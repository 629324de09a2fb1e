"""Choosing a frame source from its spec: `picamera2`, `v4l2:N` or `replay:PATH` (`replay:demo` = the demo).

Every source yields `Frame`s whose pixels live in the source's own frame ring; the consumer calls
`release(frame)` when done (the buffer is zeroed and reused). Errors that end a source are `SourceError`
with a message that names the source and the reason, never frame content.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator, Iterator
from pathlib import Path

from device.config.vision import VisionConfig
from device.contracts import Frame, FrameSource, SourceError
from device.infra.paths import demo_dir

SPEC_HELP = "picamera2 | v4l2:N (N = /dev/videoN) | replay:PATH (video, still, or folder with replay.json)"


def open_source(spec: str, config: VisionConfig) -> FrameSource:
    """Open the source named by `spec` with the camera/replay settings of `config` (the vision section)."""
    kind, _, arg = spec.partition(":")
    if kind == "replay":
        if not arg:
            raise SourceError(f"replay needs a path: replay:PATH ({SPEC_HELP})")
        path = demo_dir() if arg == "demo" else Path(arg)
        if arg == "demo" and not path.is_dir():
            raise SourceError(f"the demo replay is missing at {path}: run `faceonly replay make-demo` first")
        from device.vision.replay import ReplaySource

        return ReplaySource(path, ring_size=config.ring_size, pace=config.replay_pace)
    if kind == "v4l2":
        if not arg.isdigit():
            raise SourceError(f"v4l2 needs a device number: v4l2:0 ({SPEC_HELP})")
        from device.vision.camera import V4l2Camera

        return V4l2Camera(int(arg), config.camera, config.ring_size)
    if kind == "picamera2" and not arg:
        try:
            import picamera2
        except ImportError:
            raise SourceError(
                "picamera2 is not importable: it exists only on a Raspberry Pi with the python3-picamera2 "
                "apt package (and a venv made with --system-site-packages); use v4l2:N or replay:PATH elsewhere"
            ) from None
        from device.vision.camera import Picamera2Camera

        return Picamera2Camera(config.camera, config.ring_size, picamera2)
    raise SourceError(f"unknown frame source {spec!r}; expected {SPEC_HELP}")


def _released(source: FrameSource) -> Generator[Frame, None, None]:
    for frame in source.frames():
        try:
            yield frame
        finally:
            source.release(frame)


@contextlib.contextmanager
def iter_frames(source: FrameSource) -> Iterator[Iterator[Frame]]:
    """`with iter_frames(source) as frames: for frame in frames: ...`: each frame is released once the loop
    body is done with it, also when the body breaks out or raises (the ring's buffers are zeroed)."""
    frames = _released(source)
    try:
        yield frames
    finally:
        frames.close()
