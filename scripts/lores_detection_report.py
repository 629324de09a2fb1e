#!/usr/bin/env python3
"""Detection on a Pi camera's lores stream, checked on the developers' images (printed, not a test): does the
face detector find on the small YUV420 stream the faces it finds on the colour main stream?

On a Pi the ISP can deliver a second, smaller stream of the same field of view at no CPU cost; picamera2's
lores stream is YUV420, and the terminal detects on it in colour (`camera.lores_width/height`,
device/vision/camera.py), then maps the boxes back to the main stream (device/vision/pipeline.py). This
script makes that stream from real frames: each frame is first scaled to the terminal's 720-row main stream
(aspect kept), then scaled down by 2 and by 4 (640x360 and 320x180 for a 16:9 camera) and encoded as YUV420
(BT.601, limited range, chroma at half resolution). Also shown: the Y plane alone, which is what the
terminal used before (the colour turned out to matter).

Frames: every --every'th frame (at most --per-clip) of every clip under ../shared/data/video and
../shared/data/antispoof, and the stills under ../shared/data/detection/{various,pose,occlusion,multi_face}.
The reference is the detector on the colour main stream; a face counts as found on the lores stream when a
lores box, mapped back, overlaps it with IoU >= 0.5. Printed per lores size: recall by face width on the
main stream, the box's centre offset and width ratio (medians, relative to the face's width), faces found
only on the lores stream, and the detector's time per frame (main vs lores, one thread, medians).

    python scripts/lores_detection_report.py [--every 10] [--per-clip 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from device.infra.modelstore import ModelStore  # noqa: E402
from device.vision.camera import yuv420_to_bgr  # noqa: E402
from device.vision.detect import FaceDetector  # noqa: E402

MAIN_ROWS = 720
# (label, scale-down factor, what the lores stream gives the detector): YUV420 in colour as the terminal
# reads it (device.vision.camera.yuv420_to_bgr), and its Y plane alone as it did before, also at full size
# to separate what the lost colour costs from what the smaller size costs.
STREAMS = (
    ("1/2 YUV420", 2, "yuv420"),
    ("1/4 YUV420", 4, "yuv420"),
    ("1/2 Y only", 2, "luma"),
    ("1/4 Y only", 4, "luma"),
    ("1/1 Y only", 1, "luma"),
)
WIDTH_BUCKETS = ((0, 80), (80, 160), (160, 10_000))
VIDEO_SUFFIXES = {".mp4", ".webm", ".avi", ".mov", ".mkv"}
STILL_FOLDERS = ("various", "pose", "occlusion", "multi_face")


def frames(data: Path, every: int, per_clip: int) -> Iterator[tuple[str, np.ndarray]]:
    clips = sorted(p for folder in ("video", "antispoof") for p in (data / folder).rglob("*"))
    for clip in (p for p in clips if p.suffix.lower() in VIDEO_SUFFIXES):
        capture = cv2.VideoCapture(str(clip))
        index = taken = 0
        try:
            while taken < per_clip:
                ok, image = capture.read()
                if not ok:
                    break
                if index % every == 0:
                    taken += 1
                    yield clip.name, image
                index += 1
        finally:
            capture.release()
    for folder in STILL_FOLDERS:
        for path in sorted((data / "detection" / folder).glob("*")):
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is not None:
                yield path.name, image


def main_stream(image: np.ndarray) -> np.ndarray:
    scale = MAIN_ROWS / image.shape[0]
    width = max(2, round(image.shape[1] * scale / 2) * 2)
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(image, (width, MAIN_ROWS), interpolation=interpolation)


def lores_stream(main: np.ndarray, factor: int, kind: str) -> np.ndarray:
    """The lores stream as the detector gets it: the ISP's YUV420 at 1/factor size (BT.601 limited range,
    chroma at half resolution), converted as the terminal converts it; or its Y plane alone, as three
    equal channels."""
    size = (main.shape[1] // factor // 2 * 2, main.shape[0] // factor // 2 * 2)
    small = cv2.resize(main, size, interpolation=cv2.INTER_AREA)
    yuv420 = cv2.cvtColor(small, cv2.COLOR_BGR2YUV_I420)  # picamera2's layout when the stride is the width
    if kind == "yuv420":
        return yuv420_to_bgr(yuv420, size[0], size[1])
    return cv2.cvtColor(np.ascontiguousarray(yuv420[: size[1]]), cv2.COLOR_GRAY2BGR)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def timed_detect(detector: FaceDetector, image: np.ndarray) -> tuple[list[np.ndarray], float]:
    t0 = time.perf_counter()
    faces = detector.detect(image)
    return [np.asarray(f.box, np.float64).ravel() for f in faces], (time.perf_counter() - t0) * 1000.0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--every", type=int, default=10, help="every n-th frame of a clip")
    parser.add_argument("--per-clip", type=int, default=30, help="at most this many frames of a clip")
    args = parser.parse_args()
    data = Path(os.environ.get("FACEONLY_SHARED_DATA", ROOT.parent / "shared" / "data"))
    if not (data / "video").is_dir():
        print(f"lores_detection_report: no {data / 'video'}", file=sys.stderr)
        return 2
    detector = FaceDetector(ModelStore(), num_threads=1)
    print(
        f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; detector min score {detector.min_score}"
    )
    labels = [label for label, _, _ in STREAMS]
    found = {s: {bucket: [0, 0] for bucket in WIDTH_BUCKETS} for s in labels}
    offsets: dict[str, list[float]] = {s: [] for s in labels}
    widths: dict[str, list[float]] = {s: [] for s in labels}
    extra = dict.fromkeys(labels, 0)
    missed: dict[str, dict[str, int]] = {s: {} for s in labels}
    ms: dict[str, list[float]] = {"main": [], **{s: [] for s in labels}}
    n_frames = n_faces = 0
    for name, image in frames(data, args.every, args.per_clip):
        main_image = main_stream(image)
        reference, t_main = timed_detect(detector, main_image)
        ms["main"].append(t_main)
        n_frames += 1
        n_faces += len(reference)
        for label, factor, kind in STREAMS:
            small = lores_stream(main_image, factor, kind)
            boxes, t_small = timed_detect(detector, small)
            ms[label].append(t_small)
            sx, sy = main_image.shape[1] / small.shape[1], main_image.shape[0] / small.shape[0]
            mapped = [b * np.array([sx, sy, sx, sy]) for b in boxes]
            used: set[int] = set()
            for ref in reference:
                width = ref[2] - ref[0]
                bucket = next(b for b in WIDTH_BUCKETS if b[0] <= width < b[1])
                found[label][bucket][1] += 1
                best = max(range(len(mapped)), key=lambda i: iou(ref, mapped[i]), default=None)
                if best is None or best in used or iou(ref, mapped[best]) < 0.5:
                    missed[label][name] = missed[label].get(name, 0) + 1
                    continue
                used.add(best)
                found[label][bucket][0] += 1
                box = mapped[best]
                centre = np.hypot(
                    (box[0] + box[2] - ref[0] - ref[2]) / 2, (box[1] + box[3] - ref[1] - ref[3]) / 2
                )
                offsets[label].append(float(centre / width))
                widths[label].append(float((box[2] - box[0]) / width))
            extra[label] += len(mapped) - len(used)
    print(
        f"{n_frames} frames (main stream {MAIN_ROWS} rows), {n_faces} faces found on the colour main stream"
    )
    head = " ".join(f"{f'w {lo}-{hi}' if hi < 10_000 else f'w >= {lo}':>14}" for lo, hi in WIDTH_BUCKETS)
    print(f"{'lores':<12} {head} {'offset':>7} {'width':>6} {'extra':>6} {'ms':>6}")
    print(
        f"{'main':<12} {'':>{15 * len(WIDTH_BUCKETS) - 1}} {'':>7} {'':>6} {'':>6} {statistics.median(ms['main']):>6.2f}"
    )
    for label in labels:
        cells = []
        for bucket in WIDTH_BUCKETS:
            hit, total = found[label][bucket]
            cells.append(f"{hit}/{total} {100 * hit / total:.0f}%" if total else "-")
        print(
            f"{label:<12} {' '.join(f'{c:>14}' for c in cells)} "
            f"{statistics.median(offsets[label]):>7.3f} {statistics.median(widths[label]):>6.3f} "
            f"{extra[label]:>6} {statistics.median(ms[label]):>6.2f}"
        )
    for label in labels:
        worst = sorted(missed[label].items(), key=lambda kv: -kv[1])[:6]
        print(f"missed on {label}: " + (", ".join(f"{n} x{k}" for n, k in worst) or "none"))
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
