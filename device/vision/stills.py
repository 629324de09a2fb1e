"""Decoding still images (replay frames, evaluation sets) with clear errors for empty, truncated or corrupt files.

OpenCV decodes a truncated JPEG without complaint (the missing rows come out grey), so the container is
checked for its end marker first. EXIF orientation is honoured (cv2.IMREAD_COLOR applies it).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


class ImageError(ValueError):
    """A still image could not be used; the message names the file and the reason, never pixel data."""


def _structure_problem(data: bytes) -> str | None:
    if not data:
        return "the file is empty"
    if data.startswith(b"\xff\xd8"):
        # The end-of-image marker must follow the last scan (an EXIF thumbnail has its own, earlier one).
        last_scan = data.rfind(b"\xff\xda")
        if last_scan < 0 or data.find(b"\xff\xd9", last_scan) < 0:
            return "the JPEG is truncated (no end-of-image marker after its last scan)"
    elif data.startswith(b"\x89PNG\r\n\x1a\n") and b"IEND" not in data[-64:]:
        return "the PNG is truncated (no IEND chunk)"
    return None


def decode_image(data: bytes, name: str) -> np.ndarray:
    """BGR uint8 HxWx3 from encoded bytes; `name` is only used in error messages."""
    problem = _structure_problem(data)
    if problem:
        raise ImageError(f"{name}: {problem}")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise ImageError(f"{name}: not a decodable image (corrupt or unsupported format)")
    return image


def load_image(path: str | Path) -> np.ndarray:
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a directory, not an image") from None
    except OSError as exc:
        raise ImageError(f"{path}: unreadable ({exc.strerror})") from None
    return decode_image(data, str(path))
