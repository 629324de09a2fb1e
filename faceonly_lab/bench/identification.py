"""The bench's 1:N: what an accepted face costs in embedder invokes when it is matched as the terminal
matches it (device.identity.probe: one invoke, the mirror image only on a close call; an unknown face's
embedding leaves flip-averaged, device.privacy.protector.as_sent).

The gallery is GALLERY_SIZE synthetic strangers (what a search of a mid-size site costs) plus, for the
identification pass, the replay's own person enrolled from another moment of the same clip.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from device.config.vision import VisionConfig
from device.contracts import ProbeKind
from device.identity.matcher import Matcher
from device.identity.probe import decide as decide_probe
from device.identity.thresholds import CurveError, CurveSet, OperatingPoint, gallery_operating_point
from device.privacy.protector import as_sent
from device.vision.detect import FaceDetector
from device.vision.embed import FaceEncoder
from device.vision.quality import QualityGate
from device.vision.sources import iter_frames, open_source

GALLERY_SIZE = 1000
ENROLLED = "enrolled"  # the replay's own person in the bench gallery
PER_SEARCH = 1e-3  # identity.false_accept_per_search's default
ENROL_APART_S = 1.0  # a template frame this far from the faces it is matched with (when not the last quarter)


class BenchGallery:
    """The synthetic strangers, plus one enrolled person while an identification pass runs."""

    def __init__(self, dim: int, curves: CurveSet, stage) -> None:
        self.curves, self._stage = curves, stage
        self.strangers = np.random.default_rng(0).normal(size=(GALLERY_SIZE, dim)).astype(np.float32)
        self.matcher = self._matcher(None)

    def enrol(self, template: np.ndarray | None) -> None:
        """`template` joins the strangers (None: the strangers alone again)."""
        self.matcher = self._matcher(template)

    def _matcher(self, enrolled: np.ndarray | None) -> Matcher:
        ids = [f"s{i}" for i in range(GALLERY_SIZE)]
        templates = list(self.strangers[:, None, :])
        if enrolled is not None:
            ids.append(ENROLLED)
            templates.append(enrolled[None, :])
        return Matcher(ids, templates)

    def _point(self, probe: ProbeKind) -> OperatingPoint | None:
        try:
            return gallery_operating_point(
                self.curves, PER_SEARCH, self.matcher.comparisons, {1}, probe=probe
            )
        except CurveError:
            return None

    def match(self, observation: Any) -> Any:
        """The terminal's 1:N decision; the observation as it is then sent (identity.send_embedding's
        default, unknown_only)."""
        if observation.embedding is None or observation.decision != "accepted":
            return observation
        t0 = time.perf_counter()
        decided = decide_probe(
            self.matcher,
            observation.embedding,
            observation.probe,
            observation.mirror,
            self._point,
            self.curves.mirror_band,
        )
        self._stage("match", (time.perf_counter() - t0) * 1000.0)
        decided_as = observation.with_flip() if decided.probe == "flip" else observation
        return as_sent(decided_as, "unknown_only", decided.decision.subject is not None)


def enrol_template(
    spec: str, detector: FaceDetector, encoder: FaceEncoder, avoid: list[float]
) -> np.ndarray | None:
    """A template of the replay's person as a walk-up enrolment at the same terminal makes it, flip-
    averaged: the sharpest good face of the replay's last quarter, else of any frame at least ENROL_APART_S
    from the best frame of every face it will be matched with (`avoid`); None when there is none."""
    source = open_source(spec, VisionConfig(replay_pace="fast"))
    try:
        with iter_frames(source) as frames:
            shots = [(frame.timestamp, frame.image.copy()) for frame in frames]
    finally:
        source.close()
    gate = QualityGate(VisionConfig().quality)

    def best(candidates: list[tuple[float, np.ndarray]]) -> tuple[float, np.ndarray, Any] | None:
        found: tuple[float, np.ndarray, Any] | None = None
        for _, image in candidates:
            faces = detector.detect(image)
            if not faces:
                continue
            face = max(faces, key=lambda d: float((d.box[2] - d.box[0]) * (d.box[3] - d.box[1])))
            q = gate.assess(image, face)
            if q.ok and (found is None or q.score > found[0]):
                found = (q.score, image, face)
        return found

    chosen = best(shots[len(shots) * 3 // 4 :])
    if chosen is None:
        chosen = best([s for s in shots if all(abs(s[0] - t) >= ENROL_APART_S for t in avoid)])
    return None if chosen is None else encoder.encode(chosen[1], chosen[2]).embedding
