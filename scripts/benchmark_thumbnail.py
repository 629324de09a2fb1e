#!/usr/bin/env python3
"""Thumbnail size and time (printed, not a timed test): the face-only PNG of real faces at the default
112 px and the largest allowed 224 px, as the terminal makes it (detector, face mesh, crop, mask, encode,
decode-and-check), and the same masked pixels as lossless WebP and as JPEG for comparison.

    python scripts/benchmark_thumbnail.py [PHOTO ...]

Faces: scikit-image's astronaut, then the photos given, or by default the portraits in
../shared/data/verification/{deepface,compreface} and two of ../shared/data/detection/various when that
folder is there. Times are CPU time per call on one thread (time.process_time), so a busy machine
inflates them less than wall time; the load average is printed with them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import skimage.data

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from device.config.vision import VisionConfig  # noqa: E402
from device.infra.modelstore import ModelStore  # noqa: E402
from device.privacy.thumbnail import ThumbnailPolicy, make_thumbnail  # noqa: E402
from device.vision.detect import FaceDetector  # noqa: E402
from device.vision.facecrop import FaceCrop, cut_face_crop  # noqa: E402
from device.vision.landmarks import FaceMeshModel, trusted_xy  # noqa: E402

SIZES = (112, 224)
MARGIN = 0.2  # privacy.thumbnail_margin default
DATA = ROOT.parent / "shared" / "data"
DEFAULT_PHOTOS = (
    sorted((DATA / "verification" / "deepface").glob("img[0-9].jpg"))
    + sorted((DATA / "verification" / "compreface").glob("00[1-6]_*.jpg"))
    + [DATA / "detection" / "various" / "fr_obama-1080p.jpg", DATA / "detection" / "various" / "if_yifei.jpg"]
)


def cpu_ms(call: Callable[[], object], budget_s: float = 0.2) -> float:
    call()
    start, n = time.process_time(), 0
    while time.process_time() - start < budget_s:
        call()
        n += 1
    return (time.process_time() - start) / n * 1000


def crops(photos: list[Path]) -> Iterator[tuple[str, FaceCrop]]:
    store = ModelStore()
    detectors = [FaceDetector(store, "short_range"), FaceDetector(store, "full_range")]
    mesh = FaceMeshModel(store)
    margin = VisionConfig().crop_margin
    images = [("astronaut", np.ascontiguousarray(skimage.data.astronaut()[..., ::-1]))]
    images += [(p.name, cv2.imread(str(p))) for p in photos]
    for name, image in images:
        if image is None:
            print(f"skipped {name}: not readable")
            continue
        found = []
        for detector in detectors:  # short range first, as a terminal's camera sees a face
            found = found or detector.detect(image)
        if not found:
            print(f"skipped {name}: no face found")
            continue
        best = found[0]
        others = [d.box for d in found[1:]]
        yield name, cut_face_crop(image, best, trusted_xy(mesh.run(image, best)), others, margin)


def measure(crop: FaceCrop, size: int) -> dict[str, float]:
    policy = ThumbnailPolicy(size, MARGIN)
    thumb = make_thumbnail(crop.image, crop.face_box, policy, crop.outline)
    masked = cv2.imdecode(
        np.frombuffer(thumb.png, np.uint8), cv2.IMREAD_UNCHANGED
    )  # lossless: the mask itself
    webp = [cv2.IMWRITE_WEBP_QUALITY, 101]  # above 100: lossless
    jpeg = [
        cv2.IMWRITE_JPEG_QUALITY,
        85,
        cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
        cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444,
    ]
    webp_bytes = cv2.imencode(".webp", masked, webp)[1]
    jpeg_bytes = cv2.imencode(".jpg", masked, jpeg)[1]
    jpeg_decoded = cv2.imdecode(jpeg_bytes, cv2.IMREAD_COLOR)
    return {
        "side": max(thumb.width, thumb.height),
        "png_bytes": len(thumb.png),
        "make_ms": cpu_ms(lambda: make_thumbnail(crop.image, crop.face_box, policy, crop.outline)),
        "png_encode_ms": cpu_ms(lambda: cv2.imencode(".png", masked, [cv2.IMWRITE_PNG_COMPRESSION, 6])),
        "webp_bytes": len(webp_bytes),
        "webp_encode_ms": cpu_ms(lambda: cv2.imencode(".webp", masked, webp)),
        "jpeg_bytes": len(jpeg_bytes),
        # Black in the mask (outside the face ellipse, or black in the face itself) but not after JPEG: ringing.
        "jpeg_leaks": int(np.count_nonzero(jpeg_decoded[masked.max(axis=2) == 0].max(axis=1))),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("photos", nargs="*", type=Path, help="photos with a face (default: shared data)")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    photos = args.photos or [p for p in DEFAULT_PHOTOS if p.exists()]
    rows = {size: [] for size in SIZES}
    for name, crop in crops(photos):
        for size in SIZES:
            rows[size].append(measure(crop, size))
        print(f"{name}: " + ", ".join(f"{s}px {rows[s][-1]['png_bytes']} B PNG" for s in SIZES), flush=True)
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    for size, found in rows.items():
        if not found:
            continue

        def med(key: str, found: list[dict[str, float]] = found) -> float:
            return statistics.median(r[key] for r in found)

        def span(key: str, found: list[dict[str, float]] = found) -> str:
            return f"{min(r[key] for r in found):.0f}-{max(r[key] for r in found):.0f}"

        print(
            f"policy {size} px, {len(found)} faces (longest side {span('side')} px), medians:\n"
            f"  PNG (sent)      {med('png_bytes'):7.0f} B ({span('png_bytes')}), encode {med('png_encode_ms'):5.2f} ms, "
            f"whole thumbnail (mask, encode, decode, check) {med('make_ms'):5.2f} ms\n"
            f"  lossless WebP   {med('webp_bytes'):7.0f} B ({span('webp_bytes')}), encode {med('webp_encode_ms'):5.2f} ms\n"
            f"  JPEG q85 4:4:4  {med('jpeg_bytes'):7.0f} B ({span('jpeg_bytes')}), NOT face-only: "
            f"{med('jpeg_leaks'):.0f} ({span('jpeg_leaks')}) black pixels decode non-black"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
