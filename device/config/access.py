"""[access]: door modes, credentials besides the face, groups and schedules, anti-passback and visitor passes.

Which door this terminal is, is `[gate] door`; how that door lets people in (its mode, direction, who may
pass when) is the signed door policy (device/access/policy.py), never this file: a policy only the backend
can sign decides, and whoever can only publish on the broker cannot change it.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, field_validator

from device.config.base import Section

BADGE_READER = re.compile(r"^(none|evdev:/\S+|stand-in:/\S+)$")


class AccessConfig(Section):
    enabled: bool = Field(
        False,
        description="Door modes from the signed door policy: face (1:N), credential+face (a badge, QR code or "
        "number and PIN names the person, then the face is checked against that person only), credential "
        "(no face), face|credential. Off: the face alone decides, as without a policy.",
    )
    policy_public_key_file: Path | None = Field(
        None,
        description="The backend's Ed25519 key that signs door policies (base64 public key). Default: "
        "identity.gallery_public_key_file (the gallery key signs both). Never settable remotely.",
    )
    policy_file: Path | None = Field(
        None, description="Where the encrypted door policy lives (default <state_dir>/access.sealed)."
    )
    credential_key_file: Path | None = Field(
        None,
        description="The site's credential key (32 bytes, 0600, `faceonly access keygen`): PINs are stored as "
        "argon2id of a keyed hash, badges as a keyed hash, both made with it. Unset: PIN and badge refused.",
    )
    badge_reader: str = Field(
        "none",
        description="none; evdev:/dev/input/by-id/...-event-kbd (a USB HID badge reader, or a Wiegand reader "
        "behind a Wiegand-to-USB converter, that types the card number and Enter; grabbed, so its keystrokes "
        "reach nothing else); stand-in:/path/fifo (tests: the same input_event records from a FIFO).",
    )
    qr_scan_hz: float = Field(
        5.0,
        ge=0.0,
        le=30.0,
        description="QR codes looked for this often per second while the door takes them (0: never). The "
        "decoder (zxing-cpp) runs in the frame loop on the frame itself: the image never leaves the process.",
    )
    pin_attempts: int = Field(
        5, ge=1, le=20, description="Wrong PINs in a row for one number before that number is refused."
    )
    pin_lockout_s: float = Field(
        300.0, ge=10.0, le=86_400.0, description="How long a number stays refused after pin_attempts."
    )

    @field_validator("badge_reader")
    @classmethod
    def _reader(cls, value: str) -> str:
        if not BADGE_READER.match(value):
            raise ValueError("must be none, evdev:/path/to/event-device or stand-in:/path/to/fifo")
        return value
