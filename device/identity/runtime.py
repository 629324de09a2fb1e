"""The terminal's identity state: the verified gallery, its matcher, the threshold in force, and updates.

Owned by the service loop (one thread): every accepted observation is searched here, and gallery commands
(sync, chunks, add, remove, purge) go through `apply_update` / `sync` / `chunk`, which change the state only
after the update was verified and stored; a refused update leaves the gallery exactly as it was.
"""

from __future__ import annotations

import base64
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from device.contracts import ModelRef
from device.identity import gallery as gal
from device.identity.matcher import Matcher
from device.identity.store import GalleryStore, open_box
from device.identity.thresholds import CurveError, CurveSet, OperatingPoint, gallery_operating_point
from device.identity.transfer import Incoming, TransferError, chunk_count

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MatchResult:
    """What the event's `match` says; subject None = unknown (or no usable score: fail closed)."""

    subject: str | None
    score: float
    margin: float
    threshold: float
    gallery_version: int
    display_name: str | None  # for the person at the gate only; never in an event

    def as_event(self) -> dict[str, Any]:
        def num(v: float) -> float | None:
            return round(float(v), 6) if math.isfinite(v) else None

        return {
            "subject": self.subject,
            "score": num(self.score),
            "margin": num(self.margin),
            "threshold": num(self.threshold),
            "gallery_version": self.gallery_version,
        }


