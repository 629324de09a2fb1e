"""Per-camera calibration of the replay cues: the terminal learns its own camera's live baseline.

The replay cues (device.vision.liveness.cues) order a live face and its replay on ONE camera, but their
absolute values depend on the lens, the sensor and the light: one global threshold turned away a live man with
glasses on one camera and let a replay through on another. So the terminal keeps, per camera, the cue values
of passes that succeeded (one robust value per pass: the median over its frames), bounded to the newest
`max_passes`, in its state dir, and scores risk RELATIVE to that baseline:

- softness: how far below the live median the face's high-frequency share lies, in robust standard deviations
  of the live passes (log scale; MAD, with a floor so a handful of identical passes cannot make it brittle);
- edges: the bezel cue above what this camera's live scenes show (a door frame behind people is normal here).

Until `min_passes` passes are learned the terminal is UNCALIBRATED: the shipped absolute cue is used, and it can
only step up a challenge, never reject on its own (device.vision.liveness.session). A pass whose calibrated
risk is already high is not learned (a replay that got through must not pull the baseline towards replays).
`faceonly calibrate` records N live passes at installation; `--reset` forgets them; status says which it is.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from device.infra.atomicfile import TornFileError, read_checksummed, write_checksummed
from device.vision.liveness.cues import CueScores, fuse, softness_absolute

log = logging.getLogger(__name__)

FILE_NAME = "liveness-calibration.json"
FORMAT = 1
LOG_SIGMA_FLOOR = 0.15  # the live share varies at least ~15% between passes on any camera
SOFTNESS_FULL_Z = 4.0  # robust standard deviations below the live median at which softness reaches 1
MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class CueSample:
    """One pass (or one frame): the face's high-frequency share and its bezel-edge cue (0..1)."""

    share: float
    edges: float


@dataclass(frozen=True)
class Baseline:
    log_share_median: float
    log_share_sigma: float
    edges_p90: float
    passes: int


def baseline_of(samples: list[CueSample]) -> Baseline | None:
    good = [s for s in samples if s.share > 0 and math.isfinite(s.share) and math.isfinite(s.edges)]
    if not good:
        return None
    logs = np.log([s.share for s in good])
    median = float(np.median(logs))
    sigma = max(MAD_TO_SIGMA * float(np.median(np.abs(logs - median))), LOG_SIGMA_FLOOR)
    edges_p90 = float(np.percentile([s.edges for s in good], 90))
    return Baseline(median, sigma, edges_p90, len(good))


def calibrated_cues(sample: CueSample, base: Baseline) -> CueScores:
    """Risk of one frame relative to the camera's live baseline (0 = like this camera's live passes)."""
    if not sample.share > 0:
        softness = 1.0 if sample.share == 0 else float("nan")  # fail closed: a NaN share stays NaN
    else:
        z = (base.log_share_median - math.log(sample.share)) / base.log_share_sigma
        softness = float(np.clip(z / SOFTNESS_FULL_Z, 0.0, 1.0))
    headroom = max(1.0 - base.edges_p90, 1e-6)
    edges = float(np.clip((sample.edges - base.edges_p90) / headroom, 0.0, 1.0))
    return fuse(softness, edges)


class CueCalibration:
    """The learned live baseline of one terminal's camera, persisted in its state dir (None: in memory)."""

    def __init__(
        self, path: Path | None, min_passes: int = 5, max_passes: int = 200, learn_below: float = 0.5
    ) -> None:
        self.path = path
        self.min_passes, self.max_passes, self.learn_below = min_passes, max_passes, learn_below
        self._samples: list[CueSample] = []
        self._base: Baseline | None = None
        if path is not None:
            self._load(path)

    @classmethod
    def in_state_dir(cls, state_dir: Path, **kw: Any) -> CueCalibration:
        return cls(Path(state_dir) / FILE_NAME, **kw)

    def _load(self, path: Path) -> None:
        try:
            raw = json.loads(read_checksummed(path))
            if raw.get("format") != FORMAT:
                raise ValueError(f"unknown format {raw.get('format')!r}")
            samples = [CueSample(float(p["share"]), float(p["edges"])) for p in raw["passes"]]
        except FileNotFoundError:
            return
        except (OSError, TornFileError, ValueError, KeyError, TypeError) as exc:
            # A damaged file makes the terminal uncalibrated (the safe side: the cue cannot reject), loudly.
            log.warning("liveness calibration %s unreadable (%s): uncalibrated until recalibrated", path, exc)
            return
        self._samples = samples[-self.max_passes :]
        self._base = baseline_of(self._samples)

    def _save(self) -> None:
        if self.path is None:
            return
        body = {
            "format": FORMAT,
            "updated": time.time(),
            "passes": [{"share": s.share, "edges": s.edges} for s in self._samples],
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_checksummed(self.path, json.dumps(body, separators=(",", ":")).encode("utf-8"))

    @property
    def passes(self) -> int:
        return len(self._samples)

    @property
    def calibrated(self) -> bool:
        return self._base is not None and self.passes >= self.min_passes

    def scores(self, sample: CueSample, sharpness_ref: float) -> CueScores:
        """Calibrated cues when calibrated, else the shipped absolute ones (which only step up)."""
        if self.calibrated and self._base is not None:
            return calibrated_cues(sample, self._base)
        return fuse(softness_absolute(sample.share, sharpness_ref), sample.edges)

    def learn(self, sample: CueSample, risk: float | None = None, save: bool = True) -> bool:
        """Add one successful pass; False (not learned) when its calibrated risk was already high."""
        if not (sample.share > 0 and math.isfinite(sample.share) and math.isfinite(sample.edges)):
            return False
        if self.calibrated and risk is not None and not risk < self.learn_below:
            return False
        self._samples = [*self._samples, sample][-self.max_passes :]
        self._base = baseline_of(self._samples)
        if save:
            self._save()
        return True

    def reset(self) -> None:
        self._samples, self._base = [], None
        if self.path is not None:
            self.path.unlink(missing_ok=True)

    def status(self) -> dict[str, Any]:
        return {"calibrated": self.calibrated, "passes": self.passes, "needed": self.min_passes}
