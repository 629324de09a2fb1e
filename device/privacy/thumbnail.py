"""The only image that may leave the terminal: a small, face-only JPEG thumbnail.

Cut from the face box plus a small margin (zero-padded where the crop ends, so the face stays
centred), shrunk to fit the policy size (never enlarged), and blacked out outside the face: outside an
ellipse fitted to the face's own outline (the face mesh's oval, or the keypoint ellipse), and in any
case outside the ellipse inscribed in the thumbnail (what `faceonly audit` checks from outside). The
vision stage has already blacked out every other detected face's box. Masking works on whole 8x8 blocks, the JPEG's own block grid (4:4:4, no
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
class Ellipse:
    """centre (cx, cy), full axis lengths (width along `angle_deg`, height across), in pixel-edge units."""

    cx: float
    cy: float
    width: float
    height: float
    angle_deg: float

    @classmethod
    def fit(cls, points: np.ndarray) -> Ellipse:
        pts = np.asarray(points, np.float32).reshape(-1, 2)
        if len(pts) < 5 or not np.all(np.isfinite(pts)):
            raise ThumbnailError("no usable face outline to fit the thumbnail's ellipse to")
        (cx, cy), (w, h), angle = cv2.fitEllipse(pts)
        if not (w > 1 and h > 1):
            raise ThumbnailError("degenerate face outline")
        return cls(float(cx), float(cy), float(w), float(h), float(angle))

    def contains(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        a = np.radians(self.angle_deg)
        dx, dy = xs - self.cx, ys - self.cy
        u = dx * np.cos(a) + dy * np.sin(a)
        v = -dx * np.sin(a) + dy * np.cos(a)
        return (u / (self.width / 2)) ** 2 + (v / (self.height / 2)) ** 2 <= 1.0


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


def kept_blocks(height: int, width: int, face: Ellipse | None = None) -> np.ndarray:
    """True for pixels in 8x8 blocks that lie wholly inside the inscribed ellipse and, when given, inside
    the face's own ellipse (what the thumbnail keeps)."""
    keep = np.zeros((height, width), bool)
    for y0 in range(0, height, BLOCK):
        y1 = min(y0 + BLOCK, height)
        for x0 in range(0, width, BLOCK):
            x1 = min(x0 + BLOCK, width)
            # Both ellipses are convex, so is their intersection: a block is inside if its four corners are.
            xs, ys = np.array([x0, x1, x0, x1], float), np.array([y0, y0, y1, y1], float)
            inscribed = ((ys - height / 2) / (height / 2)) ** 2 + ((xs - width / 2) / (width / 2)) ** 2 <= 1.0
            if np.all(inscribed) and (face is None or np.all(face.contains(xs, ys))):
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


def fit(image: np.ndarray, max_size: int) -> tuple[np.ndarray, float, float]:
    """The image shrunk to fit max_size (never enlarged), and its x and y scale."""
    h, w = image.shape[:2]
    scale = max_size / max(h, w)
    if scale >= 1.0:
        return image, 1.0, 1.0
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), size[0] / w, size[1] / h


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
    crop: np.ndarray,
    face_box: tuple[float, float, float, float],
    policy: ThumbnailPolicy,
    outline: np.ndarray | None = None,
) -> Thumbnail:
    """The face-only JPEG for a BGR uint8 crop, the face box inside it and the face's outline (pixel
    centres in crop coordinates; without one, only the inscribed ellipse is kept)."""
    box = expanded_box(face_box, policy.margin)
    region = cut_padded(crop, box)
    if region.size == 0:
        raise ThumbnailError("empty face box")
    small, sx, sy = fit(region, policy.max_size)
    face = None
    if outline is not None:
        # pixel centre c in the crop -> edge coordinate (c + 0.5 - box origin) * scale in the thumbnail
        points = (np.asarray(outline, np.float64).reshape(-1, 2) + 0.5 - np.array(box[:2])) * (sx, sy)
        face = Ellipse.fit(points)
    h, w = small.shape[:2]
    keep = kept_blocks(h, w, face)
    masked = small.copy()
    masked[~keep] = 0
    jpeg = encode_jpeg(masked, policy.quality)
    decoded = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_UNCHANGED)
    if (
        decoded is None
        or decoded.shape[:2] != (h, w)
        or decoded[~keep].any()
        or decoded[outside_ellipse(h, w)].any()
    ):
        raise ThumbnailError("encoded thumbnail is not exactly black outside the face")
    if metadata_markers(jpeg):
        raise ThumbnailError(f"encoded thumbnail carries metadata: {metadata_markers(jpeg)}")
    return Thumbnail(jpeg, w, h)
