"""The only image that may leave the terminal: a small, face-only, lossless PNG thumbnail.

Cut from the face box plus a small margin (zero-padded where the crop ends, so the face stays
centred), shrunk to fit the policy size (never enlarged), and blacked out outside the face: outside an
ellipse fitted to the face's own outline (the face mesh's oval, or the keypoint ellipse), and in any
case outside the ellipse inscribed in the thumbnail (what `faceonly audit` checks from outside). The
vision stage has already blacked out every other detected face's box.

The mask is exact to the pixel and smooth: every pixel whose centre lies outside either ellipse is
exactly black, and the face fades to black over the last pixel inside (EDGE_PX), so the outline is a
curve, not a staircase. PNG is lossless, so the decoded thumbnail is exactly what was masked: no
compression ringing carries anything into the black (a JPEG would need the mask to follow its 8x8
blocks for that). Every thumbnail is decoded once more and compared before it is handed out.

The PNG carries its pixels only: OpenCV writes IHDR, IDAT and IEND, and the check refuses any other
chunk (text, time, EXIF, colour profile) and any byte after the image's end.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from device.privacy.containers import png_metadata

EDGE_PX = 1.0  # width of the fade to black just inside the ellipse, in thumbnail pixels
PNG_COMPRESSION = 6  # zlib level: 3% (112 px) to 6% (224 px) smaller than level 1 for 0.5 to 4 ms more


class ThumbnailError(RuntimeError):
    """A thumbnail failed its own check (for example an encoder that changed a pixel or added a chunk)."""


@dataclass(frozen=True)
class ThumbnailPolicy:
    max_size: int
    margin: float


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

    def depth(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """How far each point lies inside the ellipse, in pixels (first order, exact enough within a few
        pixels of the outline, which is all the fade needs); 0 on and outside it."""
        a = np.radians(self.angle_deg)
        dx, dy = xs - self.cx, ys - self.cy
        u = dx * np.cos(a) + dy * np.sin(a)
        v = -dx * np.sin(a) + dy * np.cos(a)
        ru, rv = self.width / 2, self.height / 2
        level = (u / ru) ** 2 + (v / rv) ** 2 - 1.0  # < 0 inside
        slope = np.hypot(2 * u / ru**2, 2 * v / rv**2)
        with np.errstate(divide="ignore", invalid="ignore"):
            inside = np.where(slope > 0, -level / slope, np.inf)
        return np.where(level < 0, inside, 0.0)


@dataclass(frozen=True)
class Thumbnail:
    png: bytes
    width: int
    height: int


def outside_ellipse(height: int, width: int) -> np.ndarray:
    """True for pixels whose centre lies outside the ellipse inscribed in a height x width image."""
    ys = (np.arange(height) + 0.5 - height / 2) / (height / 2)
    xs = (np.arange(width) + 0.5 - width / 2) / (width / 2)
    return ys[:, None] ** 2 + xs[None, :] ** 2 > 1.0


def face_weight(height: int, width: int, face: Ellipse | None = None) -> np.ndarray:
    """Per pixel, what share of it the thumbnail keeps: 0 wherever the centre lies outside the inscribed
    ellipse or (when given) the face's own, rising to 1 at EDGE_PX inside both."""
    ys, xs = np.mgrid[0:height, 0:width] + 0.5
    inscribed = Ellipse(width / 2, height / 2, width, height, 0.0)
    depth = inscribed.depth(xs, ys)
    if face is not None:
        depth = np.minimum(depth, face.depth(xs, ys))
    weight = np.clip(depth / EDGE_PX, 0.0, 1.0)
    weight[outside_ellipse(height, width)] = 0.0  # the audit's own rule, word for word
    return weight


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


def encode_png(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION])
    if not ok:
        raise ThumbnailError("PNG encoder failed")
    return buf.tobytes()


def make_thumbnail(
    crop: np.ndarray,
    face_box: tuple[float, float, float, float],
    policy: ThumbnailPolicy,
    outline: np.ndarray | None = None,
) -> Thumbnail:
    """The face-only PNG for a BGR uint8 crop, the face box inside it and the face's outline (pixel
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
    weight = face_weight(h, w, face)
    masked = np.rint(small * weight.reshape(h, w, *[1] * (small.ndim - 2))).astype(np.uint8)
    png = encode_png(masked)
    decoded = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    if (
        decoded is None
        or decoded.shape != masked.shape
        or decoded.dtype != np.uint8
        or not np.array_equal(decoded, masked)
        or decoded[weight == 0].any()
        or decoded[outside_ellipse(h, w)].any()
    ):
        raise ThumbnailError("encoded thumbnail is not exactly the face-only image it was made from")
    try:
        extra = png_metadata(png)
    except ValueError as exc:
        raise ThumbnailError(f"encoded thumbnail is not a well-formed PNG: {exc}") from None
    if extra:
        raise ThumbnailError(f"encoded thumbnail carries more than pixels: {extra}")
    return Thumbnail(png, w, h)
