"""Keeps one id per face across frames: greedy matching on box overlap, then on centre distance.

Turnstile faces move slowly and rarely cross, so a greedy IoU matcher is enough; the centre-distance
fallback keeps the id when a face approaches fast (box grows, IoU drops). A track that has not been seen
for `max_missed_s` has ended, by the frames' monotonic capture time (`Frame.monotonic`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from device.config.vision import TrackerConfig
from device.contracts import Detection
from device.vision.boxes import iou


@dataclass(frozen=True)
class TrackUpdate:
    matched: tuple[tuple[int, Detection], ...]  # (track id, its detection in this frame); new tracks included
    ended: tuple[int, ...]  # ids of tracks that ended before this frame


@dataclass
class _Track:
    track_id: int
    box: np.ndarray
    first_seen: float
    last_seen: float
    hits: int = 1


def _centre_shift(a: np.ndarray, b: np.ndarray) -> float:
    """Distance of box centres in widths of the larger box."""
    ca = np.array([(a[0] + a[2]) / 2, (a[1] + a[3]) / 2])
    cb = np.array([(b[0] + b[2]) / 2, (b[1] + b[3]) / 2])
    width = max(a[2] - a[0], b[2] - b[0], 1e-6)
    return float(np.linalg.norm(ca - cb) / width)


class Tracker:
    def __init__(self, config: TrackerConfig) -> None:
        self.config = config
        self._tracks: dict[int, _Track] = {}
        self._next_id = 1

    def update(self, detections: list[Detection], t: float) -> TrackUpdate:
        ended = tuple(tid for tid, tr in self._tracks.items() if t - tr.last_seen > self.config.max_missed_s)
        for tid in ended:
            del self._tracks[tid]
        candidates = []
        for tid, tr in self._tracks.items():
            for di, det in enumerate(detections):
                overlap = iou(tr.box, det.box)
                shift = _centre_shift(tr.box, det.box)
                if overlap >= self.config.match_iou or shift <= self.config.max_centre_shift:
                    # Overlap first; among non-overlapping, the nearest centre.
                    candidates.append((-overlap, shift, tid, di))
        candidates.sort()
        used_tracks: set[int] = set()
        used_dets: set[int] = set()
        matched: list[tuple[int, Detection]] = []
        for _, _, tid, di in candidates:
            if tid in used_tracks or di in used_dets:
                continue
            used_tracks.add(tid)
            used_dets.add(di)
            tr = self._tracks[tid]
            tr.box, tr.last_seen, tr.hits = np.asarray(detections[di].box, np.float32), t, tr.hits + 1
            matched.append((tid, detections[di]))
        for di, det in enumerate(detections):
            if di not in used_dets:
                tid = self._next_id
                self._next_id += 1
                self._tracks[tid] = _Track(tid, np.asarray(det.box, np.float32), t, t)
                matched.append((tid, det))
        return TrackUpdate(matched=tuple(matched), ended=ended)

    def finish(self) -> tuple[int, ...]:
        """End every open track (end of stream)."""
        ended = tuple(self._tracks)
        self._tracks.clear()
        return ended

    @property
    def active(self) -> int:
        return len(self._tracks)
