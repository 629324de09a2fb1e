"""A small ring of preallocated frame buffers: the only place raw frames live.

Sources decode straight into a free slot; `release` zeroes the slot and returns it, so a frame's pixels do
not outlive its processing and no new buffer is allocated per frame. When every slot is in use the source
drops the new frame (counted) instead of growing memory.

Ownership fails loudly, as picamera2's reference-counted requests do: a frame released twice, or an array
that never came from the ring, raises FrameOwnershipError. A second release could otherwise zero a buffer a
newer frame already occupies, and a foreign one would leave the real frame's pixels alive. A frame still
held when the source closes (the ring is cleared under it) may be released once afterwards.
"""

from __future__ import annotations

import threading

import numpy as np


class RingFull(Exception):
    """Every buffer is still held by the consumer (it has not released its frames)."""


class FrameOwnershipError(RuntimeError):
    """A frame released twice, or an array that is not one of the ring's frames: a bug in the caller."""


class FrameRing:
    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("a frame ring needs at least one buffer")
        self.size = size
        self._shape: tuple[int, ...] | None = None
        self._buffers: list[np.ndarray] = []
        self._free: list[int] = []
        self._orphans: list[np.ndarray] = []  # held when the ring was cleared: each may be released once
        self._lock = threading.Lock()  # release() may come from another thread than acquire()

    def _allocate(self, shape: tuple[int, ...]) -> None:
        for buf in self._buffers:
            buf.fill(0)
        self._buffers = [np.zeros(shape, np.uint8) for _ in range(self.size)]
        self._free = list(range(self.size))
        self._shape = shape

    def acquire(self, shape: tuple[int, ...]) -> np.ndarray:
        """A zeroed buffer of `shape` (uint8). A new shape reallocates the ring (only when all are free)."""
        with self._lock:
            if shape != self._shape:
                if self._shape is not None and len(self._free) != self.size:
                    raise RingFull("frame size changed while frames are still held")
                self._allocate(shape)
            if not self._free:
                raise RingFull(f"all {self.size} frame buffers are in use")
            return self._buffers[self._free.pop()]

    @staticmethod
    def _find(buffers: list[np.ndarray], buffer: np.ndarray) -> int | None:
        for i, buf in enumerate(buffers):
            if buf is buffer or (buffer.base is not None and buffer.base is buf):
                return i
        return None

    def release(self, buffer: np.ndarray) -> None:
        """Zero the buffer and make it free again; FrameOwnershipError if it is free already or not ours."""
        with self._lock:
            orphan = self._find(self._orphans, buffer)
            if orphan is not None:
                del self._orphans[orphan]  # zeroed when the ring was cleared
                return
            slot = self._find(self._buffers, buffer)
            if slot is None:
                raise FrameOwnershipError("released an array that is not one of this source's frames")
            if slot in self._free:
                raise FrameOwnershipError("a frame was released twice")
            self._buffers[slot].fill(0)
            self._free.append(slot)

    def in_use(self) -> int:
        with self._lock:
            return self.size - len(self._free) if self._shape is not None else 0

    def clear(self) -> None:
        """Zero every buffer (on close). Frames still held become orphans, each released at most once more;
        the next acquire allocates afresh, so an orphan's late release never frees a newer frame."""
        with self._lock:
            for buf in self._buffers:
                buf.fill(0)
            self._orphans += [b for i, b in enumerate(self._buffers) if i not in self._free]
            self._buffers, self._free, self._shape = [], [], None
