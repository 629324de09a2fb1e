"""Finding images anywhere in a message: base64 or data: URLs at any depth of a JSON document, images
embedded inside other blobs, raw binary payloads; each decoded (OpenCV) and measured for the audit."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from device.privacy.containers import JPEG_SOI, PNG_SIGNATURE, jpeg_metadata, png_metadata
from device.privacy.thumbnail import outside_ellipse

MIN_BASE64_CHARS = 64  # shorter strings cannot hold a decodable image worth reporting
_BASE64 = re.compile(r"^[A-Za-z0-9+/_-]+={0,2}$")
_DATA_URL = re.compile(r"^data:[\w/+.-]*;base64,", re.IGNORECASE)
_SIGNATURES = {JPEG_SOI + b"\xff": "jpeg", PNG_SIGNATURE: "png"}


@dataclass(frozen=True)
class ImageFinding:
    where: str  # JSON path (or "payload"), "+sealed" when found inside an opened sealed blob
    format: str
    bytes: int
    width: int
    height: int
    metadata: tuple[str, ...]
    outside_ellipse_nonzero: int  # pixels outside the inscribed ellipse that are not exactly black
    decodable: bool = True


def _not_black(pixels: np.ndarray) -> np.ndarray:
    """Per pixel: any colour channel non-zero (an alpha channel may only be fully on or off)."""
    if pixels.ndim == 1:
        return np.asarray(pixels != 0)
    colour = np.asarray(pixels[:, :3].any(axis=1))
    if pixels.shape[1] == 4:
        alpha = pixels[:, 3]
        colour |= (alpha != 0) & (alpha != np.iinfo(pixels.dtype).max)
    return colour


def inspect_image(data: bytes, where: str, fmt: str) -> ImageFinding:
    """Decode an image (OpenCV) and measure what the rules need."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None or image.ndim < 2 or image.size == 0:
        return ImageFinding(where, fmt, len(data), 0, 0, (), 0, decodable=False)
    h, w = image.shape[:2]
    try:
        metadata = jpeg_metadata(data) if fmt == "jpeg" else png_metadata(data)
    except ValueError as exc:
        metadata = [f"unparseable header: {exc}"]
    leaked = int(np.count_nonzero(_not_black(image[outside_ellipse(h, w)])))
    return ImageFinding(where, fmt, len(data), w, h, tuple(metadata), leaked)


def find_images(data: bytes, where: str) -> list[ImageFinding]:
    """Every decodable image starting anywhere in `data` (an embedded image counts as much as a whole one)."""
    found = []
    for magic, fmt in _SIGNATURES.items():
        start = data.find(magic)
        while start != -1:
            finding = inspect_image(data[start:], where if start == 0 else f"{where}@{start}", fmt)
            # A stray signature inside random bytes (ciphertext) that does not decode is no image.
            if finding.decodable or start == 0:
                found.append(finding)
            start = data.find(magic, start + 1)
    return found


def decode_base64(text: str) -> bytes | None:
    body = _DATA_URL.sub("", text, count=1)
    if len(body) < MIN_BASE64_CHARS or not _BASE64.match(body):
        return None
    try:
        return base64.b64decode(
            body.replace("-", "+").replace("_", "/") + "=" * (-len(body) % 4), validate=True
        )
    except (binascii.Error, ValueError):
        return None


def _walk(node: Any, path: str) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}[{i}]")
    else:
        yield path, node


def images_in_json(document: Any, prefix: str = "") -> list[ImageFinding]:
    found = []
    for path, value in _walk(document, prefix):
        if isinstance(value, str):
            raw = decode_base64(value)
            if raw is not None:
                found += find_images(raw, path)
    return found
