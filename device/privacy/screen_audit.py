"""The door screen's channel under audit: no message on it carries image bytes (invariant: the frame never
reaches the local screen either). Pure; `faceonly audit --screen URL` feeds it the Server-Sent Events it reads.

A message fails when it holds an image anywhere (JSON strings, base64, data: URLs, raw bytes) or any base64
blob longer than the longest thing a screen is sent in one string (a display name, 128 characters).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from device.privacy.imagescan import ImageFinding, decode_base64, find_images, images_in_json

MAX_TEXT_CHARS = 256


@dataclass(frozen=True)
class ScreenFinding:
    event: str
    size: int
    images: tuple[ImageFinding, ...] = ()
    blobs: tuple[str, ...] = ()  # JSON paths of long base64 strings
    malformed: bool = False


def _blobs(node: Any, path: str = "") -> list[str]:
    if isinstance(node, dict):
        return [b for k, v in node.items() for b in _blobs(v, f"{path}.{k}" if path else str(k))]
    if isinstance(node, list):
        return [b for i, v in enumerate(node) for b in _blobs(v, f"{path}[{i}]")]
    if isinstance(node, str) and len(node) > MAX_TEXT_CHARS and decode_base64(node) is not None:
        return [path]
    return []


def inspect_screen_message(event: str, data: str) -> ScreenFinding:
    raw = data.encode("utf-8", errors="surrogateescape")
    images = tuple(find_images(raw, f"{event}:raw"))
    try:
        document = json.loads(data)
    except ValueError:
        return ScreenFinding(event, len(raw), images, malformed=True)
    images += tuple(images_in_json(document, event))
    return ScreenFinding(event, len(raw), images, tuple(_blobs(document)))


def screen_verdict(findings: list[ScreenFinding]) -> tuple[bool | None, str]:
    """(passed, detail) of the screen_no_images rule; None when nothing was read from the screen."""
    if not findings:
        return False, "no message read from the door screen (is --screen the page's URL?)"
    bad = [
        f"{f.event}: "
        + ", ".join([*(i.where for i in f.images), *f.blobs, *(["not JSON"] if f.malformed else [])])
        for f in findings
        if f.images or f.blobs or f.malformed
    ]
    if bad:
        return False, "; ".join(bad[:5]) + (f"; and {len(bad) - 5} more" if len(bad) > 5 else "")
    kinds = {k: sum(f.event == k for f in findings) for k in sorted({f.event for f in findings})}
    seen = ", ".join(f"{n} {k}" for k, n in kinds.items())
    return True, f"{len(findings)} screen message(s) ({seen}), no image bytes, no blob"
