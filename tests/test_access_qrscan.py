"""QR codes in frames: read by zxing-cpp where the frame lies (the lores image when the camera has one), at
most qr_scan_hz times a second, and only the text comes out."""

from __future__ import annotations

import numpy as np

from device.access.qrscan import QrScanner
from device.contracts import Frame
from tests.access_rig import qr_shown


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_code_is_read_at_the_configured_rate_and_only_its_text_leaves() -> None:
    clock = Clock()
    scanner = QrScanner(5.0, clock)
    image = qr_shown("FO1.hello.world", module_px=3)
    frame = Frame(0, 0.0, 0.0, image)
    assert scanner.scan(frame) == ["FO1.hello.world"]
    clock.now += 0.1
    assert scanner.scan(frame) == []  # not due: 5 scans a second
    clock.now += 0.1
    assert scanner.scan(frame) == ["FO1.hello.world"]
    assert scanner.stats()["scans"] == 2 and scanner.stats()["found"] == 2
    blank = Frame(1, 0.0, 0.0, np.full((480, 640, 3), 110, np.uint8))
    clock.now += 1
    assert scanner.scan(blank) == []


def test_the_lores_image_is_scanned_when_there_is_one() -> None:
    scanner = QrScanner(30.0, Clock())
    small = qr_shown("FO1.lores.only", module_px=2)
    frame = Frame(0, 0.0, 0.0, np.zeros((960, 1280, 3), np.uint8), detect_image=small)
    assert scanner.scan(frame) == ["FO1.lores.only"]
    assert QrScanner(0.0, Clock()).period == float("inf")
