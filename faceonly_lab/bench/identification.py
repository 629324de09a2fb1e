"""The bench's 1:N: what an accepted face costs in embedder invokes when it is matched as the terminal
matches it (device.identity.probe: one invoke, the mirror image only on a close call; an unknown face's
embedding leaves flip-averaged, device.privacy.protector.as_sent).

The gallery is GALLERY_SIZE synthetic strangers (what a search of a mid-size site costs) plus, while one
accepted face is matched, that face's own person, enrolled from another moment of the same track: a clip can
show several people (the hamilton clip ends on its audience), and only the tracker, never a score, says which
faces are one person's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from device.config.vision import TrackerConfig, VisionConfig
from device.contracts import Detection, Frame, ProbeKind
from device.identity.matcher import Matcher
from device.identity.probe import decide as decide_probe
from device.identity.thresholds import CurveError, CurveSet, OperatingPoint, gallery_operating_point
from device.privacy.protector import as_sent
from device.vision.embed import FaceEncoder
from device.vision.quality import QualityGate
from device.vision.sources import iter_frames, open_source
from device.vision.tracker import Tracker

GALLERY_SIZE = 1000
ENROLLED = "enrolled"  # the replay's own person in the bench gallery
PER_SEARCH = 1e-3  # identity.false_accept_per_search's default
ENROL_APART_S = 1.0  # a template frame at least this far from the face it is matched with


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
        """The observation as it is sent after the terminal's 1:N decision (identity.send_embedding's
        default, unknown_only)."""
        return self.identify(observation)[0]

    def identify_each(self, accepted: list[Any], templates: list[np.ndarray | None]) -> dict[str, int]:
        """Each accepted face matched with its own person enrolled (its template; None: a stranger to the
        gallery): how many needed the mirror image, were enrolled, matched them, or matched a stranger."""
        decided = []
        for observation, template in zip(accepted, templates, strict=True):
            self.enrol(template)
            decided.append(self.identify(observation))
        self.enrol(None)
        return {
            "mirrored": sum(sent.probe == "flip" for sent, _ in decided),
            "enrolled": sum(t is not None for t in templates),
            "matched": sum(subject == ENROLLED for _, subject in decided),
            "false_matches": sum(subject not in (None, ENROLLED) for _, subject in decided),
        }

    def identify(self, observation: Any) -> tuple[Any, str | None]:
        """The terminal's 1:N decision: the observation as it is then sent, and whom it matched."""
        if observation.embedding is None or observation.decision != "accepted":
            return observation, None
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
        subject = decided.decision.subject
        return as_sent(decided_as, "unknown_only", subject is not None), subject


@dataclass(frozen=True)
class TrackedFace:
    index: int  # the frame's index in the replay
    t: float  # the frame's timestamp (what an observation's best_frame_time is)
    track_id: int
    detection: Detection


class TrackLog:
    """Which track each detected face belongs to, frame by frame: a tracker of the pipeline's own kind and
    config, fed the detections the pipeline's tracker is fed (VisionPipeline.faces_hook), so its tracks are
    the pipeline's."""

    def __init__(self, config: TrackerConfig) -> None:
        self._tracker = Tracker(config)
        self.faces: list[TrackedFace] = []

    def __call__(self, frame: Frame, detections: list[Detection]) -> None:
        for tid, det in self._tracker.update(detections, frame.monotonic).matched:
            self.faces.append(TrackedFace(frame.index, frame.timestamp, tid, det))

    def track_of(self, observation: Any) -> int | None:
        """The track whose face was the observation's best frame (the same time, the same box)."""
        for face in self.faces:
            if face.t == observation.best_frame_time and np.allclose(
                face.detection.box, observation.box, atol=1e-3
            ):
                return face.track_id
        return None

    def other_moments(self, observation: Any) -> list[TrackedFace]:
        """The faces of the observation's track at least ENROL_APART_S from its best frame."""
        tid = self.track_of(observation)
        return [
            f
            for f in self.faces
            if f.track_id == tid and abs(f.t - observation.best_frame_time) >= ENROL_APART_S
        ]


def enrol_templates(
    spec: str, log: TrackLog, accepted: list[Any], encoder: FaceEncoder
) -> list[np.ndarray | None]:
    """Per accepted face, a template of its person as a walk-up enrolment at the same terminal makes it
    (flip-averaged): the best good face of its own track at least ENROL_APART_S from the face's best frame;
    None when its track has none (the face is then a stranger to the gallery, as it would be on site)."""
    wanted = [log.other_moments(obs) for obs in accepted]
    by_frame: dict[int, list[tuple[int, TrackedFace]]] = {}
    for i, faces in enumerate(wanted):
        for face in faces:
            by_frame.setdefault(face.index, []).append((i, face))
    gate = QualityGate(VisionConfig().quality)
    best: list[tuple[float, np.ndarray, Detection] | None] = [None] * len(accepted)
    source = open_source(spec, VisionConfig(replay_pace="fast"))
    try:
        with iter_frames(source) as frames:
            for frame in frames:
                for i, face in by_frame.get(frame.index, []):
                    q = gate.assess(frame.image, face.detection)
                    held = best[i]
                    if q.ok and (held is None or q.score > held[0]):
                        best[i] = (q.score, frame.image.copy(), face.detection)
    finally:
        source.close()
    return [None if b is None else encoder.encode(b[1], b[2]).embedding for b in best]
