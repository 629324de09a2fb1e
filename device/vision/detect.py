"""MediaPipe BlazeFace at run time: letterbox, SSD anchors, box + 6 keypoint decode, weighted NMS.

The variant is chosen by its configured name ("short_range" or "full_range"), never by sniffing the model's
input shape. Frames are BGR uint8 (OpenCV order); the models want RGB in -1..1 (int8 models: pixel - 128,
the runner quantizes). "No face" is an empty list.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from device.contracts import Detection
from device.infra.inference import TfliteRunner
from device.vision.boxes import box_iou


@dataclass(frozen=True)
class DetectorSpec:
    """Anchor and decode parameters of one BlazeFace variant (MediaPipe's calculator options)."""

    model_name: str
    input_size: int
    strides: tuple[int, ...]
    anchors_per_cell: tuple[int, ...]
    min_score: float


VARIANTS: dict[str, DetectorSpec] = {
    # face_detection_short_range.pbtxt: 4 layers, strides 8,16,16,16, 2 anchors per layer -> 896 anchors.
    "short_range": DetectorSpec("detector_short_range", 128, (8, 16, 16, 16), (2, 2, 2, 2), 0.5),
    # face_detection_full_range.pbtxt: 1 layer, stride 4, 1 anchor -> 2304 anchors.
    "full_range": DetectorSpec("detector_full_range", 192, (4,), (1,), 0.6),
}

SCORE_CLIP = 100.0  # MediaPipe's score_clipping_thresh: logits reach about -1000
NUM_KEYPOINTS = 6
PRE_SUBSAMPLE = 4  # frames over 2x this many input sizes are subsampled to this many before the area resize


def ssd_anchors(spec: DetectorSpec) -> np.ndarray:
    """(N, 2) anchor centres in 0..1 (fixed anchor size 1, so only centres matter)."""
    # Consecutive layers with the same stride share one grid (MediaPipe's SsdAnchorsCalculator), so their
    # anchors interleave per cell: short range = 16x16x2 then 8x8x6.
    merged: list[list[int]] = []
    for stride, per_cell in zip(spec.strides, spec.anchors_per_cell, strict=True):
        if merged and merged[-1][0] == stride:
            merged[-1][1] += per_cell
        else:
            merged.append([stride, per_cell])
    centres = []
    for stride, per_cell in merged:
        cells = int(np.ceil(spec.input_size / stride))
        ys, xs = np.meshgrid(np.arange(cells), np.arange(cells), indexing="ij")
        grid = np.stack([(xs + 0.5) / cells, (ys + 0.5) / cells], axis=-1).reshape(-1, 1, 2)
        centres.append(np.repeat(grid, per_cell, axis=1).reshape(-1, 2))
    return np.concatenate(centres).astype(np.float32)


def _fitted(frame_bgr: np.ndarray, size: int) -> tuple[np.ndarray, float, int, int]:
    """The frame scaled to fit a size x size square, still BGR: (image, scale, pad_x, pad_y)."""
    h, w = frame_bgr.shape[:2]
    scale = size / max(h, w)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    if scale < 1:
        # OpenCV's area resize is fast only by a whole factor k (frame exactly k times the output): at other
        # factors it costs 1.3-1.7 ms here, more than the model, for a 480x854 or 480x480 frame. A nearest
        # subsample to k times the output first keeps the area filter's anti-aliasing (boxes move by 0.4% of
        # the face width at the median, 1.1% at p95, on the developers' clips). Over 2 * PRE_SUBSAMPLE, k is
        # capped: an area resize reads every pixel of the frame (1.5 ms at 720p here).
        k = PRE_SUBSAMPLE if max(h, w) > 2 * PRE_SUBSAMPLE * size else max(h, w) // size
        if k >= 2 and (w, h) != (nw * k, nh * k):
            frame_bgr = cv2.resize(frame_bgr, (nw * k, nh * k), interpolation=cv2.INTER_NEAREST)
    resized = cv2.resize(frame_bgr, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    return resized, scale, (size - nw) // 2, (size - nh) // 2


def letterbox(frame_bgr: np.ndarray, size: int) -> tuple[np.ndarray, float, float, float]:
    """RGB size x size image with the frame scaled to fit and centred; returns (image, scale, pad_x, pad_y).

    A point p in the letterboxed image maps back to the frame as (p - pad) / scale.
    """
    resized, scale, pad_x, pad_y = _fitted(frame_bgr, size)
    nh, nw = resized.shape[:2]
    out = np.zeros((size, size, 3), np.uint8)
    out[pad_y : pad_y + nh, pad_x : pad_x + nw] = resized[..., ::-1]
    return out, scale, float(pad_x), float(pad_y)


def fill_letterboxed(buffer: np.ndarray, resized_bgr: np.ndarray, pad_x: int, pad_y: int) -> None:
    """The model input of `letterbox` (RGB, x / 127.5 - 1, black borders at -1) written into `buffer`
    (1, size, size, 3) float32 directly: the same values, without the letterboxed copy."""
    nh, nw = resized_bgr.shape[:2]
    buffer.fill(-1.0)
    region = buffer[0, pad_y : pad_y + nh, pad_x : pad_x + nw]
    np.divide(cv2.cvtColor(resized_bgr, cv2.COLOR_BGR2RGB), np.float32(127.5), out=region)
    np.subtract(region, np.float32(1.0), out=region)


def decode(
    raw_boxes: np.ndarray, raw_scores: np.ndarray, anchors: np.ndarray, size: int, min_score: float = 0.0
):
    """Boxes (N,4) x0,y0,x1,y1 and keypoints (N,6,2) in input pixels, scores (N,) after clip + sigmoid,
    of the candidates scoring at least `min_score` (scored first: an empty frame decodes no box at all)."""
    logits = np.clip(raw_scores.reshape(-1).astype(np.float64), -SCORE_CLIP, SCORE_CLIP)
    scores = 1.0 / (1.0 + np.exp(-logits))
    keep = np.flatnonzero(scores >= min_score)
    raw = raw_boxes.reshape(-1, 4 + 2 * NUM_KEYPOINTS)[keep]
    anchors = anchors[keep]
    centre = raw[:, 0:2] + anchors * size
    half = raw[:, 2:4] / 2.0
    boxes = np.concatenate([centre - half, centre + half], axis=1)
    keypoints = raw[:, 4:].reshape(-1, NUM_KEYPOINTS, 2) + anchors[:, None, :] * size
    return boxes, keypoints, scores[keep]


def weighted_nms(boxes, keypoints, scores, iou_threshold: float):
    """MediaPipe's WEIGHTED non-max suppression: each kept face is the score-weighted mean of its cluster."""
    order = np.argsort(-scores)
    boxes, keypoints, scores = boxes[order], keypoints[order], scores[order]
    out = []
    remaining = np.arange(len(scores))
    while remaining.size:
        first = remaining[0]
        ious = box_iou(boxes[first], boxes[remaining])
        cluster = remaining[ious > iou_threshold]
        cluster = cluster if cluster.size else remaining[:1]
        weights = scores[cluster][:, None]
        total = weights.sum()
        box = (boxes[cluster] * weights).sum(axis=0) / total
        kps = (keypoints[cluster] * weights[:, :, None]).sum(axis=0) / total
        out.append((box, kps, float(scores[first])))
        remaining = remaining[ious <= iou_threshold]
    return out


class FaceDetector:
    """BlazeFace on BGR frames. `detect(frame)` -> faces sorted by score, best first."""

    def __init__(
        self,
        store: Any,
        variant: str = "short_range",
        min_score: float | None = None,
        iou_threshold: float = 0.3,
        num_threads: int = 1,
        interpreter: Any = None,
    ) -> None:
        try:
            self.spec = VARIANTS[variant]
        except KeyError as exc:
            raise ValueError(
                f"unknown detector variant {variant!r}; choose one of {sorted(VARIANTS)}"
            ) from exc
        interp = (
            interpreter if interpreter is not None else store.interpreter(self.spec.model_name, num_threads)
        )
        self._runner = TfliteRunner(interp)
        self._anchors = ssd_anchors(self.spec)
        self.min_score = self.spec.min_score if min_score is None else float(min_score)
        self.iou_threshold = float(iou_threshold)
        self._box_index, self._score_index = self._output_order()

    def _output_order(self) -> tuple[int, int]:
        """Which output holds boxes (last dim 16) and which scores (last dim 1): by the model's own names."""
        dims = [int(d["shape"][-1]) for d in self._runner.outputs]
        return dims.index(4 + 2 * NUM_KEYPOINTS), dims.index(1)

    def raw(self, frame_bgr: np.ndarray, min_score: float = 0.0):
        """Decoded, un-suppressed candidates scoring at least `min_score`, in frame pixels: boxes (N,4),
        keypoints (N,6,2), scores (N,)."""
        size = self.spec.input_size
        resized, scale, pad_x, pad_y = _fitted(frame_bgr, size)
        if self._runner.input_dtype == np.float32:
            outputs = self._runner.run_filled(lambda buffer: fill_letterboxed(buffer, resized, pad_x, pad_y))
        else:  # int8 models: the runner quantizes
            outputs = self._runner.run(letterbox(frame_bgr, size)[0].astype(np.float32)[None] / 127.5 - 1.0)
        boxes, kps, scores = decode(
            outputs[self._box_index], outputs[self._score_index], self._anchors, size, min_score
        )
        offset = np.array([pad_x, pad_y], np.float32)
        boxes = (boxes - np.tile(offset, 2)) / scale
        kps = (kps - offset) / scale
        return boxes, kps, scores

    def detect(self, frame_bgr: np.ndarray) -> list[Detection]:
        if frame_bgr is None or frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3 or frame_bgr.size == 0:
            raise ValueError("detect() wants an HxWx3 BGR uint8 frame")
        boxes, kps, scores = self.raw(frame_bgr, self.min_score)
        if not len(scores):
            return []
        faces = weighted_nms(boxes, kps, scores, self.iou_threshold)
        h, w = frame_bgr.shape[:2]
        result = []
        for box, kp, score in faces:
            box = box.astype(np.float32)
            if box[2] <= 0 or box[3] <= 0 or box[0] >= w or box[1] >= h:
                continue
            result.append(Detection(box=box, keypoints=kp.astype(np.float32), score=score))
        result.sort(key=lambda d: -d.score)
        return result
