"""The quality gate: is this face frame good enough to decide on? Every rejection comes with its reason.

It judges what the models need, relative to the camera, not absolute pixel statistics: the face patch is
exposure-normalised first (device.vision.normalise, the same gamma the mesh and iris crops get), and its
sharpness and contrast are read after that, so a dim but clear webcam face passes where a bright blurred one
does not. Only a face with almost no light at all (`min_brightness`) is refused before the mesh runs.

Two stages. `assess` (every face, every frame, detector only): size, cut-off, pose from the detector's 6
keypoints (roll from the eye line, yaw from the nose's shift against the eyes, pitch from where the nose sits
between eyes and mouth), and the normalised patch's sharpness (variance of the Laplacian at 112 px, so it does
not grow with face size) and contrast. `with_mesh` (where the mesh ran): the mesh's own confidence that it
sees a face and the inter-ocular distance in pixels; a dim face the mesh cannot find is `quality.too_dark`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from device.config.vision import QualityConfig
from device.contracts import Detection, Reason
from device.vision.meshpoints import inter_ocular
from device.vision.normalise import apply_gamma, exposure_gamma

RIGHT_EYE, LEFT_EYE, NOSE, MOUTH = range(4)
NORM_SIZE = 112
# Where the nose tip sits between the eye line (0) and the mouth (1) on a level head, measured on LFW.
NOSE_LEVEL = 0.52
NOSE_PITCH_GAIN = 1.6  # ratio change per radian of pitch, same measurement
NOSE_DEPTH = 0.48


@dataclass(frozen=True)
class Pose:
    yaw: float  # degrees; positive = face turned towards the image's right (the subject's left)
    pitch: float  # degrees; positive = looking down
    roll: float  # degrees; positive = clockwise in the image


@dataclass(frozen=True)
class QualityResult:
    ok: bool
    score: float  # 0..1, higher = better frame to decide on (used to pick the best frame)
    metrics: dict[str, float]
    reasons: tuple[Reason, ...]


def keypoint_pose(keypoints: np.ndarray) -> Pose:
    kp = np.asarray(keypoints, np.float64)
    eye_vec = kp[LEFT_EYE] - kp[RIGHT_EYE]
    roll = math.atan2(eye_vec[1], eye_vec[0])
    # Undo roll so yaw and pitch are read along the face's own axes.
    c, s = math.cos(-roll), math.sin(-roll)
    rot = np.array([[c, -s], [s, c]])
    p = (kp - kp[NOSE]) @ rot.T
    # The ear keypoints are too noisy for yaw; the nose tip sits ~0.48 inter-ocular distances in front of
    # the eyes (adult head), so its sideways shift over the (foreshortened) eye distance is 0.48 tan(yaw).
    eyes_x = (p[RIGHT_EYE][0] + p[LEFT_EYE][0]) / 2
    iod = max(abs(p[LEFT_EYE][0] - p[RIGHT_EYE][0]), 1e-6)
    yaw = math.atan((0.0 - eyes_x) / (NOSE_DEPTH * iod))
    eyes_y = (p[RIGHT_EYE][1] + p[LEFT_EYE][1]) / 2
    span = p[MOUTH][1] - eyes_y
    ratio = (0.0 - eyes_y) / span if abs(span) > 1e-6 else NOSE_LEVEL
    pitch = math.asin(float(np.clip((ratio - NOSE_LEVEL) * NOSE_PITCH_GAIN, -1, 1)))
    return Pose(math.degrees(yaw), math.degrees(pitch), math.degrees(roll))


def face_patch(frame_bgr: np.ndarray, box: np.ndarray, shrink: float = 0.0) -> np.ndarray | None:
    """Grey face region (box shrunk by `shrink` of its size on each side) clipped to the frame; a copy."""
    h, w = frame_bgr.shape[:2]
    x0, y0, x1, y1 = (float(v) for v in box)
    dx, dy = (x1 - x0) * shrink, (y1 - y0) * shrink
    xa, ya = max(0, int(x0 + dx)), max(0, int(y0 + dy))
    xb, yb = min(w, int(x1 - dx)), min(h, int(y1 - dy))
    if xb - xa < 4 or yb - ya < 4:
        return None
    return cv2.cvtColor(frame_bgr[ya:yb, xa:xb], cv2.COLOR_BGR2GRAY)


def sharpness(grey_face: np.ndarray) -> float:
    norm = cv2.resize(grey_face, (NORM_SIZE, NORM_SIZE), interpolation=cv2.INTER_AREA)
    return float(cv2.meanStdDev(cv2.Laplacian(norm, cv2.CV_32F))[1][0, 0] ** 2)


def contrast(grey_face: np.ndarray) -> float:
    """Standard deviation of the grey levels: what is left for the models to see."""
    return float(cv2.meanStdDev(grey_face)[1][0, 0])


def clipped_share(grey_face: np.ndarray) -> float:
    """Share of pixels at black (<= 2) or white (>= 253)."""
    return 1.0 - cv2.countNonZero(cv2.inRange(grey_face, 3, 252)) / grey_face.size


class QualityGate:
    def __init__(self, config: QualityConfig) -> None:
        self.config = config

    def with_mesh(self, q: QualityResult, mesh: Any) -> QualityResult:
        """`q` (from `assess`) with the mesh's verdict: its presence score and the inter-ocular distance.

        `mesh` is a device.vision.landmarks.FaceMesh (typed loosely: the gate does not import the models)."""
        c = self.config
        presence = float(mesh.presence)
        xy = np.asarray(mesh.xy)
        iod = inter_ocular(xy) if np.isfinite(xy).all() else float("nan")
        metrics = {**q.metrics, "mesh_presence": round(presence, 3), "eye_distance_px": round(iod, 1)}
        reasons = list(q.reasons)
        if not presence >= c.min_mesh_presence:  # also when not finite
            if q.metrics.get("brightness", 255.0) < c.dim_brightness:
                reasons.append(
                    Reason(
                        "quality.too_dark",
                        f"face too dark to find its landmarks (brightness {q.metrics['brightness']:.0f}, "
                        f"mesh confidence {presence:.2f})",
                    )
                )
            else:
                reasons.append(
                    Reason("quality.no_landmarks", f"no face landmarks (confidence {presence:.2f})")
                )
        elif not iod >= c.min_eye_distance_px:
            reasons.append(
                Reason("quality.eyes_too_close", f"eyes {iod:.0f} px apart (< {c.min_eye_distance_px:g} px)")
            )
        ok = not reasons
        return QualityResult(ok, q.score if ok else 0.0, metrics, tuple(reasons))

    def assess(self, frame_bgr: np.ndarray, detection: Detection) -> QualityResult:
        c = self.config
        box = np.asarray(detection.box, np.float64)
        h, w = frame_bgr.shape[:2]
        size = float(min(box[2] - box[0], box[3] - box[1]))
        pose = keypoint_pose(detection.keypoints)
        metrics = {
            "face_px": round(size, 1),
            "yaw": round(pose.yaw, 1),
            "pitch": round(pose.pitch, 1),
            "roll": round(pose.roll, 1),
        }
        reasons: list[Reason] = []
        if size < c.min_face_px:
            reasons.append(
                Reason("quality.too_small", f"face too small ({size:.0f} px < {c.min_face_px} px)")
            )
        margin = c.face_margin * size
        if box[0] < -margin or box[1] < -margin or box[2] > w + margin or box[3] > h + margin:
            reasons.append(Reason("quality.cut_off", "face cut off by the frame edge"))
        for name, value, limit in (
            ("yaw", pose.yaw, c.max_yaw_deg),
            ("pitch", pose.pitch, c.max_pitch_deg),
            ("roll", pose.roll, c.max_roll_deg),
        ):
            if abs(value) > limit:
                reasons.append(Reason(f"quality.{name}", f"head {name} {value:+.0f} deg beyond {limit:.0f}"))
        patch = face_patch(frame_bgr, box, shrink=0.15)
        if patch is None:
            reasons.append(Reason("quality.outside_frame", "face outside the frame"))
            return QualityResult(False, 0.0, metrics, tuple(reasons))
        brightness = float(cv2.mean(patch)[0])
        clipped = clipped_share(patch)
        gamma = exposure_gamma(brightness)
        normalised = apply_gamma(patch, gamma)
        sharp = sharpness(normalised)
        spread = contrast(normalised)
        metrics.update(
            sharpness=round(sharp, 1),
            brightness=round(brightness, 1),
            clipped=round(clipped, 3),
            contrast=round(spread, 1),
            gamma=round(gamma, 3),
        )
        if sharp < c.min_sharpness:
            reasons.append(
                Reason("quality.blurred", f"face blurred (sharpness {sharp:.0f} < {c.min_sharpness:.0f})")
            )
        if spread < c.min_contrast:
            reasons.append(
                Reason("quality.low_contrast", f"face without contrast ({spread:.0f} < {c.min_contrast:g})")
            )
        if brightness < c.min_brightness:
            reasons.append(
                Reason(
                    "quality.too_dark",
                    f"face too dark (brightness {brightness:.0f} < {c.min_brightness:.0f}): no exposure "
                    "normalisation recovers it",
                )
            )
        elif brightness > c.max_brightness:
            reasons.append(
                Reason(
                    "quality.overexposed",
                    f"face overexposed (brightness {brightness:.0f} > {c.max_brightness:.0f})",
                )
            )
        if clipped > c.max_clipped:
            reasons.append(
                Reason("quality.clipped", f"face clipped ({clipped:.0%} of pixels at black or white)")
            )
        score = (
            min(1.0, size / (2.0 * c.min_face_px))
            * min(1.0, sharp / (3.0 * max(c.min_sharpness, 1e-6)))
            * math.cos(math.radians(min(abs(pose.yaw), 89)))
            * math.cos(math.radians(min(abs(pose.pitch), 89)))
            * float(detection.score)
        )
        metrics["score"] = round(score, 4)
        return QualityResult(not reasons, score, metrics, tuple(reasons))
