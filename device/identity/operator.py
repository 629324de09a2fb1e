"""The backend's side of the gallery (used by `faceonly gallery ...`): its signing key, and update files.

An update file holds the signed manifest, the update's body and the full gallery body it results in, so the
next delta can be made from it:

    b"FOGU1\\n" | u32 n | manifest JSON | u64 m | update body | result body

It holds templates (biometric data): it is written 0600, atomically. The gallery key's private half stays
with the backend; the terminal is given only `<key>.pub` (base64), in its config file.
"""

from __future__ import annotations

import base64
import json
import struct
from dataclasses import dataclass
from pathlib import Path

from nacl.signing import SigningKey

from device.config.privacy import read_public_key_file
from device.contracts import ModelRef
from device.identity.gallery import Gallery, Subject, decode_body, encode_body, gallery_digest, make_manifest
from device.infra.atomicfile import write_atomic
from device.privacy.keyfile import load_or_create_secret, load_secret
from device.privacy.signing import SEED_BYTES, Signer
from device.wire.bounded import PayloadError, loads_bounded

MAGIC = b"FOGU1\n"
# Fits one command request (mqtt.max_command_bytes, 64 KiB by default) once base64-encoded.
DEFAULT_CHUNK = 32 * 1024
_U32, _U64 = struct.Struct("<I"), struct.Struct("<Q")


def keygen(path: Path) -> tuple[Path, str]:
    """Create the gallery key at `path` (0600) and `<path>.pub`; refuses to replace an existing key."""
    if path.exists():
        raise FileExistsError(f"{path} exists: a gallery key is never replaced silently")
    seed, _ = load_or_create_secret(path, SEED_BYTES)
    public = base64.b64encode(bytes(SigningKey(seed).verify_key)).decode()
    pub = path.with_name(path.name + ".pub")
    write_atomic(pub, (public + "\n").encode(), mode=0o644)
    return pub, public


def load_gallery_signer(path: Path) -> Signer:
    return Signer(SigningKey(load_secret(path, SEED_BYTES)))


def read_public_key(path: Path) -> bytes:
    """The raw 32-byte key from a `.pub` file (base64 text); ValueError names the file and what it is."""
    try:
        return read_public_key_file(path)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


@dataclass(frozen=True)
class UpdateFile:
    manifest: dict
    body: bytes
    result: bytes

    def gallery(self, embedder: ModelRef) -> Gallery:
        subjects, _ = decode_body(self.result)
        authority = self.manifest.get("authority", "lab")
        return Gallery(self.manifest["version"], embedder, tuple(subjects), authority=authority)


def write_update(path: Path, update: UpdateFile) -> None:
    head = json.dumps(update.manifest, separators=(",", ":")).encode()
    data = MAGIC + _U32.pack(len(head)) + head + _U64.pack(len(update.body)) + update.body + update.result
    write_atomic(path, data)


def read_update(path: Path) -> UpdateFile:
    data = Path(path).read_bytes()
    if not data.startswith(MAGIC):
        raise ValueError(f"{path}: not a faceonly gallery update file")
    at = len(MAGIC)
    (n,) = _U32.unpack_from(data, at)
    try:
        manifest = loads_bounded(data[at + 4 : at + 4 + n], n)
    except PayloadError as exc:
        raise ValueError(f"{path}: its manifest is not readable: {exc}") from None
    at += 4 + n
    (m,) = _U64.unpack_from(data, at)
    at += 8
    return UpdateFile(manifest, data[at : at + m], data[at + m :])


def snapshot(
    signer: Signer,
    subjects: list[Subject],
    version: int,
    embedder: ModelRef,
    chunk: int = DEFAULT_CHUNK,
    authority: str = "lab",
) -> UpdateFile:
    body = encode_body(subjects)
    manifest = make_manifest(
        signer, "snapshot", version, embedder, body, chunk, None, gallery_digest(subjects), authority
    )
    return UpdateFile(manifest, body, body)


def delta(  # noqa: PLR0913 - each argument is one field of the signed manifest
    signer: Signer,
    base: UpdateFile,
    embedder: ModelRef,
    add: tuple[Subject, ...] = (),
    remove: tuple[str, ...] = (),
    version: int | None = None,
    chunk: int = DEFAULT_CHUNK,
    authority: str = "lab",
) -> UpdateFile:
    """A delta from `base`'s resulting gallery: add (or replace) and remove subjects."""
    if base.manifest.get("embedder", {}).get("sha256") != embedder.sha256:
        raise ValueError("the base gallery was made with another embedder: build a new snapshot instead")
    current = base.gallery(embedder)
    unknown = sorted(set(remove) - {s.id for s in current.subjects})
    if unknown:
        raise ValueError(f"cannot remove subjects the base gallery does not hold: {', '.join(unknown[:5])}")
    kept = {s.id: s for s in current.subjects if s.id not in set(remove)}
    kept.update({s.id: s for s in add})
    result = list(kept.values())
    body = encode_body(list(add), tuple(remove))
    new_version = version if version is not None else current.version + 1
    manifest = make_manifest(
        signer, "delta", new_version, embedder, body, chunk, current, gallery_digest(result), authority
    )
    return UpdateFile(manifest, body, encode_body(result))
