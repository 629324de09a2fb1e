"""The face-only thumbnail: size cap, exact black outside the face ellipse with a smooth edge, lossless,
pixels only (no PNG chunk beside them)."""

from __future__ import annotations

import zlib

import cv2
import numpy as np
import pytest
import skimage.data
from hypothesis import given, settings
from hypothesis import strategies as st

from device.privacy import thumbnail as thumbnail_module
from device.privacy.containers import jpeg_metadata, png_chunks, png_metadata
from device.privacy.thumbnail import (
    EDGE_PX,
    Ellipse,
    ThumbnailError,
    ThumbnailPolicy,
    make_thumbnail,
    outside_ellipse,
)

ASTRONAUT_FACE = (170.0, 20.0, 290.0, 180.0)  # x0, y0, x1, y1 of the face in skimage's astronaut


def decode(png: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    assert image is not None
    return image


def chunk(kind: bytes, body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")


def depth_inside_inscribed(h: int, w: int) -> np.ndarray:
    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    return Ellipse(w / 2, h / 2, w, h, 0.0).depth(xs, ys)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return np.ascontiguousarray(skimage.data.astronaut()[:, :, ::-1])


def test_astronaut_thumbnail_is_small_face_only_lossless_png(astronaut):
    thumb = make_thumbnail(astronaut, ASTRONAUT_FACE, ThumbnailPolicy(112, 0.2))
    assert thumb.png.startswith(b"\x89PNG\r\n\x1a\n")
    image = decode(thumb.png)
    assert image.shape == (thumb.height, thumb.width, 3) and image.dtype == np.uint8
    assert max(image.shape[:2]) == 112
    outside = outside_ellipse(*image.shape[:2])
    assert outside.any() and not image[outside].any()
    # The face itself survives: the centre of the ellipse is the face, not black.
    h, w = image.shape[:2]
    assert image[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4].mean() > 60
    chunks, trailing = png_chunks(thumb.png)
    assert chunks[0] == "IHDR" and set(chunks[1:-1]) == {"IDAT"} and chunks[-1] == "IEND" and trailing == 0
    assert png_metadata(thumb.png) == []


def test_edge_is_a_curve_not_a_staircase():
    """Uniform skin, no face outline: the visible area is the inscribed ellipse to the pixel. Every pixel at
    least EDGE_PX inside it keeps its exact colour (the 8x8-block mask lost up to 8 px there), the ones
    between fade, and every pixel whose centre is outside is exactly black."""
    colour = np.array((120, 160, 220), np.uint8)
    skin = np.empty((112, 112, 3), np.uint8)
    skin[:] = colour
    thumb = make_thumbnail(skin, (0.0, 0.0, 112.0, 112.0), ThumbnailPolicy(112, 0.0))
    image = decode(thumb.png)
    depth = depth_inside_inscribed(*image.shape[:2])
    assert (image[depth >= EDGE_PX] == colour).all()
    assert not image[depth == 0].any()
    fading = (depth > 0) & (depth < EDGE_PX)
    assert fading.any() and (image[fading] <= colour).all()
    # Row by row, the visible span ends where the ellipse does (within the fade), on both sides.
    for row in range(image.shape[0]):
        visible = np.flatnonzero(image[row].max(axis=1))
        inside = np.flatnonzero(depth[row] > 0)
        if inside.size == 0:
            assert visible.size == 0
            continue
        assert visible.size and abs(visible[0] - inside[0]) <= 1 and abs(visible[-1] - inside[-1]) <= 1


def test_face_kept_exactly_when_not_shrunk(astronaut):
    # A face smaller than the policy: no resize, so every pixel well inside the ellipse is the frame's own.
    face = (200.0, 60.0, 260.0, 140.0)
    thumb = make_thumbnail(astronaut, face, ThumbnailPolicy(224, 0.2))
    image = decode(thumb.png)
    h, w = image.shape[:2]
    assert max(h, w) < 224
    x0, y0 = 200 - 12, 60 - 16  # face box minus the 20% margin
    source = astronaut[y0 : y0 + h, x0 : x0 + w]
    deep = depth_inside_inscribed(h, w) >= EDGE_PX
    assert np.array_equal(image[deep], source[deep])


def test_skin_everywhere_still_black_outside_ellipse():
    # A crop that is bright "skin" from edge to edge: nothing outside the ellipse may survive.
    skin = np.empty((300, 260, 3), np.uint8)
    skin[:] = (120, 160, 220)
    thumb = make_thumbnail(skin, (60.0, 50.0, 200.0, 250.0), ThumbnailPolicy(112, 0.2))
    image = decode(thumb.png)
    outside = outside_ellipse(*image.shape[:2])
    assert not image[outside].any()
    assert image[~outside].max() > 100


def test_never_enlarged():
    crop = np.full((60, 60, 3), 128, np.uint8)
    thumb = make_thumbnail(crop, (20.0, 20.0, 40.0, 40.0), ThumbnailPolicy(112, 0.2))
    assert (thumb.width, thumb.height) == (28, 28)


def test_face_at_crop_edge_is_padded_not_shifted(astronaut):
    # The margin reaches past the crop: the thumbnail stays centred on the face, padded with black.
    thumb = make_thumbnail(astronaut[:, 190:], (0.0, 20.0, 100.0, 180.0), ThumbnailPolicy(112, 0.2))
    image = decode(thumb.png)
    assert image[:, : image.shape[1] // 8].max() == 0


def test_metadata_check_finds_chunks_and_trailing_bytes(astronaut):
    png = make_thumbnail(astronaut, ASTRONAUT_FACE, ThumbnailPolicy(112, 0.2)).png
    head, iend = png[:33], png[-12:]  # signature + IHDR | IEND
    tampered = head + chunk(b"tEXt", b"Author\x00gate-01") + chunk(b"frAm", b"\x00" * 64) + png[33:]
    assert png_metadata(tampered) == ["tEXt", "frAm"]
    assert png_metadata(png + b"hidden frame bytes") == ["18 bytes after IEND"]
    assert iend[4:8] == b"IEND"
    with pytest.raises(ValueError, match="no IEND"):
        png_chunks(png[:-12])
    jpeg = cv2.imencode(".jpg", astronaut[:32, :32])[1].tobytes()
    exif = b"\xff\xe1\x00\x10Exif\x00\x00" + b"\x00" * 8
    assert jpeg_metadata(jpeg[:2] + exif + b"\xff\xfe\x00\x07hello" + jpeg[2:]) == ["APP1", "COM"]


def test_an_encoder_that_adds_a_chunk_or_changes_a_pixel_is_refused(astronaut, monkeypatch):
    real = thumbnail_module.encode_png

    def with_text(image: np.ndarray) -> bytes:
        png = real(image)
        return png[:33] + chunk(b"tEXt", b"Comment\x00hello") + png[33:]

    def off_by_one(image: np.ndarray) -> bytes:
        changed = image.copy()
        changed[0, 0] = 1  # a corner: outside every ellipse
        return real(changed)

    for encoder, message in ((with_text, "more than pixels"), (off_by_one, "not exactly")):
        monkeypatch.setattr(thumbnail_module, "encode_png", encoder)
        with pytest.raises(ThumbnailError, match=message):
            make_thumbnail(astronaut, ASTRONAUT_FACE, ThumbnailPolicy(112, 0.2))


@settings(max_examples=60, deadline=None)
@given(
    crop_h=st.integers(20, 400),
    crop_w=st.integers(20, 400),
    box=st.tuples(*[st.floats(0.0, 1.0)] * 4),
    size=st.integers(16, 224),
    margin=st.floats(0.0, 0.5),
    seed=st.integers(0, 2**32 - 1),
    outline=st.none() | st.tuples(st.floats(0.3, 1.5), st.floats(0.3, 1.5), st.integers(0, 359)),
)
def test_any_crop_any_policy(crop_h, crop_w, box, size, margin, seed, outline):
    crop = np.random.default_rng(seed).integers(0, 256, (crop_h, crop_w, 3), dtype=np.uint8)
    fx0, fx1 = sorted((box[0], box[2]))
    fy0, fy1 = sorted((box[1], box[3]))
    face = (
        fx0 * crop_w,
        fy0 * crop_h,
        max(fx1 * crop_w, fx0 * crop_w + 2),
        max(fy1 * crop_h, fy0 * crop_h + 2),
    )
    points = None
    if outline is not None:
        # A tilted face outline of any proportions around the box centre, possibly reaching past the box.
        rx, ry, angle = outline
        centre = ((face[0] + face[2]) / 2, (face[1] + face[3]) / 2)
        axes = (max(1, round(rx * (face[2] - face[0]) / 2)), max(1, round(ry * (face[3] - face[1]) / 2)))
        points = cv2.ellipse2Poly(tuple(round(c) for c in centre), axes, angle, 0, 360, 10).astype(float)
    try:
        thumb = make_thumbnail(crop, face, ThumbnailPolicy(size, margin), points)
    except ThumbnailError as exc:
        # An outline that shrinks to a pixel or less (a sliver face in a tiny thumbnail) is refused, never
        # sent unmasked; nothing else may fail.
        assert points is not None and str(exc) == "degenerate face outline"
        return
    image = decode(thumb.png)
    assert max(image.shape[:2]) <= size
    assert not image[outside_ellipse(*image.shape[:2])].any()
    assert png_metadata(thumb.png) == []
