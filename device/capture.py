"""Capture on its own thread, so a camera that blocks, retries or stalls never blocks the service loop.

The loop keeps answering commands, publishing health and reacting to SIGTERM while the source waits;
it simply stops petting the watchdog, which is how systemd learns that the camera is stuck. Frames
cross over through a small bounded queue (backpressure: a replay stays deterministic; a camera whose
ring is full drops and counts).
"""

from __future__ import annotations

import logging
import queue
import threading

from device.stages import FrameSource
from device.vision.types import Frame

log = logging.getLogger(__name__)

_PUT_POLL_S = 0.1


class _End:
    def __init__(self, error: Exception | None) -> None:
        self.error = error


class Capture:
    def __init__(self, source: FrameSource, depth: int = 1) -> None:
        self.source = source
        self._queue: queue.Queue[Frame | _End] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="capture", daemon=True)
        self.ended = False
        self.error: str | None = None

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        end = _End(None)
        try:
            for frame in self.source.frames():
                if not self._offer(frame):
                    self.source.release(frame)
                    return
        except Exception as exc:  # a source that gives up ends capture; the service reports it and stays up
            end = _End(exc)
        self._offer(end)

    def _offer(self, item: Frame | _End) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=_PUT_POLL_S)
            except queue.Full:
                continue
            return True
        return False

    def get(self, timeout: float) -> Frame | None:
        """The next frame, or None if none arrived within `timeout` or the source has ended (see `ended`)."""
        if self.ended:
            return None
        try:
            item = self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()
        except queue.Empty:
            return None
        if isinstance(item, _End):
            self.ended = True
            if item.error is not None:
                # The message names the source and the reason (SourceError never carries frame content).
                self.error = f"{item.error.__class__.__name__}: {item.error}"
                log.error("frame source stopped: %s", self.error)
            return None
        return item

    def stop(self, join_s: float = 1.0) -> None:
        """Stop capturing, release frames still queued, close the source (a stuck driver is left behind)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(join_s)
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if not isinstance(item, _End):
                self.source.release(item)
        if self._thread.is_alive():
            log.warning(
                "frame source did not stop within %.1f s; closing it under the capture thread", join_s
            )
        self.source.close()
