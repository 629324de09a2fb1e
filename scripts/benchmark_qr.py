"""What looking for QR codes costs the frame loop (door modes, `[access] qr_scan_hz`), measured in one run.

    python scripts/benchmark_qr.py [--repeats 30]

On 640x480 BGR frames as the camera gives them: no code (what almost every scan sees), a visitor pass held up
at 3 and 2 camera pixels per module, next to the face detector on the same frames (the loop's own first stage,
a peer measured in the same run) and OpenCV's QRCodeDetector (the alternative not taken). Prints the median
and 95th percentile per scan, whether the code was read, and the share of a 10 fps loop at the default 5 scans
per second. The machine's load is printed with it: report ratios, not absolute times.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def frames(text: str) -> dict[str, np.ndarray]:
    import cv2
    from skimage import data

    face = cv2.resize(np.ascontiguousarray(data.astronaut()[:, :, ::-1]), (400, 400))
    base = np.full((480, 640, 3), 110, np.uint8)
    base[40:440, 120:520] = face
    out = {"no code (a face)": base}
    code = cv2.QRCodeEncoder.create().encode(text)
    for px in (3, 2):
        image = base.copy()
        big = cv2.resize(code, None, fx=px, fy=px, interpolation=cv2.INTER_NEAREST)
        y, x = 480 - big.shape[0] - 10, 640 - big.shape[1] - 10
        image[y : y + big.shape[0], x : x + big.shape[1]] = big[:, :, None]
        out[f"pass at {px} px/module ({code.shape[0]} modules)"] = image
    return out


def timed(fn, image: np.ndarray, repeats: int) -> tuple[float, float, object]:
    result = fn(image)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn(image)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), float(np.percentile(times, 95)), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()

    import cv2
    from nacl.signing import SigningKey

    from device.access.passes import issue
    from device.access.qrscan import QrScanner
    from device.config.vision import VisionConfig
    from device.infra.modelstore import ModelStore
    from device.vision.detect import FaceDetector

    now = int(time.time())
    token = {"k": "visitor", "id": "visit-000001", "sub": "visitor-17", "doors": ["main"], "uses": 1}
    text = issue(SigningKey.generate(), {**token, "nbf": now, "exp": now + 86_400})
    scanner = QrScanner(5.0)
    vision = VisionConfig()
    detector = FaceDetector(ModelStore(), vision.detector, vision.detector_min_score, vision.nms_iou)
    opencv = cv2.QRCodeDetectorAruco()
    print(
        f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} (2 cores); QR text {len(text)} chars"
    )
    print(f"{'frame':38} {'zxing-cpp ms':>14} {'read':>5} {'detector ms':>12} {'OpenCV ms':>10} {'read':>5}")
    for name, image in frames(text).items():
        zx, zx95, found = timed(scanner.decode, image, args.repeats)
        det, _, _ = timed(detector.detect, image, args.repeats)
        cv, _, cv_found = timed(lambda im: opencv.detectAndDecode(im)[0], image, max(5, args.repeats // 5))
        read = "yes" if found == [text] else "no"
        cv_read = "yes" if cv_found == text else "no"
        print(f"{name:38} {zx:7.2f} (p95 {zx95:5.2f}) {read:>5} {det:12.2f} {cv:10.2f} {cv_read:>5}")
        if name.startswith("no code"):
            per_frame = zx * 5 / 10  # 5 scans per second spread over 10 frames
            print(
                f"{'':38} 5 scans/s in a 10 fps loop: {per_frame:.2f} ms per frame on average "
                f"({per_frame / 100 * 100:.2f}% of its 100 ms); one scan is {zx / det:.2f}x the detector"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
