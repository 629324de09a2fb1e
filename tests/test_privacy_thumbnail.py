"""The face-only thumbnail: size cap, exact black outside the face ellipse, no JPEG metadata."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data
from hypothesis import given, settings
from hypothesis import strategies as st

from device.privacy.thumbnail import (
    ThumbnailPolicy,
    jpeg_markers,
    make_thumbnail,
    metadata_markers,
    outside_ellipse,
)

ASTRONAUT_FACE = (170.0, 20.0, 290.0, 180.0)  # x0, y0, x1, y1 of the face in skimage's astronaut


def decode(jpeg: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_UNCHANGED)
    assert image is not None
    return image


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return np.ascontiguousarray(skimage.data.astronaut()[:, :, ::-1])


def test_astronaut_thumbnail_is_small_face_only_and_bare(astronaut):
    thumb = make_thumbnail(astronaut, ASTRONAUT_FACE, ThumbnailPolicy(112, 0.2, 85))
    image = decode(thumb.jpeg)
    assert image.shape == (thumb.height, thumb.width, 3)
    assert max(image.shape[:2]) == 112
    outside = outside_ellipse(*image.shape[:2])
    assert outside.any() and not image[outside].any()
    # The face itself survives: the centre of the ellipse is the face, not black.
    h, w = image.shape[:2]
    assert image[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4].mean() > 60
    assert metadata_markers(thumb.jpeg) == []
    assert 0xE1 not in jpeg_markers(thumb.jpeg)


def test_skin_everywhere_still_black_outside_ellipse():
    # A crop that is bright "skin" from edge to edge: nothing outside the ellipse may survive.
    skin = np.empty((300, 260, 3), np.uint8)
    skin[:] = (120, 160, 220)
    thumb = make_thumbnail(skin, (60.0, 50.0, 200.0, 250.0), ThumbnailPolicy(112, 0.2, 95))
    image = decode(thumb.jpeg)
    outside = outside_ellipse(*image.shape[:2])
    assert not image[outside].any()
    assert image[~outside].max() > 100


def test_never_enlarged():
    crop = np.full((60, 60, 3), 128, np.uint8)
    thumb = make_thumbnail(crop, (20.0, 20.0, 40.0, 40.0), ThumbnailPolicy(112, 0.2, 85))
    assert (thumb.width, thumb.height) == (28, 28)


def test_face_at_crop_edge_is_padded_not_shifted(astronaut):
    # The margin reaches past the crop: the thumbnail stays centred on the face, padded with black.
    thumb = make_thumbnail(astronaut[:, 190:], (0.0, 20.0, 100.0, 180.0), ThumbnailPolicy(112, 0.2, 85))
    image = decode(thumb.jpeg)
    assert image[:, : image.shape[1] // 8].max() == 0


def test_metadata_check_finds_exif_and_comments(astronaut):
    thumb = make_thumbnail(astronaut, ASTRONAUT_FACE, ThumbnailPolicy(112, 0.2, 85))
    exif = b"\xff\xe1\x00\x10Exif\x00\x00" + b"\x00" * 8
    comment = b"\xff\xfe\x00\x07hello"
    tampered = thumb.jpeg[:2] + exif + comment + thumb.jpeg[2:]
    assert metadata_markers(tampered) == ["APP1", "COM"]


@settings(max_examples=60, deadline=None)
@given(
    crop_h=st.integers(20, 400),
    crop_w=st.integers(20, 400),
    box=st.tuples(*[st.floats(0.0, 1.0)] * 4),
    size=st.integers(16, 224),
    margin=st.floats(0.0, 0.5),
    quality=st.integers(75, 95),
    seed=st.integers(0, 2**32 - 1),
)
def test_any_crop_any_policy(crop_h, crop_w, box, size, margin, quality, seed):
    # Noise is the worst case for JPEG ringing next to the black blocks.
    crop = np.random.default_rng(seed).integers(0, 256, (crop_h, crop_w, 3), dtype=np.uint8)
    fx0, fx1 = sorted((box[0], box[2]))
    fy0, fy1 = sorted((box[1], box[3]))
    face = (
        fx0 * crop_w,
        fy0 * crop_h,
        max(fx1 * crop_w, fx0 * crop_w + 2),
        max(fy1 * crop_h, fy0 * crop_h + 2),
    )
    thumb = make_thumbnail(crop, face, ThumbnailPolicy(size, margin, quality))
    image = decode(thumb.jpeg)
    assert max(image.shape[:2]) <= size
    assert not image[outside_ellipse(*image.shape[:2])].any()
    assert metadata_markers(thumb.jpeg) == []
