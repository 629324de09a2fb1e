"""How long frames spend in the service loop, so health shows a loop that commands or a slow stage starve.

Per frame: `wait` from the moment it was ready for the loop (in the capture slot) until the loop took it,
and `turn` from then until the loop was ready for the next one (pipeline, events, commands, health). Their
sum, `frame`, is what the loop adds to every frame; a camera drops frames once it exceeds the frame
interval. `turn_cpu` is the loop thread's own CPU time in the turn: far below `turn`, the loop waited for
the CPU (other processes) or for the GIL (other threads). health.loop reports p50 / p99 / max of each over
the last STATS_WINDOW_S seconds.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from device.vision.pipeline import STATS_WINDOW_S


@dataclass(frozen=True)
class FrameTime:
    done_at: float  # time.monotonic()
    wait_s: float
    turn_s: float
    turn_cpu_s: float

    @property
    def frame_s(self) -> float:
        return self.wait_s + self.turn_s


def summary_ms(values: list[float]) -> dict[str, float | None]:
    """p50, p99 and max in milliseconds of durations in seconds (None when there are none)."""
    if not values:
        return {"p50": None, "p99": None, "max": None}
    ms = np.asarray(values) * 1000.0
    return {
        "p50": round(float(np.percentile(ms, 50)), 2),
        "p99": round(float(np.percentile(ms, 99)), 2),
        "max": round(float(ms.max()), 2),
    }


class LoopTimes:
    def __init__(self, span_s: float = STATS_WINDOW_S, max_samples: int = 8192) -> None:
        self.span_s = span_s
        self._samples: deque[FrameTime] = deque(maxlen=max_samples)

    def add(self, ready_at: float, taken_at: float, done_at: float, turn_cpu_s: float) -> None:
        """Times from time.monotonic(); `turn_cpu_s` from time.thread_time() on the loop thread."""
        self._samples.append(
            FrameTime(done_at, max(0.0, taken_at - ready_at), done_at - taken_at, turn_cpu_s)
        )

    def between(self, start: float, end: float) -> list[FrameTime]:
        """The frames done within [start, end] (monotonic seconds), as far back as the samples reach."""
        return [s for s in self._samples if start <= s.done_at <= end]

    def summary(self, now: float | None = None) -> dict[str, Any]:
        now = time.monotonic() if now is None else now
        recent = self.between(now - self.span_s, now)
        return {
            "window_s": self.span_s,
            "frames": len(recent),
            "frame_ms": summary_ms([s.frame_s for s in recent]),
            "wait_ms": summary_ms([s.wait_s for s in recent]),
            "turn_ms": summary_ms([s.turn_s for s in recent]),
            "turn_cpu_ms": summary_ms([s.turn_cpu_s for s in recent]),
        }
