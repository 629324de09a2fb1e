"""The backend's own health: throughput, lag behind the terminals, quarantine counts, inbox depth."""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

WINDOW_S = 10.0


class Health:
    def __init__(self) -> None:
        self.started = time.time()
        self.received = 0
        self.recorded = 0
        self.quarantined: dict[str, int] = {}
        self.lag_s: float | None = None  # received_at - created_at of the latest recorded event
        self.store_errors = 0
        self._times: deque[float] = deque()
        self._lock = threading.Lock()

    def batch(
        self, received: int, recorded: int, reasons: list[str], lag_s: float | None, now: float
    ) -> None:
        with self._lock:
            self.received += received
            self.recorded += recorded
            for reason in reasons:
                self.quarantined[reason] = self.quarantined.get(reason, 0) + 1
            if lag_s is not None:
                self.lag_s = lag_s
            self._times.extend([now] * recorded)
            self._trim(now)

    def _trim(self, now: float) -> None:
        while self._times and self._times[0] < now - WINDOW_S:
            self._times.popleft()

    def snapshot(self, inbox_depth: int, connected: bool) -> dict[str, Any]:
        now = time.time()
        with self._lock:
            self._trim(now)
            return {
                "connected": connected,
                "uptime_s": round(now - self.started, 1),
                "received": self.received,
                "recorded": self.recorded,
                "events_per_s": round(len(self._times) / WINDOW_S, 2),
                "lag_s": None if self.lag_s is None else round(self.lag_s, 3),
                "quarantined": dict(self.quarantined),
                "inbox_depth": inbox_depth,
                "store_errors": self.store_errors,
            }
