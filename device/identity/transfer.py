"""Chunked, resumable gallery transfer: a signed manifest first, then its body chunk by chunk, in any order.

Each chunk is checked when it arrives: its inclusion proof must lead from the chunk to the manifest's signed
`chunk_root` (device.identity.merkle; a schema 1 manifest lists every chunk's sha256 instead). It is kept
encrypted with the terminal's key in an incoming folder named by the manifest's digest, so a transfer
interrupted by a lost connection or a restart resumes where it stopped (`missing` lists what is still
needed). One transfer at a time: a new manifest discards the chunks of any other.

Chunks are written without fsync (a 100,000-subject gallery is ~1,600 of them; an SD card's fsync costs
tens of ms): a chunk a power cut lost or tore fails its authenticated decryption when the transfer
resumes, is dropped, and is asked for again. The gallery itself is stored durably once it is applied.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nacl.exceptions import CryptoError
from nacl.secret import SecretBox

from device.identity import merkle
from device.identity.gallery import sha256_hex
from device.infra.atomicfile import write_atomic
from device.privacy.signing import canonical_json

MAX_CHUNK_BYTES = 512 * 1024
_CHUNK_FILE = re.compile(r"^(\d{6,})\.chunk$")


class TransferError(ValueError):
    """A chunk was refused (unknown transfer, bad index, wrong hash or proof); nothing was stored."""


def transfer_id(manifest: dict) -> str:
    """The digest of the signed manifest (signature included): names one transfer."""
    return hashlib.sha256(canonical_json(manifest) + manifest["signature"]["value"].encode()).hexdigest()[:32]


def chunk_count(manifest: dict[str, Any]) -> int:
    body = manifest["body"]
    return int(body["chunk_count"]) if manifest["schema"] >= 2 else len(body["chunks"])


def chunk_matches(manifest: dict[str, Any], index: int, data: bytes, proof: Sequence[str]) -> bool:
    """Whether `data` is chunk `index` of the checked manifest's body (`proof`: hex sibling hashes)."""
    body = manifest["body"]
    if manifest["schema"] < 2:
        return not proof and sha256_hex(data) == body["chunks"][index]
    try:
        path = [bytes.fromhex(p) for p in proof]
    except ValueError:
        return False
    head = bytes.fromhex(body["chunk_root"])
    return merkle.verify(index, body["chunk_count"], merkle.leaf_hash(data), path, head)


def chunk_proofs(manifest: dict[str, Any], body: bytes) -> list[list[str]]:
    """The proof to send with each chunk of `body` (the sender's side; empty lists for schema 1)."""
    size, count = manifest["body"]["chunk_size"], chunk_count(manifest)
    if manifest["schema"] < 2:
        return [[] for _ in range(count)]
    leaves = [merkle.leaf_hash(body[i * size : (i + 1) * size]) for i in range(count)]
    return [[h.hex() for h in path] for path in merkle.proofs(leaves)]


class Incoming:
    def __init__(self, folder: Path, box: SecretBox) -> None:
        self.folder, self._box = Path(folder), box
        self.manifest: dict | None = None
        self.id: str | None = None  # transfer_id(manifest)
        self._have: set[int] = set()  # chunk indices stored for the current transfer

    def begin(self, manifest: dict) -> list[int]:
        """Start (or resume) the transfer of a checked manifest; returns the missing chunk indices."""
        if manifest["body"]["chunk_size"] > MAX_CHUNK_BYTES:
            raise TransferError(f"chunks must be at most {MAX_CHUNK_BYTES} bytes")
        tid = transfer_id(manifest)
        if self.folder.exists():
            for other in self.folder.iterdir():
                if other.name != tid:
                    shutil.rmtree(other, ignore_errors=True)
        here = self.folder / tid
        here.mkdir(parents=True, exist_ok=True)
        self.manifest, self.id = manifest, tid
        self._have = set()
        count = chunk_count(manifest)
        for path in here.iterdir():
            found = _CHUNK_FILE.match(path.name)
            if found and int(found.group(1)) < count and self._intact(path):
                self._have.add(int(found.group(1)))
            else:  # a torn chunk, or a temp file a crash left behind
                path.unlink(missing_ok=True)
        return self.missing()

    def _intact(self, path: Path) -> bool:
        try:
            self._box.decrypt(path.read_bytes())
        except (CryptoError, ValueError, OSError):
            return False
        return True

    def _chunk_path(self, index: int) -> Path:
        assert self.id is not None
        return self.folder / self.id / f"{index:06d}.chunk"

    def missing(self, limit: int | None = None) -> list[int]:
        """The chunk indices still needed, in order (the first `limit` of them)."""
        if self.manifest is None:
            return []
        out: list[int] = []
        for i in range(chunk_count(self.manifest)):
            if i not in self._have:
                out.append(i)
                if limit is not None and len(out) >= limit:
                    break
        return out

    @property
    def missing_count(self) -> int:
        return 0 if self.manifest is None else chunk_count(self.manifest) - len(self._have)

    def put(self, tid: str, index: int, data: bytes, proof: Sequence[str] = ()) -> int:
        """Store one chunk of transfer `tid`; returns how many chunks are still missing."""
        if self.manifest is None or tid != self.id:
            raise TransferError("no such transfer in progress: send gallery.sync with its manifest first")
        count = chunk_count(self.manifest)
        if not 0 <= index < count:
            raise TransferError(f"chunk index {index} outside 0..{count - 1}")
        if not chunk_matches(self.manifest, index, data, proof):
            raise TransferError(f"chunk {index} does not match the signed manifest (hash or proof)")
        if index not in self._have:  # a chunk sent again (a retry, a replay) is stored once
            write_atomic(self._chunk_path(index), bytes(self._box.encrypt(data)), durable=False)
            self._have.add(index)
        return self.missing_count

    def body(self) -> bytearray:
        """The assembled body once nothing is missing."""
        if self.manifest is None or self.missing_count:
            raise TransferError("the transfer is not complete")
        # Filled in place: a large gallery's body is held once, not once in pieces and once joined.
        body, at = bytearray(self.manifest["body"]["size"]), 0
        for i in range(chunk_count(self.manifest)):
            path = self._chunk_path(i)
            try:
                chunk = self._box.decrypt(path.read_bytes())
            except (CryptoError, OSError):
                path.unlink(missing_ok=True)
                self._have.discard(i)
                raise TransferError(f"stored chunk {i} was damaged on disk: send it again") from None
            body[at : at + len(chunk)] = chunk
            at += len(chunk)
        if at != len(body):
            raise TransferError(f"the stored chunks hold {at} bytes, the manifest says {len(body)}")
        return body  # not bytes(body): that would hold a large body twice for a moment

    def discard(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
        self.manifest, self.id = None, None
        self._have = set()
