"""Power-cut-safe files: write a temp file, fsync it, rename over the target, fsync the directory.

Records that must be detectably whole carry a small checksum header (magic, length, sha256) so that a
torn or truncated file is reported as damaged instead of being half-loaded. This is integrity against
power cuts, not secrecy: encryption is device.privacy.seal.
"""

from __future__ import annotations

import hashlib
import os
import struct
import tempfile
from pathlib import Path

_MAGIC = b"FO1\n"
_HEADER = struct.Struct(">4sQ32s")  # magic, payload length, sha256(payload)


class TornFileError(ValueError):
    """A checksummed file is truncated, padded or altered (for example by a power cut mid-write)."""


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, mode: int = 0o600, *, durable: bool = True) -> None:
    """Replace `path` with `data` so that after a crash it holds either the old or the new bytes.

    `durable=False` skips both fsyncs: other readers never see a partial file, but after a power cut the
    file may be missing, empty or torn. Only for data whose reader detects that (authenticated
    encryption, a checksum) and can get it again."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)


def checksummed(payload: bytes) -> bytes:
    return _HEADER.pack(_MAGIC, len(payload), hashlib.sha256(payload).digest()) + payload


def verified_payload(blob: bytes, name: str = "file") -> bytes:
    """The payload of a checksummed blob, or TornFileError saying what is wrong with it."""
    if len(blob) < _HEADER.size:
        raise TornFileError(f"{name}: {len(blob)} bytes, shorter than its header (truncated)")
    magic, length, digest = _HEADER.unpack_from(blob)
    if magic != _MAGIC:
        raise TornFileError(f"{name}: not a faceonly checksummed file (bad magic)")
    payload = blob[_HEADER.size :]
    if len(payload) != length:
        raise TornFileError(f"{name}: payload is {len(payload)} bytes, header says {length} (torn write)")
    if hashlib.sha256(payload).digest() != digest:
        raise TornFileError(f"{name}: checksum mismatch (corrupted)")
    return payload


def write_checksummed(path: Path, payload: bytes, mode: int = 0o600) -> None:
    write_atomic(path, checksummed(payload), mode)


def read_checksummed(path: Path) -> bytes:
    return verified_payload(Path(path).read_bytes(), str(path))
