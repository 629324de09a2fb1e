"""The one gallery authority: the backend keeps subjects' templates and the gallery's ONE version counter.

The gallery is the identity tools' own signed update file (device/identity/operator.py), marked
`authority: backend`; each change is a signed delta on the latest version, kept in the store (so every
instance of a group sees the same one; two instances signing the same version at once: the second retries
on the first's). A terminal holding a backend gallery refuses lab updates (device/identity/gallery.py), so
the CLI's counter can no longer race this one. A terminal that holds another gallery at a version this one
has not reached (made by the lab tools before the backend took over) is adopted: the backend signs its own
gallery as a snapshot one version above it, and that is the counter from then on.

Matching uses the terminal's matcher and the embedder's threshold curves from the model manifest, with the
same per-search false-accept target rule; an embedding made by another embedder is not compared (no match).
"""

from __future__ import annotations

import logging
import math
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from device.contracts import ModelRef, ProbeKind
from device.identity import operator as op
from device.identity.gallery import Subject
from device.identity.matcher import Matcher
from device.identity.thresholds import CurveError, CurveSet, OperatingPoint, gallery_operating_point
from faceonly_backend.config import BackendConfig
from faceonly_backend.db import INTEGRITY_ERRORS
from faceonly_backend.store import Store

log = logging.getLogger(__name__)
AUTHORITY = "backend"
SIGN_TRIES = 5


class GalleryError(RuntimeError):
    """A gallery change that did not happen; the message says why."""


@dataclass(frozen=True)
class CentralMatch:
    """The central 1:N decision, and how near it came: the nearest subject whether matched or not."""

    subject: str | None
    score: float
    margin: float
    threshold: float
    nearest: str | None
    nearest_score: float


NO_MATCH = CentralMatch(None, math.nan, math.nan, math.nan, None, math.nan)


