"""Blinks from the iris model's eye contour, tolerant to head motion.

A blink is a dip of the eye opening below `dip` x the last ~0.5 s baseline that comes back above
`reopen` x baseline within `max_closed_s`, seen only on frontal, steady frames: head pitch and turns change
the eye aspect ratio too, which is why a plain threshold on a running median raised false alarms. And the
face's own proportions (eye line to lips over the eye distance, `face_aspect`) must hold during the dip: a
photo flicked forward squashes the eyes AND the face alike (17% here), real blinks move it a few % at most.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from device.config.vision import LivenessConfig

MIN_BASELINE_FRAMES = 3


@dataclass(frozen=True)
class Blink:
    start_t: float
    end_t: float
    start_index: int
    end_index: int
    depth: float  # lowest opening / baseline


class BlinkDetector:
    """Feed one value per frame with `update`; it returns a Blink when one completes."""

    def __init__(self, config: LivenessConfig) -> None:
        self.config = config
        self._window: deque[tuple[float, float, float]] = deque()  # t, openness, face aspect
        # start t, start index, baseline, lowest, baseline face aspect, largest aspect change
        self._dip: tuple[float, int, float, float, float, float] | None = None

    def reset(self) -> None:
        self._window.clear()
        self._dip = None

    @property
    def ready(self) -> bool:
        """An open-eye baseline exists: a dip can be told from it."""
        return len(self._window) >= MIN_BASELINE_FRAMES

    @property
    def dipping(self) -> bool:
        """A dip is under way (every frame until it reopens counts)."""
        return self._dip is not None

    def baseline(self) -> float | None:
        if len(self._window) < MIN_BASELINE_FRAMES:
            return None
        return float(np.median([v for _, v, _ in self._window]))

    def update(
        self, t: float, index: int, openness: float, steady: bool, aspect: float = 1.0
    ) -> Blink | None:
        """`aspect`: the frame's face_aspect (1.0 where the caller has none, e.g. an eye-only signal)."""
        c = self.config
        if not steady or not np.isfinite(openness) or openness < 0 or not np.isfinite(aspect) or aspect <= 0:
            # Pose and motion change the contour as much as a blink: drop any dip in progress.
            self._dip = None
            return None
        while self._window and t - self._window[0][0] > c.blink_baseline_s:
            self._window.popleft()
        if self._dip is not None:
            start_t, start_index, base, lowest, base_aspect, moved = self._dip
            lowest = min(lowest, openness)
            moved = max(moved, abs(aspect / base_aspect - 1.0))
            if openness >= c.blink_reopen * base:
                self._dip = None
                self._window.append((t, openness, aspect))
                if t - start_t <= c.blink_max_closed_s and moved <= c.blink_max_face_change:
                    return Blink(start_t, t, start_index, index, lowest / base)
                return None
            if t - start_t > c.blink_max_closed_s:
                # Closed too long (or a slow look down): not a blink, start a fresh baseline.
                self._dip = None
                self._window.clear()
                return None
            self._dip = (start_t, start_index, base, lowest, base_aspect, moved)
            return None
        baseline = self.baseline()
        # A closed-eye (zero) baseline measures nothing: a dip below it is not a blink (and no ratio).
        if baseline is not None and baseline > 0 and openness < c.blink_dip * baseline:
            base_aspect = float(np.median([a for _, _, a in self._window]))
            self._dip = (t, index, baseline, openness, base_aspect, abs(aspect / base_aspect - 1.0))
            return None
        self._window.append((t, openness, aspect))
        return None
