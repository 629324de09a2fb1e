"""Secret key files in the state dir: created once (0600, atomic, checksummed), never silently replaced.

A key file that exists but is torn, truncated or altered is an error the operator must see: quietly
generating a new key would change the terminal's identity (signing) or revoke every template (transform).
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from device.infra.atomicfile import TornFileError, read_checksummed, write_checksummed

KEY_MODE = 0o600


class KeyFileError(RuntimeError):
    """A key file is damaged, has the wrong size or is readable by others; nothing was changed."""


def load_or_create_secret(path: Path, size: int) -> tuple[bytes, bool]:
    """(secret, created): the `size`-byte secret in `path`, generating it on first start."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        secret = secrets.token_bytes(size)
        write_checksummed(path, secret, KEY_MODE)
        return secret, True
    return load_secret(path, size), False


def load_secret(path: Path, size: int) -> bytes:
    path = Path(path)
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & 0o077:
        raise KeyFileError(f"key file {path} is readable by others (mode {mode:o}); chmod 600 it")
    try:
        secret = read_checksummed(path)
    except TornFileError as exc:
        raise KeyFileError(
            f"key file is damaged: {exc}. It was left as it is; restore it from a backup, or delete it "
            "on purpose to make a new key"
        ) from None
    if len(secret) != size:
        raise KeyFileError(f"key file {path} holds {len(secret)} bytes, expected {size}")
    return secret
