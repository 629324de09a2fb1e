"""A small ring of preallocated frame buffers: the only place raw frames live.

Sources decode straight into a free slot; `release` zeroes the slot and returns it, so a frame's pixels do
not outlive its processing and no new buffer is allocated per frame. When every slot is in use the source
drops the new frame (counted) instead of growing memory.
"""

from __future__ import annotations

import threading

import numpy as np


class RingFull(Exception):
    """Every buffer is still held by the consumer (it has not released its frames)."""


class FrameRing:
    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("a frame ring needs at least one buffer")
        self.size = size
        self._shape: tuple[int, ...] | None = None
        self._buffers: list[np.ndarray] = []
        self._free: list[int] = []
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

    def _slot(self, buffer: np.ndarray) -> int | None:
        for i, buf in enumerate(self._buffers):
            if buf is buffer or (buffer.base is not None and buffer.base is buf):
                return i
        return None

    def release(self, buffer: np.ndarray) -> None:
        """Zero the buffer and make it free again. Releasing twice or a foreign array is a no-op."""
        with self._lock:
            slot = self._slot(buffer)
            if slot is None or slot in self._free:
                return
            self._buffers[slot].fill(0)
            self._free.append(slot)

    def in_use(self) -> int:
        with self._lock:
            return self.size - len(self._free) if self._shape is not None else 0

    def clear(self) -> None:
        """Zero every buffer (on close)."""
        with self._lock:
            for buf in self._buffers:
                buf.fill(0)
            self._free = list(range(len(self._buffers)))
