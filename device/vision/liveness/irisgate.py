"""When the iris model is worth its two invokes: the blink step needs the eye contour only around a blink.

The face mesh runs on every challenge frame anyway and its eyelid points give a coarse eye opening
(device.vision.meshpoints.eyelid_opening). The iris model runs on a frame when that opening dips below
`iris_mesh_dip` of its recent median, when the blink detector needs every frame (no open-eye baseline yet, or
a dip under way: the reopening must be seen), and otherwise often enough that no gap between two reads
exceeds `iris_max_gap_s`, so a blink the mesh barely shows still lands on a read frame and the detector then
follows it frame by frame. The gap is in time, not frames: a rule of "every 2nd frame", fine at 24 fps,
left 160 ms gaps at 12.5 fps and missed a short blink there (docs/pad-notes.md).
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from device.config.vision import LivenessConfig

RECENT_FRAMES = 8  # the mesh opening's baseline: about half a second at 15 fps


class IrisGate:
    """One per track; `due(t, opening, urgent)` once per steady eye frame says whether to run the iris model."""

    def __init__(self, config: LivenessConfig) -> None:
        self.max_gap, self.dip = config.iris_max_gap_s, config.iris_mesh_dip
        self._recent: deque[float] = deque(maxlen=RECENT_FRAMES)
        self._last_run: float | None = None
        self._last_seen: float | None = None

    def due(self, t: float, opening: float, urgent: bool) -> bool:
        """`t`: the frame's monotonic time (s); `opening`: its mesh eyelid opening; `urgent`: the blink detector
        wants every frame."""
        base = float(np.median(self._recent)) if len(self._recent) >= 3 else None
        # A non-finite opening tells nothing: the frame is sampled (the detector then judges it, fail closed).
        dipping = not np.isfinite(opening) or (base is not None and opening < self.dip * base)
        if np.isfinite(opening):
            self._recent.append(opening)
        # Skipping this frame is safe only if the next frame, one frame interval on, is still within the gap.
        step = t - self._last_seen if self._last_seen is not None else math.inf
        self._last_seen = t
        gap_if_skipped = t - self._last_run + step if self._last_run is not None else math.inf
        run = urgent or dipping or not gap_if_skipped <= self.max_gap
        if run:
            self._last_run = t
        return run
