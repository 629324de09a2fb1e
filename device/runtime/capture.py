"""Capture on its own thread, so a camera that blocks, retries or stalls never blocks the service loop.

The loop keeps answering commands, publishing health and reacting to SIGTERM while the source waits;
it simply stops petting the watchdog, which is how systemd learns that the camera is stuck.

The capture thread owns the source: it opens it (the first read), reads it and closes it. A live
camera hands over only its latest frame: a newer frame replaces the one still waiting, which is
released (zeroed) and counted as dropped, so a slow loop always works on a fresh frame. A replay
is never dropped: it waits for the loop (backpressure), so it stays deterministic.
"""

from __future__ import annotations

import logging
import threading
import time

from device.contracts import Frame, FrameSource

log = logging.getLogger(__name__)

_PUT_POLL_S = 0.1


class _End:
    def __init__(self, error: Exception | None) -> None:
        self.error = error


class Handoff:
    """The one-slot mailbox between the capture thread and the loop."""

    def __init__(self) -> None:
        self._item: Frame | _End | None = None
        self._cond = threading.Condition()
        self.filled_at = 0.0  # time.monotonic() when the item in the slot was put there
        self.taken_filled_at = 0.0  # the same for the item `take` returned last

    def replace(self, item: Frame | _End) -> Frame | None:
        """Put `item` in the slot now; returns the frame it replaced (the caller drops it), if any."""
        with self._cond:
            old, self._item = self._item, item
            self.filled_at = time.monotonic()
            self._cond.notify_all()
        return old if isinstance(old, Frame) else None

    def put(self, item: Frame | _End, stop: threading.Event) -> bool:
        """Wait until the slot is free, then fill it; False if `stop` was set first."""
        with self._cond:
            while self._item is not None:
                if stop.is_set():
                    return False
                self._cond.wait(_PUT_POLL_S)
            self._item = item
            self.filled_at = time.monotonic()
            self._cond.notify_all()
            return True

    def take(self, timeout: float) -> Frame | _End | None:
        with self._cond:
            if self._item is None and timeout > 0:
                self._cond.wait_for(lambda: self._item is not None, timeout)
            item, self._item = self._item, None
            self.taken_filled_at = self.filled_at
            self._cond.notify_all()
            return item


class Capture:
    def __init__(self, source: FrameSource) -> None:
        self.source = source
        self._slot = Handoff()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="capture", daemon=True)
        self.ended = False
        self.error: str | None = None
        self.dropped = 0  # live frames replaced by a newer one before the loop took them
        self.ready_at = 0.0  # time.monotonic() when the frame `get` returned last was ready for the loop

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        end = _End(None)
        try:
            for frame in self.source.frames():
                if self._stop.is_set() or not self._hand_over(frame):
                    self.source.release(frame)
                    break
        except Exception as exc:  # noqa: BLE001 - whatever a source raises ends capture; the service reports it, stays up
            end = _End(exc)
        self._slot.put(end, self._stop)
        # Closing zeroes the ring: only once the loop has released its last frame, which stop() says.
        self._stop.wait()
        self.source.close()

    def _hand_over(self, frame: Frame) -> bool:
        if not self.source.live:
            return self._slot.put(frame, self._stop)
        stale = self._slot.replace(frame)
        if stale is not None:
            self.source.release(stale)
            self.dropped += 1
        return True

    def get(self, timeout: float) -> Frame | None:
        """The next frame, or None if none arrived within `timeout` or the source has ended (see `ended`)."""
        if self.ended:
            return None
        item = self._slot.take(timeout)
        self.ready_at = self._slot.taken_filled_at
        if isinstance(item, _End):
            self.ended = True
            if item.error is not None:
                # The message names the source and the reason (SourceError never carries frame content).
                self.error = f"{item.error.__class__.__name__}: {item.error}"
                log.error("frame source stopped: %s", self.error)
            return None
        return item

    def stats(self) -> dict[str, object]:
        return {"ended": self.ended, "error": self.error, "stale_dropped": self.dropped}

    def stop(self, join_s: float = 1.0) -> None:
        """Stop capturing and release a frame still waiting; the capture thread closes the source."""
        self._stop.set()
        if self._thread.ident is None:  # never started: nothing was opened or read
            self.source.close()
            return
        self._release_waiting()
        self._thread.join(join_s)
        self._release_waiting()  # a frame handed over while stopping
        if self._thread.is_alive():
            # A read stuck in the driver: the capture thread closes the source when the read returns.
            log.warning("frame source did not stop within %.1f s; it closes when its read returns", join_s)

    def _release_waiting(self) -> None:
        item = self._slot.take(0)
        if isinstance(item, Frame):
            self.source.release(item)
