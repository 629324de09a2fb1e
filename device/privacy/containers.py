"""What an encoded image carries besides its pixels: the segments of a JPEG and the chunks of a PNG.

Used by the thumbnail's own check (the terminal's PNG must be pixels only) and by `faceonly audit` (no image
anywhere in a message may carry metadata).
"""

from __future__ import annotations

JPEG_SOI = b"\xff\xd8"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG marker bytes that carry metadata: APP1..APP15 (EXIF, XMP, ICC, vendor data) and COM.
JPEG_METADATA_MARKERS = frozenset([*range(0xE1, 0xF0), 0xFE])
# The PNG chunks that hold the image itself; any other chunk (text, time, EXIF, colour profile, private
# chunks, animation) is data beside the pixels.
PNG_PIXEL_CHUNKS = frozenset({"IHDR", "PLTE", "IDAT", "IEND"})


def jpeg_markers(data: bytes) -> list[int]:
    """Marker bytes of the JPEG's header segments, in order, up to the start of scan."""
    if not data.startswith(JPEG_SOI):
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


def jpeg_metadata(data: bytes) -> list[str]:
    """Names of metadata segments in a JPEG (empty when it carries none)."""
    return [
        f"APP{m - 0xE0}" if m != 0xFE else "COM" for m in jpeg_markers(data) if m in JPEG_METADATA_MARKERS
    ]


def png_chunks(data: bytes) -> tuple[list[str], int]:
    """The PNG's chunk types in order up to IEND, and how many bytes follow IEND."""
    if not data.startswith(PNG_SIGNATURE):
        raise ValueError("not a PNG (no signature)")
    chunks, pos = [], len(PNG_SIGNATURE)
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8].decode("latin-1")
        chunks.append(kind)
        pos += 12 + length
        if kind == "IEND":
            return chunks, max(0, len(data) - pos)
    raise ValueError("malformed PNG: no IEND chunk")


def png_metadata(data: bytes) -> list[str]:
    """Every PNG chunk that is not pixel data, and bytes hidden after the image's end (empty: pixels only)."""
    chunks, trailing = png_chunks(data)
    found = [kind for kind in chunks if kind not in PNG_PIXEL_CHUNKS]
    return [*found, f"{trailing} bytes after IEND"] if trailing else found
