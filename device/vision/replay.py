"""Replay sources: a video file, a single still, or a folder of frames with a `replay.json` manifest.

Replays drive the same pipeline as a camera and are deterministic: the same file gives the same frames with
the same (recorded) timestamps, whether played at recorded pace or as fast as the consumer takes them.

Folder manifest: {"format": 1, "frames": [{"file": "000000.png", "t": 0.0}, ...]}, file names relative to
the folder, t in seconds, non-decreasing.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from device.contracts import Frame, SourceError
from device.vision.framering import FrameRing, RingFull
from device.vision.stills import ImageError, load_image
from device.wire.base import validate
from device.wire.manifests import ReplayManifest

log = logging.getLogger(__name__)

MANIFEST_NAME = "replay.json"
MANIFEST_FORMAT = 1
STILL_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"}


class ReplayError(SourceError):
    """A replay cannot be played; the message says which file and why."""


@dataclass(frozen=True)
class ReplayEntry:
    file: str
    t: float


def parse_manifest(raw: Any) -> list[ReplayEntry]:
    """Validate a decoded replay.json; raises ReplayError naming the problems."""
    manifest, problems = validate(ReplayManifest, raw)
    if manifest is None:
        raise ReplayError(f"{MANIFEST_NAME}: {'; '.join(problems[:3])}")
    return [ReplayEntry(f.file, f.t) for f in manifest.frames]


def read_manifest(folder: Path) -> list[ReplayEntry]:
    path = folder / MANIFEST_NAME
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReplayError(f"{folder}: no {MANIFEST_NAME} (a replay folder needs one)") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ReplayError(f"{path}: not readable JSON ({exc.__class__.__name__})") from None
    return parse_manifest(raw)


class ReplaySource:
    """FrameSource over a recorded replay. `pace` is "recorded" or "fast"."""

    live = False

    def __init__(
        self,
        path: Path,
        ring_size: int = 4,
        pace: str = "recorded",
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if pace not in ("recorded", "fast"):
            raise ReplayError(f"unknown replay pace {pace!r} (recorded | fast)")
        self.path = Path(path)
        self.pace = pace
        self._clock, self._sleep = clock, sleep
        self._ring = FrameRing(ring_size)
        self.corrupt_frames = 0
        self.frames_read = 0
        self._closed = False
        if self.path.is_dir():
            self._entries = read_manifest(self.path)
            self._kind = "folder"
            self._check_still(self.path / self._entries[0].file)
        elif not self.path.exists():
            raise ReplayError(f"{self.path}: no such replay file or folder")
        elif self.path.suffix.lower() in STILL_SUFFIXES:
            self._kind = "still"
            self._check_still(self.path)
        else:
            self._kind = "video"
            self._check_video()

    @staticmethod
    def _check_still(path: Path) -> None:
        try:
            load_image(path).fill(0)
        except ImageError as exc:
            raise ReplayError(str(exc)) from None

    def _open_video(self) -> cv2.VideoCapture:
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            cap.release()
            raise ReplayError(f"{self.path}: not a video OpenCV can open (empty, corrupt or unsupported)")
        return cap

    def _check_video(self) -> None:
        if self.path.stat().st_size == 0:
            raise ReplayError(f"{self.path}: the file is empty")
        cap = self._open_video()
        try:
            ok, image = cap.read()
            if not ok or image is None or image.ndim != 3:
                raise ReplayError(f"{self.path}: no decodable video frame (empty, truncated or corrupt)")
            image.fill(0)
        finally:
            cap.release()

    def frames(self) -> Iterator[Frame]:
        stream = {"folder": self._folder_frames, "still": self._still_frames, "video": self._video_frames}
        start_wall: float | None = None
        start_t = 0.0
        for frame in stream[self._kind]():
            if self._closed:
                self.release(frame)
                return
            if self.pace == "recorded":
                if start_wall is None:
                    start_wall, start_t = self._clock(), frame.timestamp
                wait = (frame.timestamp - start_t) - (self._clock() - start_wall)
                if wait > 0:
                    self._sleep(wait)
            self.frames_read += 1
            yield frame
        if self.frames_read == 0:
            raise ReplayError(f"{self.path}: no frame of the replay could be decoded")

    def _slot(self, shape: tuple[int, ...]) -> np.ndarray:
        try:
            return self._ring.acquire(shape)
        except RingFull as exc:
            # A replay must not drop frames (determinism): the consumer forgot to release().
            raise ReplayError(f"replay stalled: {exc}; call release(frame) after each frame") from None

    def _from_still(self, path: Path, index: int, t: float) -> Frame | None:
        try:
            image = load_image(path)
        except ImageError as exc:
            self.corrupt_frames += 1
            log.warning("replay frame %d skipped: %s", index, exc)
            return None
        buf = self._slot(image.shape)
        np.copyto(buf, image)
        image.fill(0)
        return Frame(index=index, timestamp=t, monotonic=t, image=buf)

    def _still_frames(self) -> Iterator[Frame]:
        frame = self._from_still(self.path, 0, 0.0)
        if frame is not None:
            yield frame

    def _folder_frames(self) -> Iterator[Frame]:
        for i, entry in enumerate(self._entries):
            frame = self._from_still(self.path / entry.file, i, entry.t)
            if frame is not None:
                yield frame

    def _video_frames(self) -> Iterator[Frame]:
        cap = self._open_video()
        fps = cap.get(cv2.CAP_PROP_FPS)
        shape: tuple[int, ...] | None = None
        index = 0
        last_t = -1.0
        try:
            while not self._closed:
                if shape is None:
                    ok, image = cap.read()
                    if not ok:
                        return
                    shape = image.shape
                    buf = self._slot(shape)
                    np.copyto(buf, image)
                    image.fill(0)
                else:
                    buf = self._slot(shape)
                    ok, image = cap.read(buf)  # decodes in place when the size matches
                    if not ok:
                        self._ring.release(buf)
                        return
                    if image is not buf:
                        shape = image.shape
                        self._ring.release(buf)
                        buf = self._slot(shape)
                        np.copyto(buf, image)
                        image.fill(0)
                t = self._video_time(cap, index, fps, last_t)
                last_t = t
                yield Frame(index=index, timestamp=t, monotonic=t, image=buf)
                index += 1
        finally:
            cap.release()

    @staticmethod
    def _video_time(cap: cv2.VideoCapture, index: int, fps: float, last_t: float) -> float:
        """Container time when it is sane (variable frame rate webm), else index / fps."""
        msec = cap.get(cv2.CAP_PROP_POS_MSEC)
        if math.isfinite(msec) and msec / 1000.0 > last_t and (index > 0 or msec >= 0):
            return msec / 1000.0
        if fps and math.isfinite(fps) and fps > 0:
            return max(index / fps, last_t + 1e-6)
        return last_t + 1.0 / 30.0

    def release(self, frame: Frame) -> None:
        self._ring.release(frame.image)

    def close(self) -> None:
        self._closed = True
        self._ring.clear()

    def stats(self) -> dict[str, Any]:
        return {"source": "replay", "frames": self.frames_read, "corrupt_frames": self.corrupt_frames}
