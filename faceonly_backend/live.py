"""The live view: the most recent events with their thumbnail, raw bytes and (for an unknown face) its
embedding, in memory only.

This is the thumbnails' and embeddings' whole retention ("keep none beyond the live view"): nothing here is
written to the store or a log, and the oldest entry is dropped when a new one arrives beyond the bound. An
unknown person can be enrolled from their event only while it is here (with consent, faceonly_backend/enrol.py).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LiveEntry:
    thumbnail: bytes | None
    raw: bytes
    note: str | None
    embedding: np.ndarray | None = None  # opened from the event (sealed or not); never stored
    embedder_sha256: str | None = None
    subject: str | None = None  # as recorded


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

    def forget(self, event_ids: Iterable[str], subject: str | None = None) -> int:
        """Drop these entries and every one recorded under `subject` (a subject purged: its thumbnails and
        raw bytes go too); how many were dropped."""
        with self._lock:
            gone = {e for e in event_ids if e in self._entries}
            if subject is not None:
                gone |= {e for e, entry in self._entries.items() if entry.subject == subject}
            for event_id in gone:
                del self._entries[event_id]
        return len(gone)
