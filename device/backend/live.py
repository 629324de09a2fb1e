"""The live view: the most recent events with their thumbnail and raw bytes, in memory only.

This is the thumbnails' whole retention ("keep none beyond the live view"): nothing here is written to
the store or a log, and the oldest entry is dropped when a new one arrives beyond the bound.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True)
class LiveEntry:
    thumbnail: bytes | None
    raw: bytes
    note: str | None


class LiveView:
    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[str, LiveEntry] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, event_id: str, entry: LiveEntry) -> None:
        with self._lock:
            self._entries[event_id] = entry
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def get(self, event_id: str) -> LiveEntry | None:
        with self._lock:
            return self._entries.get(event_id)

    def forget(self, event_ids: set[str]) -> None:
        """Drop entries (a subject removed: its thumbnails go too)."""
        with self._lock:
            for event_id in event_ids:
                self._entries.pop(event_id, None)