def update_bytes(update: op.UpdateFile) -> bytes:
    """The update file's bytes (operator.write_update's format, through a private temp file)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "update.fog"
        op.write_update(path, update)
        return path.read_bytes()


def update_from_bytes(data: bytes) -> op.UpdateFile:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "update.fog"
        path.write_bytes(data)
        return op.read_update(path)


class CentralGallery:
    def __init__(self, cfg: BackendConfig, store: Store) -> None:
        from device.infra.modelstore import ModelStore

        self.cfg, self.store = cfg, store
        entry = ModelStore(cfg.identity.models_dir).entry("embedder")
        self.embedder = ModelRef("embedder", entry.file, entry.sha256)
        try:
            self.curves: CurveSet | None = CurveSet.from_manifest(entry.info)
        except CurveError as exc:
            log.error("no central 1:N decisions: %s", exc)
            self.curves = None
        self._lock = threading.Lock()
        self._change = threading.Lock()
        self.update: op.UpdateFile | None = None
        self.matcher = Matcher([], [])
        self.point: OperatingPoint | None = None
        self.single_point: OperatingPoint | None = None  # for single-view probes (biometric.probe "single")
        self._load(store.latest_gallery())

    def _load(self, data: bytes | None) -> None:
        if data is None:
            return
        update = update_from_bytes(data)
        gallery = update.gallery(self.embedder)
        matcher = Matcher([s.id for s in gallery.subjects], [s.templates for s in gallery.subjects])
        points: dict[ProbeKind, OperatingPoint | None] = {"flip": None, "single": None}
        # Fail closed: a probe kind without a curve for every template kind the gallery holds is not matched.
        if self.curves is not None and matcher.comparisons:
            for probe in points:
                try:
                    points[probe] = gallery_operating_point(
                        self.curves,
                        self.cfg.identity.false_accept_per_search,
                        matcher.comparisons,
                        gallery.averaged,
                        probe=probe,
                    )
                except CurveError as exc:
                    log.error(
                        "no central 1:N decisions for %s probes on gallery version %s: %s",
                        probe,
                        update.manifest["version"],
                        exc,
                    )
        with self._lock:
            self.update, self.matcher = update, matcher
            self.point, self.single_point = points["flip"], points["single"]

    @property
    def version(self) -> int | None:
        update = self.update
        return None if update is None else int(update.manifest["version"])

    @property
    def sha256(self) -> str | None:
        update = self.update
        return None if update is None else str(update.manifest["result_sha256"])

    @property
    def threshold(self) -> float:
        point = self.point
        return math.nan if point is None else point.threshold

    @property
    def threshold_meaning(self) -> str | None:
        """The central 1:N setting in words, at this gallery's size (the page shows it)."""
        point = self.point
        return None if point is None else point.meaning()

    def subjects(self) -> list[Subject]:
        update = self.update
        return [] if update is None else list(update.gallery(self.embedder).subjects)

    def holds(self, subject: str) -> bool:
        with self._lock:
            return subject in self.matcher.subjects

    def identify(
        self, embedding: np.ndarray, embedder_sha: str | None, probe: ProbeKind = "flip"
    ) -> CentralMatch:
        """Open-set 1:N on the central gallery; another embedder's embedding is never compared. A single-view
        probe (biometric.probe) is matched at its own curves' threshold."""
        with self._lock:
            matcher, point = self.matcher, self.point if probe == "flip" else self.single_point
        if embedder_sha != self.embedder.sha256 or matcher.size == 0:
            return NO_MATCH
        threshold = math.nan if point is None else point.threshold
        decision, found = matcher.decide(embedding, threshold)
        nearest = found.top[0] if found.top else None
        return CentralMatch(
            decision.subject,
            decision.score,
            decision.margin,
            threshold,
            nearest.subject if nearest is not None else None,
            nearest.score if nearest is not None else math.nan,
        )

    def tick(self) -> None:
        """Pick up a gallery version another instance stored."""
        latest = self.store.latest_gallery_version()
        if latest is not None and latest != self.version:
            self._load(self.store.latest_gallery())

    # ---- changes ---------------------------------------------------------------------------------

    def signer(self):
        path = self.cfg.identity.gallery_key_file
        if path is None:
            raise GalleryError("no gallery key: set [identity] gallery_key_file (faceonly gallery keygen)")
        return op.load_gallery_signer(path)

    def change(self, add: tuple[Subject, ...] = (), remove: tuple[str, ...] = ()) -> int:
        """Sign the next gallery version (a delta, or the first snapshot) and store it; its version. The caller
        pushes it."""
        return self._sign(lambda base: self._next(base, add, remove))

    def adopt(self, held_version: int) -> int:
        """Re-sign the gallery as a snapshot above `held_version` (a terminal's gallery from before this
        backend kept it): the version counter jumps past it, once, for every terminal."""

        def above(base: op.UpdateFile | None) -> op.UpdateFile:
            version = max(held_version, base_version(base)) + 1
            subjects = [] if base is None else list(base.gallery(self.embedder).subjects)
            return op.snapshot(self.signer(), subjects, version, self.embedder, authority=AUTHORITY)

        return self._sign(above)

    def _next(
        self, base: op.UpdateFile | None, add: tuple[Subject, ...], remove: tuple[str, ...]
    ) -> op.UpdateFile:
        signer = self.signer()
        if base is None:
            if remove:
                raise GalleryError("there is no gallery yet to remove subjects from")
            return op.snapshot(signer, list(add), 1, self.embedder, authority=AUTHORITY)
        try:
            return op.delta(signer, base, self.embedder, add, remove, authority=AUTHORITY)
        except ValueError as exc:
            raise GalleryError(str(exc)) from None

    def _sign(self, make) -> int:
        with self._change:
            for _ in range(SIGN_TRIES):
                self.tick()  # sign on the latest version any instance stored
                update = make(self.update)
                data = update_bytes(update)
                try:
                    self.store.put_gallery(int(update.manifest["version"]), data)
                except INTEGRITY_ERRORS:  # another instance stored this version first: sign on its version
                    continue
                self._load(data)
                return int(update.manifest["version"])
        raise GalleryError("other instances kept changing the gallery: try again")

    def for_terminal(self, held_version: int | None, held_sha: str | None) -> op.UpdateFile | None:
        """What a terminal holding (version, sha) needs: None when it holds the latest, the delta when it
        holds the delta's base, else a snapshot of the latest."""
        update = self.update
        if update is None:
            return None
        version = int(update.manifest["version"])
        if held_version == version and held_sha in (None, update.manifest["result_sha256"]):
            return None
        manifest = update.manifest
        if (
            manifest.get("type") == "delta"
            and held_version == manifest.get("base_version")
            and held_sha in (None, manifest.get("base_sha256"))
        ):
            return update
        subjects = list(update.gallery(self.embedder).subjects)
        return op.snapshot(self.signer(), subjects, version, self.embedder, authority=AUTHORITY)


def base_version(update: op.UpdateFile | None) -> int:
    return 0 if update is None else int(update.manifest["version"])
