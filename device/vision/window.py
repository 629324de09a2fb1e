"""Rolling statistics over the last few seconds, so health tells the truth now: a camera that stalled a
minute ago on a terminal up for a month shows fps 0, not 29.9."""

from __future__ import annotations

import time
from collections import deque

import numpy as np


class RecentWindow:
    """(time, value) samples of the last `span_s` seconds, at most `max_samples` of them."""

    def __init__(self, span_s: float = 10.0, max_samples: int = 4096) -> None:
        self.span_s = span_s
        self._samples: deque[tuple[float, float]] = deque(maxlen=max_samples)

    def add(self, value: float = 0.0, now: float | None = None) -> None:
        self._samples.append((time.monotonic() if now is None else now, value))

    def _recent(self, now: float | None) -> list[float]:
        now = time.monotonic() if now is None else now
        while self._samples and self._samples[0][0] < now - self.span_s:
            self._samples.popleft()
        return [v for _, v in self._samples]

    def rate(self, now: float | None = None, since: float | None = None) -> float:
        """Samples per second over the window (or since `since`, when the window is not full yet)."""
        now = time.monotonic() if now is None else now
        count = len(self._recent(now))
        span = self.span_s if since is None else min(self.span_s, now - since)
        return count / span if span > 0 else 0.0

    def percentile(self, q: float, now: float | None = None) -> float | None:
        values = self._recent(now)
        return float(np.percentile(values, q)) if values else None
