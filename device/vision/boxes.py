"""Face boxes (x0, y0, x1, y1 in pixels): overlap, the one measure detection, tracking and evaluation share."""

from __future__ import annotations

import numpy as np


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of `box` with each row of `boxes` (N, 4); 0 where nothing overlaps."""
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(box_iou(np.asarray(a, np.float64), np.asarray(b, np.float64)[None])[0])
