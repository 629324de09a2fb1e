"""The only image that may leave the terminal: a small, face-only JPEG thumbnail.

Cut from the face box plus a small margin (zero-padded where the crop ends, so the face stays
centred), shrunk to fit the policy size (never enlarged), and blacked out outside the ellipse
inscribed in the thumbnail. Masking works on whole 8x8 blocks, the JPEG's own block grid (4:4:4, no
chroma subsampling): a block is kept only if it lies entirely inside the ellipse, so every block
touching the outside is uniformly black and decodes to exact zeros (no compression ringing leaks
into it). Every thumbnail is decoded once more and checked before it is handed out.

The JPEG carries no metadata: OpenCV writes only the JFIF header (APP0) and no EXIF, XMP or comment.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

BLOCK = 8
_SOI = b"\xff\xd8"
# Marker bytes that carry metadata: APP1..APP15 (EXIF, XMP, ICC, vendor data) and COM.
METADATA_MARKERS = frozenset([*range(0xE1, 0xF0), 0xFE])


class ThumbnailError(RuntimeError):
    """A thumbnail failed its own check (for example an encoder that does not keep black blocks black)."""


@dataclass(frozen=True)
class ThumbnailPolicy:
    max_size: int
    margin: float
    quality: int


@dataclass(frozen=True)
class Thumbnail:
    jpeg: bytes
    width: int
    height: int


def outside_ellipse(height: int, width: int) -> np.ndarray:
    """True for pixels whose centre lies outside the ellipse inscribed in a height x width image."""
    ys = (np.arange(height) + 0.5 - height / 2) / (height / 2)
    xs = (np.arange(width) + 0.5 - width / 2) / (width / 2)
    return ys[:, None] ** 2 + xs[None, :] ** 2 > 1.0


def kept_blocks(height: int, width: int) -> np.ndarray:
    """True for pixels in 8x8 blocks that lie wholly inside the inscribed ellipse (what the thumbnail keeps)."""
    keep = np.zeros((height, width), bool)
    for y0 in range(0, height, BLOCK):
        y1 = min(y0 + BLOCK, height)
        for x0 in range(0, width, BLOCK):
            x1 = min(x0 + BLOCK, width)
            # The ellipse is convex: a block is inside if its four corners are.
            corners_y = (np.array([y0, y0, y1, y1]) - height / 2) / (height / 2)
            corners_x = (np.array([x0, x1, x0, x1]) - width / 2) / (width / 2)
            if np.all(corners_y**2 + corners_x**2 <= 1.0):
                keep[y0:y1, x0:x1] = True
    return keep


def expanded_box(face_box: tuple[float, float, float, float], margin: float) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = face_box
    mx, my = (x1 - x0) * margin, (y1 - y0) * margin
    return (
        int(np.floor(x0 - mx)),
        int(np.floor(y0 - my)),
        int(np.ceil(x1 + mx)),
        int(np.ceil(y1 + my)),
    )


def cut_padded(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """image[y0:y1, x0:x1] with zeros wherever the box reaches past the image."""
    x0, y0, x1, y1 = box
    h, w = image.shape[:2]
    out = np.zeros((y1 - y0, x1 - x0, *image.shape[2:]), image.dtype)
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = image[sy0:sy1, sx0:sx1]
    return out


def fit(image: np.ndarray, max_size: int) -> np.ndarray:
    h, w = image.shape[:2]
    scale = max_size / max(h, w)
    if scale >= 1.0:
        return image
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def mask_face(image: np.ndarray) -> np.ndarray:
    out = image.copy()
    out[~kept_blocks(*image.shape[:2])] = 0
    return out


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    params = [
        cv2.IMWRITE_JPEG_QUALITY,
        quality,
        cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
        cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444,
    ]
    ok, buf = cv2.imencode(".jpg", image, params)
    if not ok:
        raise ThumbnailError("JPEG encoder failed")
    return buf.tobytes()


def jpeg_markers(data: bytes) -> list[int]:
    """Marker bytes of the JPEG's header segments, in order, up to the start of scan."""
    if not data.startswith(_SOI):
        raise ValueError("not a JPEG (no SOI marker)")
    markers, pos = [], 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise ValueError(f"malformed JPEG: no marker at byte {pos}")
        marker = data[pos + 1]
        markers.append(marker)
        if marker == 0xDA:  # start of scan: entropy-coded data follows, no more header segments
            break
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    return markers


def metadata_markers(data: bytes) -> list[str]:
    """Names of metadata segments in a JPEG (empty when it carries none)."""
    return [f"APP{m - 0xE0}" if m != 0xFE else "COM" for m in jpeg_markers(data) if m in METADATA_MARKERS]


def make_thumbnail(
    crop: np.ndarray, face_box: tuple[float, float, float, float], policy: ThumbnailPolicy
) -> Thumbnail:
    """The face-only JPEG for a BGR uint8 crop and the face box inside it."""
    region = cut_padded(crop, expanded_box(face_box, policy.margin))
    if region.size == 0:
        raise ThumbnailError("empty face box")
    masked = mask_face(fit(region, policy.max_size))
    jpeg = encode_jpeg(masked, policy.quality)
    decoded = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_UNCHANGED)
    h, w = masked.shape[:2]
    if decoded is None or decoded.shape[:2] != (h, w) or decoded[outside_ellipse(h, w)].any():
        raise ThumbnailError("encoded thumbnail is not exactly black outside the face ellipse")
    if metadata_markers(jpeg):
        raise ThumbnailError(f"encoded thumbnail carries metadata: {metadata_markers(jpeg)}")
    return Thumbnail(jpeg, w, h)