class Identity:
    def __init__(
        self,
        embedder: ModelRef,
        curves: CurveSet | None,
        gallery_key: bytes,
        store_path: Path,
        key_path: Path,
        per_search: float,
        top_k: int = 3,
    ) -> None:
        self.embedder, self.curves, self.gallery_key = embedder, curves, gallery_key
        self.per_search, self.top_k = per_search, top_k
        box = open_box(key_path)
        self.store = GalleryStore(store_path, box)
        self.incoming = Incoming(store_path.with_name(store_path.name + ".incoming"), box)
        self.gallery: gal.Gallery | None = None
        self.manifest: dict | None = None
        self.matcher = Matcher([], [])
        self.problem: str | None = (
            None if curves is not None else "the embedder's manifest has no threshold curve"
        )
        try:
            loaded = self.store.load(gallery_key, embedder)
        except gal.GalleryRefused as exc:
            # Reported in status; the file is left for the operator (a new signed snapshot replaces it).
            self.problem = f"stored gallery refused: {exc}"
            loaded = None
        if loaded is not None:
            self._install(*loaded)
            try:
                self._check_calibrated(loaded[0])
            except gal.GalleryRefused as exc:
                self.problem = f"stored gallery cannot be matched (every face is unknown): {exc}"

    def _install(self, gallery: gal.Gallery, manifest: dict) -> None:
        self.matcher = Matcher([s.id for s in gallery.subjects], [s.templates for s in gallery.subjects])
        self.gallery, self.manifest = gallery, manifest

    @property
    def active(self) -> bool:
        return self.gallery is not None and self.gallery.count > 0

    def operating_point(self) -> OperatingPoint | None:
        """None (no decision: fail closed) without a curve for every template kind the gallery holds."""
        if self.curves is None or self.gallery is None or self.matcher.comparisons == 0:
            return None
        try:
            return gallery_operating_point(
                self.curves, self.per_search, self.matcher.comparisons, self.gallery.averaged
            )
        except CurveError:
            return None

    def identify(self, embedding: np.ndarray | None) -> MatchResult | None:
        """None without a gallery; else the open-set decision (no embedding or no threshold: unknown)."""
        if not self.active or self.gallery is None:
            return None
        point = self.operating_point()
        version = self.gallery.version
        if embedding is None or point is None:
            return MatchResult(None, math.nan, math.nan, math.nan, version, None)
        decision, _ = self.matcher.decide(embedding, point.threshold, self.top_k)
        name = None
        if decision.subject is not None:
            subject = self.gallery.subject(decision.subject)
            name = subject.display_name if subject is not None else None
        return MatchResult(decision.subject, decision.score, decision.margin, point.threshold, version, name)

    def apply_update(self, manifest: Any, body: bytes | bytearray) -> dict[str, Any]:
        """Verify, apply and store one complete update; GalleryRefused (state unchanged) otherwise."""
        checked = gal.check_manifest(manifest, self.gallery_key, self.embedder)
        gallery = gal.apply(checked, body, self.gallery, self.embedder)
        self._check_calibrated(gallery)
        # A snapshot's verified body is the gallery's body: stored as it came.
        self.store.save(checked, gallery, body if checked["type"] == "snapshot" else None)
        self._install(gallery, checked)
        self.problem = None if self.curves is not None else self.problem
        return self.summary()

    def _check_calibrated(self, gallery: gal.Gallery) -> None:
        """Refuse a gallery holding a template kind (photos per template) with no threshold curve: it could
        never be matched, so it must not replace one that can."""
        if self.curves is None:
            return
        try:
            gallery_operating_point(self.curves, self.per_search, 1, gallery.averaged)
        except CurveError as exc:
            raise gal.GalleryRefused("uncalibrated", str(exc)) from None

    def sync(self, manifest: Any) -> dict[str, Any]:
        """Start or resume a chunked update: checks the manifest now, returns the transfer id and what is missing."""
        checked = gal.check_manifest(manifest, self.gallery_key, self.embedder)
        gal.check_applicable(checked, self.gallery)
        missing = self.incoming.begin(checked)
        out: dict[str, Any] = {
            "transfer": self.incoming.id,
            "missing": missing,
            "chunks": chunk_count(checked),
        }
        if not missing:  # every chunk arrived before a restart cut the transfer short of applying it
            out["gallery"] = self._apply_incoming()
        return out

    def chunk(self, transfer: str, index: int, data_b64: str, proof: Sequence[str] = ()) -> dict[str, Any]:
        """Store one chunk (checked against the manifest with its `proof`); the last one applies the update
        (and the transfer is then discarded)."""
        try:
            data = base64.b64decode(data_b64, validate=True)
        except ValueError:
            raise TransferError("chunk data must be base64") from None
        left = self.incoming.put(transfer, index, data, proof)
        if left:
            return {"transfer": transfer, "missing": self.incoming.missing(100), "missing_count": left}
        return {"transfer": transfer, "missing": [], "missing_count": 0, "gallery": self._apply_incoming()}

    def _apply_incoming(self) -> dict[str, Any]:
        manifest, body = self.incoming.manifest, self.incoming.body()
        try:
            return self.apply_update(manifest, body)
        finally:
            self.incoming.discard()

    def purge(self, subject: str) -> int:
        """Erase a subject's templates here and on disk (data-subject erasure); returns how many were erased.
        The gallery stays the backend's signed state: the subject is kept only as its hash until the
        backend's next update removes it."""
        if self.gallery is None or self.manifest is None:
            return 0
        found = self.gallery.subject(subject)
        if found is None:
            return 0
        reduced = self.gallery.without(subject)
        self.store.save(self.manifest, reduced)
        self._install(reduced, self.manifest)
        return len(found.templates)

    def summary(self, ids: bool = False) -> dict[str, Any]:
        """version, count, model, the threshold in force (and ids on request): status, birth, gallery.list."""
        out: dict[str, Any] = {
            "loaded": self.gallery is not None,
            "model": {"name": self.embedder.name, "file": self.embedder.file, "sha256": self.embedder.sha256},
        }
        if self.gallery is not None:
            out.update(self.gallery.summary())
        point = self.operating_point()
        out["threshold"] = point.as_dict() if point is not None else None
        if point is not None:
            out["threshold_meaning"] = point.meaning()
        if self.gallery is not None:
            out["templates_averaged"] = sorted(self.gallery.averaged)
        if point is not None and point.clamped:
            out["threshold_note"] = (
                f"per-comparison target {point.per_comparison_far:.2e} is below the smallest FAR the calibration "
                f"supports ({point.smallest_supported_far:.2e}): the threshold is clamped there, so the real "
                f"false-accept rate per search is not known to be within {point.per_search_far:g}"
            )
        if self.problem:
            out["problem"] = self.problem
        if ids and self.gallery is not None:
            out["ids"] = [s.id for s in self.gallery.subjects]
        return out


def load_curves(info: dict) -> CurveSet | None:
    try:
        return CurveSet.from_manifest(info)
    except CurveError as exc:
        log.error("no 1:N decisions: %s", exc)
        return None
