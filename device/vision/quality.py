"""The quality gate: is this face frame good enough to decide on? Every rejection comes with its reason.

Pose comes from the detector's 6 keypoints (cheap, for every face every frame): roll from the eye line,
yaw from the nose's shift against the eyes, pitch from where the nose sits between eyes and mouth.
Sharpness is the variance of the Laplacian of the face scaled to 112 px, so it does not grow with face size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from device.config.vision import QualityConfig
from device.contracts import Detection, Reason

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
    return float(cv2.Laplacian(norm, cv2.CV_32F).var())


class QualityGate:
    def __init__(self, config: QualityConfig) -> None:
        self.config = config

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
        sharp = sharpness(patch)
        brightness = float(patch.mean())
        clipped = float(np.mean((patch <= 2) | (patch >= 253)))
        metrics.update(sharpness=round(sharp, 1), brightness=round(brightness, 1), clipped=round(clipped, 3))
        if sharp < c.min_sharpness:
            reasons.append(
                Reason("quality.blurred", f"face blurred (sharpness {sharp:.0f} < {c.min_sharpness:.0f})")
            )
        if brightness < c.min_brightness:
            reasons.append(
                Reason(
                    "quality.too_dark",
                    f"face too dark (brightness {brightness:.0f} < {c.min_brightness:.0f})",
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
