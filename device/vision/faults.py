"""Exceptions caught in one processing stage (detector, mesh, liveness, embedder, matcher, protect): the
track or frame they hit is dropped, the service goes on, and they are counted here for health and its
`stage_failures` alarm.

What is kept and logged of an exception is its type and where it was raised (file:line), never its text:
a message from deep inside numpy or OpenCV may repeat array contents, and no frame data may reach a log.
Each stage's first failure is logged, later ones only counted (a broken model would fail on every frame).
"""

from __future__ import annotations

import logging
import time
import traceback
from collections import Counter, deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

RECENT_S = 60.0  # the alarm looks at failures within this many seconds


def where(exc: BaseException) -> str:
    """`Type at file.py:line` of the innermost frame that raised `exc` (no message, no values)."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return type(exc).__name__
    last = frames[-1]
    return f"{type(exc).__name__} at {Path(last.filename).name}:{last.lineno}"


class StageFaults:
    def __init__(self, recent_s: float = RECENT_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.recent_s = recent_s
        self._clock = clock
        self.total: Counter[str] = Counter()
        self._times: deque[float] = deque(maxlen=10_000)
        self.last: str | None = None

    def record(self, stage: str, exc: BaseException, what: str) -> None:
        """`what` names what was dropped ("track 7", "frame 1200")."""
        self.total[stage] += 1
        self._times.append(self._clock())
        self.last = f"{stage}: {where(exc)}"
        if self.total[stage] == 1:
            log.error("the %s stage failed (%s); %s dropped, the service goes on", stage, where(exc), what)

    def recent(self) -> int:
        cutoff = self._clock() - self.recent_s
        while self._times and self._times[0] < cutoff:
            self._times.popleft()
        return len(self._times)

    def snapshot(self) -> dict[str, Any]:
        return {"total": dict(self.total), "recent": self.recent(), "last": self.last}


def combined(*snapshots: dict[str, Any] | None) -> dict[str, Any]:
    """Snapshots of several owners (the pipeline's stages, the service's) as one, for health and alarms."""
    present = [s for s in snapshots if s]
    return {
        "total": {stage: n for s in present for stage, n in s["total"].items()},
        "recent": sum(int(s["recent"]) for s in present),
        "last": next((s["last"] for s in reversed(present) if s["last"]), None),
    }
