"""Which hint a person gets while their face is not good enough yet: quality reason codes in, one hint out.

A hint says what to do ("Move closer"), the reason says what was wrong ("face too small"). Pure; the order of
HINT_CODES is the order in which hints win when several reasons hold at once (the first thing to fix first).
"""

from __future__ import annotations

from collections.abc import Iterable

HINT_CODES: dict[str, str] = {
    "hint.centre": "the face is cut off or outside the frame: centre it",
    "hint.closer": "the face is too small: come closer",
    "hint.light": "the face is too dark: face the light",
    "hint.glare": "the face is overexposed or clipped: step out of the glare",
    "hint.uncover": "the face mesh barely finds a face the detector sees: something covers it",
    "hint.straight": "the head is turned or tilted: look straight at the camera",
    "hint.still": "the face is blurred: hold still",
}

# Every quality reason code (device/contracts/reasons.py) has its hint (tests/test_screen_catalogue.py).
QUALITY_HINTS: dict[str, str] = {
    "quality.cut_off": "hint.centre",
    "quality.outside_frame": "hint.centre",
    "quality.too_small": "hint.closer",
    "quality.too_dark": "hint.light",
    "quality.overexposed": "hint.glare",
    "quality.clipped": "hint.glare",
    "quality.yaw": "hint.straight",
    "quality.pitch": "hint.straight",
    "quality.roll": "hint.straight",
    "quality.blurred": "hint.still",
    # Reasons the camera-relative quality gate (issue 21) adds:
    "quality.low_contrast": "hint.light",
    "quality.no_landmarks": "hint.uncover",
    "quality.eyes_too_close": "hint.closer",
}
# Below this face-mesh face score on a face the detector found, the face is taken to be covered (a mask,
# a hand, a scarf): the mesh model's face flag drops on occluded faces long before detection does.
COVERED_BELOW = 0.5
_RANK = {code: i for i, code in enumerate(HINT_CODES)}


def hint_for(reasons: Iterable[str], mesh_presence: float | None = None) -> str | None:
    """The one hint to show for a frame's quality reason codes (None: nothing to fix)."""
    found = {QUALITY_HINTS[r] for r in reasons if r in QUALITY_HINTS}
    if mesh_presence is not None and mesh_presence < COVERED_BELOW:
        found.add("hint.uncover")
    return min(found, key=_RANK.__getitem__) if found else None
