"""When the iris model is worth its two invokes: the blink step needs the eye contour only around a blink.

The face mesh runs on every challenge frame anyway and its eyelid points give a coarse eye opening
(device.vision.meshpoints.eyelid_opening). The iris model runs on a frame when that opening dips below
`iris_mesh_dip` of its recent median, when the blink detector needs every frame (no open-eye baseline yet, or
a dip under way: the reopening must be seen), and otherwise on every `iris_every`-th frame, so a blink the
mesh barely shows still lands on a sampled frame and the detector then follows it frame by frame.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from device.config.vision import LivenessConfig

RECENT_FRAMES = 8  # the mesh opening's baseline: about half a second at 15 fps


class IrisGate:
    """One per track; `due(opening, urgent)` once per steady eye frame says whether to run the iris model."""

    def __init__(self, config: LivenessConfig) -> None:
        self.every, self.dip = config.iris_every, config.iris_mesh_dip
        self._recent: deque[float] = deque(maxlen=RECENT_FRAMES)
        self._skipped = 0

    def due(self, opening: float, urgent: bool) -> bool:
        """`opening`: this frame's mesh eyelid opening; `urgent`: the blink detector wants every frame."""
        base = float(np.median(self._recent)) if len(self._recent) >= 3 else None
        # A non-finite opening tells nothing: the frame is sampled (the detector then judges it, fail closed).
        dipping = not np.isfinite(opening) or (base is not None and opening < self.dip * base)
        if np.isfinite(opening):
            self._recent.append(opening)
        run = urgent or dipping or self._skipped + 1 >= self.every
        self._skipped = 0 if run else self._skipped + 1
        return run
