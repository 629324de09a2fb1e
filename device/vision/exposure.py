"""Exposure metered on the face: the camera's auto-exposure is steered so that the FACE, not the scene, is
well exposed (a person against a bright window, a dim office webcam).

The loop reads the brightness of the largest detected face each frame and moves the camera's exposure
compensation by a damped step in stops (log2 of target / measured) when the face leaves a dead band around
the target; with no face for a while it relaxes back to 0 EV. Cameras apply it through `ExposureControls`:
- picamera2: libcamera's centre-weighted AeMeteringMode and its ExposureValue control (EV, in stops);
- V4L2 (OpenCV): where the device offers manual exposure, exposure time scaled by 2^EV (then gain);
  a device without these controls gets none, and the loop is not attached.
Replays are never altered: a replay source has no controls (`controls_of` returns None).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from device.contracts import Detection, Frame
from device.vision.quality import face_patch

log = logging.getLogger(__name__)


class ExposureControls(Protocol):
    def set_exposure_value(self, ev: float) -> None:
        """Exposure compensation in stops (0 = the camera's own auto-exposure)."""
        ...


Controls = Callable[[], ExposureControls | None]  # the camera's controls now (None while closed)


def controls_of(source: Any) -> Controls | None:
    """How to reach the source's exposure controls: only a live camera has them, never a replay."""
    if not getattr(source, "live", False):
        return None
    controls = getattr(source, "exposure_controls", None)
    return controls if callable(controls) else None


class FaceExposure:
    """`observe(frame, detections)` after each detection (VisionPipeline.faces_hook)."""

    def __init__(
        self,
        controls: Controls,
        target: float = 115.0,
        dead_band: float = 0.3,
        damping: float = 0.5,
        ev_range: tuple[float, float] = (-2.0, 3.0),
        relax_after_s: float = 3.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.controls = controls
        self.target, self.dead_band, self.damping = target, dead_band, damping
        self.ev_range, self.relax_after_s = ev_range, relax_after_s
        self._clock = clock
        self.ev = 0.0
        self.face_brightness: float | None = None
        self._last_face = clock()

    def observe(self, frame: Frame, detections: list[Detection]) -> None:
        now = self._clock()
        if not detections:
            if self.ev != 0.0 and now - self._last_face > self.relax_after_s:
                self._set(0.0 if abs(self.ev) < 0.25 else self.ev * 0.5)
            return
        self._last_face = now
        face = max(detections, key=lambda d: float((d.box[2] - d.box[0]) * (d.box[3] - d.box[1])))
        patch = face_patch(frame.image, face.box, shrink=0.15)
        if patch is None:
            return
        brightness = float(np.clip(patch.mean(), 1.0, 255.0))
        self.face_brightness = brightness
        error = math.log2(self.target / brightness)  # stops the face is off its target
        if abs(error) <= self.dead_band:
            return
        step = float(np.clip(self.damping * error, -1.0, 1.0))
        self._set(float(np.clip(self.ev + step, *self.ev_range)))

    def _set(self, ev: float) -> None:
        if ev == self.ev:
            return
        controls = self.controls()
        if controls is None:
            return  # camera closed (reopening): tried again on a later frame
        self.ev = ev
        try:
            controls.set_exposure_value(ev)
        except Exception as exc:  # noqa: BLE001 - a camera driver refusing a control must not stop the frame loop
            log.warning("exposure control failed: %s", exc.__class__.__name__)

    def stats(self) -> dict[str, Any]:
        b = self.face_brightness
        return {"ev": round(self.ev, 2), "face_brightness": None if b is None else round(b, 1)}
