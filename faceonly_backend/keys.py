"""The backend's sealing key: the X25519 private key that opens what terminals seal to it."""

from __future__ import annotations

import base64
import binascii
from pathlib import Path

KEY_BYTES = 32


def read_private_key(path: Path | None) -> bytes | None:
    """None without a key file; else its 32 raw bytes (base64 in the file); ValueError names what is wrong."""
    if path is None:
        return None
    try:
        raw = base64.b64decode(path.read_text(encoding="ascii").strip(), validate=True)
    except (OSError, UnicodeDecodeError, binascii.Error, ValueError) as exc:
        raise ValueError(f"backend private key {path}: {exc}") from None
    if len(raw) != KEY_BYTES:
        raise ValueError(f"{path}: an X25519 private key is {KEY_BYTES} bytes, this one {len(raw)}")
    return raw
