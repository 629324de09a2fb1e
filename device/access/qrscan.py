"""QR codes shown to the camera, decoded in the frame loop on the frame itself (zxing-cpp).

The frame is handed to the decoder where it lies, on the same thread, before the loop releases (and zeroes)
it: no copy is kept, nothing is written, and only the decoded text leaves this module (to the claims
lookup, never to a log). The lores detection image is used when the camera has one (as the face detector
does), the full frame otherwise. Scans are rate-limited (`[access] qr_scan_hz`), so their cost is a bounded
share of the loop; `scripts/benchmark_qr.py` measures it (docs/door.md, "Door modes").

zxing-cpp rather than OpenCV's QR detector: on 640x480 frames a scan took 1.2 ms without a code and 1.4-1.6 ms
reading a 65-module pass at 2-3 px per module, against 13-41 ms for OpenCV's QRCodeDetectorAruco in the same
run (and OpenCV's classic QRCodeDetector missed a 3 px/module code in a first try).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from device.contracts import Frame

MAX_CODES = 4  # more QR codes than this in one frame: the first four


class QrScanner:
    def __init__(self, hz: float, clock: Callable[[], float] = time.monotonic) -> None:
        import zxingcpp  # the `access` extra; imported only on a terminal whose door takes QR codes

        self._read = zxingcpp.read_barcodes
        self._format = zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode)
        self.period = 1.0 / hz if hz > 0 else float("inf")
        self._clock = clock
        self._next = 0.0
        self.scans = 0
        self.found = 0
        self.ms_total = 0.0

    def due(self) -> bool:
        return self._clock() >= self._next

    def scan(self, frame: Frame) -> list[str]:
        """The texts of the QR codes in `frame` (rate-limited: [] when a scan is not due)."""
        now = self._clock()
        if now < self._next:
            return []
        self._next = now + self.period
        return self.decode(frame.detect_image if frame.detect_image is not None else frame.image)

    def decode(self, image: np.ndarray) -> list[str]:
        started = time.perf_counter()
        try:
            found = self._read(image, formats=self._format, try_invert=False)
        finally:
            self.scans += 1
            self.ms_total += (time.perf_counter() - started) * 1000.0
        texts = [code.text for code in found[:MAX_CODES] if code.valid and code.text]
        self.found += len(texts)
        return texts

    def stats(self) -> dict[str, Any]:
        mean = self.ms_total / self.scans if self.scans else None
        return {"scans": self.scans, "found": self.found, "mean_ms": round(mean, 2) if mean else None}
