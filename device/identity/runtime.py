"""The terminal's identity state: the verified gallery, its matcher, the threshold in force, and updates.

Owned by the service loop (one thread): every accepted observation is searched here, and gallery commands
(sync, chunks, add, remove, purge) go through `apply_update` / `sync` / `chunk`, which change the state only
after the update was verified and stored; a refused update leaves the gallery exactly as it was. The update a
chunked transfer completes is verified, applied and stored on a worker thread (a 100,000-subject gallery
takes seconds); the loop keeps matching against the gallery it has, answers the gallery commands `busy`
meanwhile, and installs the new one when `finish_apply` finds it done.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from device.contracts import ModelRef, ProbeKind
from device.identity import gallery as gal
from device.identity.matcher import Matcher
from device.identity.probe import decide as decide_probe
from device.identity.store import GalleryStore, open_box
from device.identity.thresholds import CurveError, CurveSet, OperatingPoint, gallery_operating_point
from device.identity.transfer import Incoming, TransferError, chunk_count

log = logging.getLogger(__name__)


class Busy(Exception):
    """The gallery cannot be changed now (an update is being applied); nothing was changed."""


class PendingApply:
    """A complete transfer being verified, applied and stored on its own thread."""

    def __init__(self, work: Callable[[], tuple[gal.Gallery, dict, Matcher]], transfer: str) -> None:
        self.transfer = transfer
        self._work = work
        self._result: tuple[gal.Gallery, dict, Matcher] | None = None
        self._error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="gallery-apply", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self._result = self._work()
        except BaseException as exc:  # noqa: BLE001 - handed to the loop, which reports it as the reply
            self._error = exc

    @property
    def done(self) -> bool:
        return not self.thread.is_alive()

    def result(self) -> tuple[gal.Gallery, dict, Matcher]:
        self.thread.join()
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result


def _matcher(gallery: gal.Gallery) -> Matcher:
    return Matcher([s.id for s in gallery.subjects], [s.templates for s in gallery.subjects])


@dataclass(frozen=True)
class MatchResult:
    """What the event's `match` says; subject None = unknown (or no usable score: fail closed)."""

    subject: str | None
    score: float
    margin: float
    threshold: float
    gallery_version: int
    display_name: str | None  # for the person at the gate only; never in an event
    probe: ProbeKind = "flip"  # the kind of probe the score and threshold are of

    def as_event(self) -> dict[str, Any]:
        def num(v: float) -> float | None:
            return round(float(v), 6) if math.isfinite(v) else None

        return {
            "subject": self.subject,
            "score": num(self.score),
            "margin": num(self.margin),
            "threshold": num(self.threshold),
            "gallery_version": self.gallery_version,
            "probe": self.probe,
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
        self.applying: PendingApply | None = None
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

    def _install(self, gallery: gal.Gallery, manifest: dict, matcher: Matcher | None = None) -> None:
        self.matcher = matcher if matcher is not None else _matcher(gallery)
        self.gallery, self.manifest = gallery, manifest

    @property
    def active(self) -> bool:
        return self.gallery is not None and self.gallery.count > 0

    def operating_point(self, probe: ProbeKind = "flip") -> OperatingPoint | None:
        """None (no decision: fail closed) without a curve of the probe's kind for every template kind the
        gallery holds."""
        if self.curves is None or self.gallery is None or self.matcher.comparisons == 0:
            return None
        try:
            return gallery_operating_point(
                self.curves, self.per_search, self.matcher.comparisons, self.gallery.averaged, probe=probe
            )
        except CurveError:
            return None

    def identify(
        self,
        embedding: np.ndarray | None,
        probe: ProbeKind = "flip",
        mirror: Callable[[], np.ndarray] | None = None,
    ) -> MatchResult | None:
        """None without a gallery; else the open-set decision (no embedding or no threshold: unknown). A
        single-view probe decides alone unless it is close to its threshold; then `mirror()` (its flip
        average) decides (device.identity.probe); MatchResult.probe says which did."""
        if not self.active or self.gallery is None:
            return None
        version = self.gallery.version
        band = self.curves.mirror_band if self.curves is not None else None
        decided = decide_probe(self.matcher, embedding, probe, mirror, self.operating_point, band, self.top_k)
        decision, point = decided.decision, decided.point
        if embedding is None or point is None:
            return MatchResult(None, math.nan, math.nan, math.nan, version, None, decided.probe)
        name = None
        if decision.subject is not None:
            subject = self.gallery.subject(decision.subject)
            name = subject.display_name if subject is not None else None
        return MatchResult(
            decision.subject, decision.score, decision.margin, point.threshold, version, name, decided.probe
        )

    def apply_update(self, manifest: Any, body: bytes | bytearray) -> dict[str, Any]:
        """Verify, apply and store one complete update; GalleryRefused (state unchanged) otherwise."""
        self._not_applying()
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
        if (
            self.curves is None or not gallery.averaged
        ):  # an empty gallery (the last subject removed) needs none
            return
        try:
            gallery_operating_point(self.curves, self.per_search, 1, gallery.averaged)
        except CurveError as exc:
            raise gal.GalleryRefused("uncalibrated", str(exc)) from None

    def sync(self, manifest: Any) -> dict[str, Any]:
        """Start or resume a chunked update: checks the manifest now, returns the transfer id and what is missing.
        (With nothing missing, sending any one chunk again applies it.)"""
        self._not_applying()
        checked = gal.check_manifest(manifest, self.gallery_key, self.embedder)
        gal.check_applicable(checked, self.gallery)
        missing = self.incoming.begin(checked)
        return {"transfer": self.incoming.id, "missing": missing, "chunks": chunk_count(checked)}

    def chunk(
        self, transfer: str, index: int, data: bytes, proof: Sequence[str] = ()
    ) -> dict[str, Any] | None:
        """Store one chunk (checked against the manifest with its `proof`). None: nothing is missing any more,
        and the update is being verified, applied and stored on a worker thread (`finish_apply` gives the
        outcome), so a large gallery does not stop the frame loop."""
        self._not_applying()
        left = self.incoming.put(transfer, index, data, proof)
        if left:
            return {"transfer": transfer, "missing": self.incoming.missing(100), "missing_count": left}
        self.applying = PendingApply(self._applied_update, transfer)
        return None

    def _applied_update(self) -> tuple[gal.Gallery, dict, Matcher]:
        """On the worker thread: reads only the transfer and the current (immutable) gallery; the loop
        changes neither while an update is applying (the gallery commands answer busy)."""
        body = self.incoming.body()
        checked = gal.check_manifest(self.incoming.manifest, self.gallery_key, self.embedder)
        gallery = gal.apply(checked, body, self.gallery, self.embedder)
        self._check_calibrated(gallery)
        self.store.save(checked, gallery, body if checked["type"] == "snapshot" else None)
        del body
        return gallery, checked, _matcher(gallery)

    def finish_apply(self) -> dict[str, Any] | Exception | None:
        """On the loop: None while no update is applying or it is still running; else the chunk reply of the
        update (the new gallery installed) or why it was not applied (GalleryRefused, TransferError, OSError;
        the gallery unchanged)."""
        if self.applying is None or not self.applying.done:
            return None
        pending, self.applying = self.applying, None
        try:
            gallery, checked, matcher = pending.result()
        except TransferError as exc:  # a chunk damaged on disk: it was dropped, the transfer resumes
            return exc
        except Exception as exc:  # noqa: BLE001 - refused, or not storable (disk full): reported, gallery unchanged
            self.incoming.discard()
            return exc
        self.incoming.discard()
        self._install(gallery, checked, matcher)
        self.problem = None if self.curves is not None else self.problem
        return {"transfer": pending.transfer, "missing": [], "missing_count": 0, "gallery": self.summary()}

    def _not_applying(self) -> None:
        if self.applying is not None:
            raise Busy("a gallery update is being applied; retry in a moment")

    def close(self) -> None:
        """Wait for an update being applied (its store write is atomic either way)."""
        if self.applying is not None:
            self.applying.thread.join()

    def purge(self, subject: str) -> int:
        """Erase a subject's templates here and on disk (data-subject erasure); returns how many were erased.
        The gallery stays the backend's signed state: the subject is kept only as its hash until the
        backend's next update removes it."""
        self._not_applying()
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
        single = self.operating_point("single")
        if single is not None and self.curves is not None and self.curves.mirror_band is not None:
            # A probe is one view of the face unless it lands within the band of this threshold.
            out["single_view"] = {
                "threshold": round(single.threshold, 6),
                "mirror_band": self.curves.mirror_band,
            }
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
