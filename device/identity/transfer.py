"""Chunked, resumable gallery transfer: a signed manifest first, then its body chunk by chunk, in any order.

Each chunk is checked against the manifest's per-chunk sha256 when it arrives and kept encrypted with the
terminal's key in an incoming folder named by the manifest's digest, so a transfer interrupted by a lost
connection or a restart resumes where it stopped (`missing` lists what is still needed). One transfer at a
time: a new manifest discards the chunks of any other.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from nacl.exceptions import CryptoError
from nacl.secret import SecretBox

from device.identity.gallery import sha256_hex
from device.infra.atomicfile import write_atomic
from device.privacy.signing import canonical_json

MAX_CHUNK_BYTES = 512 * 1024


class TransferError(ValueError):
    """A chunk was refused (unknown transfer, bad index, wrong hash); nothing was stored."""


def transfer_id(manifest: dict) -> str:
    """The digest of the signed manifest (signature included): names one transfer."""
    return hashlib.sha256(canonical_json(manifest) + manifest["signature"]["value"].encode()).hexdigest()[:32]


class Incoming:
    def __init__(self, folder: Path, box: SecretBox) -> None:
        self.folder, self._box = Path(folder), box
        self.manifest: dict | None = None

    @property
    def id(self) -> str | None:
        return transfer_id(self.manifest) if self.manifest is not None else None

    def begin(self, manifest: dict) -> list[int]:
        """Start (or resume) the transfer of a checked manifest; returns the missing chunk indices."""
        if manifest["body"]["chunk_size"] > MAX_CHUNK_BYTES:
            raise TransferError(f"chunks must be at most {MAX_CHUNK_BYTES} bytes")
        tid = transfer_id(manifest)
        if self.folder.exists():
            for other in self.folder.iterdir():
                if other.name != tid:
                    shutil.rmtree(other, ignore_errors=True)
        (self.folder / tid).mkdir(parents=True, exist_ok=True)
        self.manifest = manifest
        return self.missing()

    def _chunk_path(self, index: int) -> Path:
        assert self.manifest is not None
        return self.folder / transfer_id(self.manifest) / f"{index:06d}.chunk"

    def missing(self) -> list[int]:
        if self.manifest is None:
            return []
        return [i for i in range(len(self.manifest["body"]["chunks"])) if not self._chunk_path(i).exists()]

    def put(self, tid: str, index: int, data: bytes) -> list[int]:
        """Store one chunk of transfer `tid`; returns the indices still missing."""
        if self.manifest is None or tid != self.id:
            raise TransferError("no such transfer in progress: send gallery.sync with its manifest first")
        chunks = self.manifest["body"]["chunks"]
        if not 0 <= index < len(chunks):
            raise TransferError(f"chunk index {index} outside 0..{len(chunks) - 1}")
        if sha256_hex(data) != chunks[index]:
            raise TransferError(f"chunk {index} does not match the manifest's hash")
        write_atomic(self._chunk_path(index), bytes(self._box.encrypt(data)))
        return self.missing()

    def body(self) -> bytes:
        """The assembled body once nothing is missing."""
        if self.manifest is None or self.missing():
            raise TransferError("the transfer is not complete")
        try:
            return b"".join(
                self._box.decrypt(self._chunk_path(i).read_bytes())
                for i in range(len(self.manifest["body"]["chunks"]))
            )
        except CryptoError:
            raise TransferError("a stored chunk does not decrypt with this terminal's key") from None

    def discard(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
        self.manifest = None
