"""The gallery: enrolled subjects and their templates, and the backend-signed updates that change it.

A gallery body is a canonical binary form (so that two parties hash the same gallery to the same bytes):

    b"FOG1" | u32 header length | header JSON | float32 little-endian templates, row after row

with the header {"dim", "subjects": [[id, display_name or null, n_templates(, averaged)], ...] sorted by id,
"remove"}; `averaged` (2..MAX_AVERAGED, absent for 1) says how many photos each of the subject's templates is
the mean of, which picks the threshold curve the terminal needs for it (device.identity.thresholds).
An update is a small signed manifest (Ed25519 over RFC 8785 JSON, by the backend's gallery key) naming the
sha256 and size of its body, and how it travels in chunks: `chunk_size`, `chunk_count` and `chunk_root`, the
root of a Merkle tree over the chunks (device.identity.merkle), so the manifest stays small however large the
gallery and each chunk is checked on arrival with its inclusion proof (schema 1 listed every chunk's sha256
instead; still accepted, for galleries stored and update files made before):

- snapshot: version N, the whole gallery; the body IS the new gallery;
- delta: base_version and base_sha256 -> version N; its body holds the subjects to add or replace and the
  ids to remove.

Both may carry `authority`: "backend" when a backend keeps the gallery (its versions are the one counter;
faceonly_backend/gallery_authority.py), "lab" (the default) when `faceonly gallery` tools make it by hand. A
terminal whose gallery a backend keeps refuses a lab update (`managed`): there is one version counter per
gallery, never two that race.

Size (~410 lines): the body format, the manifest and the checks of an update are one contract that both
ends use; the Merkle tree, the sealing and the store are their own modules.

Both carry `result_sha256`, the digest of the gallery they result in: sha256 over the sorted list of
(subject id, sha256 of that subject's record), so the terminal ends up with exactly the gallery the backend
signed for, or refuses. Because the digest is built from per-subject hashes, `subject.purge` can erase a
subject's templates on the terminal (keeping only its hash) and the stored gallery still verifies, and the
backend's next delta (which removes the subject) still finds its base.

`apply` refuses (GalleryRefused, with a reason; nothing changes) anything unsigned, forged, not newer, on a
wrong base or made with another embedder. What is stored (device.identity.store) is the resulting body with
the manifest that vouches for it, so it is verified again at every load.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import struct
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from device.contracts import ModelRef
from device.identity import merkle
from device.privacy.signing import SignatureError, Signer, verify_payload
from device.wire.bounded import PayloadError, loads_bounded

MAGIC = b"FOG1"
SCHEMA = 2
SCHEMAS = (1, 2)  # 1: the manifest lists every chunk's sha256 (made before chunk_root)
KIND = "faceonly.gallery"
DIM = 128
MAX_TEMPLATES_PER_SUBJECT = 16
# The largest mean the shipped threshold curves are calibrated for (thresholds.mean_curves in the manifest).
MAX_AVERAGED = 5
MAX_SUBJECTS = 1_000_000
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@:-]{0,127}$")
MAX_DISPLAY_NAME = 128
AUTHORITIES = ("backend", "lab")
_LEN = struct.Struct("<I")
_HEX_HASH = re.compile(r"[0-9a-f]{64}")


class GalleryRefused(ValueError):
    """An update or a gallery file was refused; `reason` is one word for machines, str(self) for people."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass(frozen=True)
class Subject:
    id: str
    display_name: str | None
    templates: np.ndarray  # (k, DIM) float32, L2-normalised
    averaged: int = 1  # each template is the mean of this many photos


@dataclass(frozen=True)
class Gallery:
    """What the terminal matches against: an immutable, verified state."""

    version: int
    embedder: ModelRef
    subjects: tuple[Subject, ...]  # sorted by id
    purged: tuple[tuple[str, str], ...] = ()  # (id, subject hash) erased on the terminal by subject.purge
    authority: str = "lab"  # who keeps it: "backend" or "lab" (the signed manifest says)

    @cached_property
    def sha256(self) -> str:
        """The gallery digest the backend signed (purged subjects count by their hash)."""
        return gallery_digest(self.subjects, self.purged)

    @property
    def count(self) -> int:
        return len(self.subjects)

    @cached_property
    def averaged(self) -> set[int]:
        """The template kinds present (photos per template): each needs its own threshold curve."""
        return {s.averaged for s in self.subjects}

    @cached_property
    def _by_id(self) -> dict[str, Subject]:
        return {s.id: s for s in self.subjects}

    def subject(self, subject_id: str) -> Subject | None:
        return self._by_id.get(subject_id)

    def without(self, subject_id: str) -> Gallery:
        """The same signed state with one subject's templates erased (only its hash kept)."""
        found = self.subject(subject_id)
        if found is None:
            return self
        rest = tuple(s for s in self.subjects if s.id != subject_id)
        purged = tuple(sorted((*self.purged, (found.id, subject_hash(found)))))
        return Gallery(self.version, self.embedder, rest, purged, self.authority)

    def summary(self) -> dict[str, Any]:
        """version, count, model: what status, birth and gallery.list report (never a template or name)."""
        return {
            "version": self.version,
            "count": self.count,
            "templates": int(sum(len(s.templates) for s in self.subjects)),
            "model": {"name": self.embedder.name, "file": self.embedder.file, "sha256": self.embedder.sha256},
            "sha256": self.sha256,
            "authority": self.authority,
        }


def _check_id(subject_id: Any, display_name: Any) -> None:
    if not isinstance(subject_id, str) or not ID_PATTERN.match(subject_id):
        raise ValueError(f"subject id {str(subject_id)[:40]!r} must match {ID_PATTERN.pattern}")
    if display_name is not None and (
        not isinstance(display_name, str) or len(display_name) > MAX_DISPLAY_NAME
    ):
        raise ValueError(
            f"display name of {subject_id} must be text of at most {MAX_DISPLAY_NAME} characters"
        )


def _check_rows(rows: np.ndarray, what: str) -> None:
    norms = np.linalg.norm(rows, axis=1)
    if not np.isfinite(rows).all() or not np.all(np.abs(norms - 1.0) < 1e-3):
        raise ValueError(f"{what}: templates must be finite and L2-normalised")


def _check_averaged(subject_id: str, averaged: Any) -> int:
    if isinstance(averaged, bool) or not isinstance(averaged, int) or not 1 <= averaged <= MAX_AVERAGED:
        raise ValueError(f"{subject_id}: a template is the mean of 1..{MAX_AVERAGED} photos")
    return averaged


def check_subject(subject_id: Any, display_name: Any, templates: Any, averaged: int = 1) -> Subject:
    _check_id(subject_id, display_name)
    rows = np.asarray(templates, np.float32)
    if rows.ndim != 2 or rows.shape[1] != DIM or not 1 <= len(rows) <= MAX_TEMPLATES_PER_SUBJECT:
        raise ValueError(f"{subject_id}: 1..{MAX_TEMPLATES_PER_SUBJECT} templates of {DIM} values expected")
    _check_rows(rows, subject_id)
    return Subject(subject_id, display_name, rows, _check_averaged(subject_id, averaged))


def _entry(s: Subject) -> list[Any]:
    # averaged = 1 is written by omission, so that one gallery has exactly one body.
    base: list[Any] = [s.id, s.display_name, len(s.templates)]
    return base if s.averaged == 1 else [*base, s.averaged]


def encode_body(subjects: list[Subject], remove: tuple[str, ...] = ()) -> bytes:
    """The canonical body: subjects sorted by id, ids to remove sorted."""
    ordered = sorted(subjects, key=lambda s: s.id)
    header = {
        "dim": DIM,
        "subjects": [_entry(s) for s in ordered],
        "remove": sorted(remove),
    }
    head = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    rows = b"".join(np.asarray(s.templates, "<f4").tobytes() for s in ordered)
    return MAGIC + _LEN.pack(len(head)) + head + rows


def decode_body(body: bytes | bytearray) -> tuple[list[Subject], tuple[str, ...]]:
    """(subjects, ids to remove) of a body; ValueError naming what is wrong (never template values)."""
    if body[:4] != MAGIC or len(body) < 8:
        raise ValueError("not a faceonly gallery body (bad magic)")
    (n,) = _LEN.unpack_from(body, 4)
    try:
        header = loads_bounded(body[8 : 8 + n], n)
        entries, remove, dim = header["subjects"], header["remove"], header["dim"]
    except (PayloadError, KeyError, TypeError):
        raise ValueError("the gallery body's header is not valid") from None
    if dim != DIM or not isinstance(entries, list) or not isinstance(remove, list):
        raise ValueError(f"the gallery body must hold {DIM}-d templates, a subject list and a remove list")
    if len(entries) > MAX_SUBJECTS:
        raise ValueError(f"more than {MAX_SUBJECTS} subjects")
    try:
        if any(len(e) not in (3, 4) or (len(e) == 4 and e[3] == 1) for e in entries):
            raise ValueError
        counts = [int(e[2]) for e in entries]
    except (TypeError, ValueError, IndexError):
        raise ValueError(
            "every subject entry must be [id, display_name, n_templates(, averaged >= 2)]"
        ) from None
    rows = np.frombuffer(body, "<f4", offset=8 + n) if len(body) > 8 + n else np.zeros(0, "<f4")
    if rows.size != sum(counts) * DIM or any(not 1 <= c <= MAX_TEMPLATES_PER_SUBJECT for c in counts):
        raise ValueError("the template counts do not match the body's size or exceed the limit")
    matrix = rows.reshape(-1, DIM).astype(np.float32)
    # All templates at once (a 100,000-subject gallery must load in well under a second or two).
    _check_rows(matrix, "gallery body")
    subjects, start = [], 0
    for entry, count in zip(entries, counts, strict=True):
        _check_id(entry[0], entry[1])
        averaged = _check_averaged(entry[0], entry[3] if len(entry) == 4 else 1)
        subjects.append(Subject(entry[0], entry[1], matrix[start : start + count], averaged))
        start += count
    ids = [s.id for s in subjects]
    if ids != sorted(set(ids)):
        raise ValueError("subject ids must be unique and sorted")
    for rid in remove:
        if not isinstance(rid, str) or not ID_PATTERN.match(rid):
            raise ValueError("ids to remove must be subject ids")
    return subjects, tuple(remove)


def sha256_hex(data: bytes | bytearray) -> str:
    return hashlib.sha256(data).hexdigest()


def subject_hash(subject: Subject) -> str:
    """sha256 of id, display name (absent and empty differ), photos per template and templates: one entry of
    the digest."""
    name = b"\x00" if subject.display_name is None else b"\x01" + subject.display_name.encode()
    # A single-photo subject hashes as it did before `averaged` existed.
    kind = b"" if subject.averaged == 1 else f"mean{subject.averaged}".encode() + b"\x00"
    h = hashlib.sha256(subject.id.encode() + b"\x00" + name + b"\x00" + kind)
    h.update(np.ascontiguousarray(subject.templates, "<f4").tobytes())
    return h.hexdigest()


def gallery_digest(
    subjects: tuple[Subject, ...] | list[Subject], purged: tuple[tuple[str, str], ...] = ()
) -> str:
    entries = sorted([(s.id, subject_hash(s)) for s in subjects] + list(purged))
    return sha256_hex("".join(f"{sid}\0{h}\n" for sid, h in entries).encode())


def make_manifest(  # noqa: PLR0913 - each argument is one field of the signed manifest
    signer: Signer,
    kind: str,
    version: int,
    embedder: ModelRef,
    body: bytes,
    chunk_size: int,
    base: Gallery | None,
    result_sha256: str,
    authority: str = "lab",
) -> dict[str, Any]:
    """A signed update manifest for `body` (the backend side: `faceonly gallery build/delta`);
    `result_sha256` is the digest of the gallery it results in (gallery_digest); `authority` who keeps it."""
    leaves = [merkle.leaf_hash(body[i : i + chunk_size]) for i in range(0, len(body), chunk_size)]
    manifest: dict[str, Any] = {
        "schema": SCHEMA,
        "kind": KIND,
        "type": kind,
        "version": version,
        "embedder": {"name": embedder.name, "file": embedder.file, "sha256": embedder.sha256},
        "body": {
            "size": len(body),
            "sha256": sha256_hex(body),
            "chunk_size": chunk_size,
            "chunk_count": len(leaves),
            "chunk_root": merkle.root(leaves).hex(),
        },
        "result_sha256": result_sha256,
        "authority": authority,
    }
    if kind == "delta":
        if base is None:
            raise ValueError("a delta needs its base gallery")
        manifest.update({"base_version": base.version, "base_sha256": base.sha256})
    return signer.sign(manifest)


def check_manifest(manifest: Any, gallery_key: bytes, embedder: ModelRef) -> dict[str, Any]:
    """The manifest if signed by the gallery key, well formed and for this embedder; else GalleryRefused."""
    schema = manifest.get("schema") if isinstance(manifest, dict) else None
    if (
        not isinstance(manifest, dict)
        or manifest.get("kind") != KIND
        or type(schema) is not int
        or schema not in SCHEMAS
    ):
        raise GalleryRefused("malformed", f"not a {KIND} manifest of schema {' or '.join(map(str, SCHEMAS))}")
    if "signature" not in manifest:
        raise GalleryRefused("unsigned", "the update carries no signature")
    try:
        verify_payload(manifest, gallery_key)
    except (SignatureError, ValueError) as exc:
        raise GalleryRefused("forged", f"not signed by this terminal's gallery key ({exc})") from None
    try:
        version = manifest["version"]
        body = manifest["body"]
        ok = (
            isinstance(version, int)
            and 1 <= version < 2**53
            and manifest.get("type") in ("snapshot", "delta")
            and isinstance(body["size"], int)
            and isinstance(body["chunk_size"], int)
            and body["chunk_size"] >= 1
            and _chunks_described(schema, body, math.ceil(body["size"] / body["chunk_size"]))
        )
    except (KeyError, TypeError):
        ok = False
    if not ok:
        raise GalleryRefused("malformed", "version, type or body description missing or invalid")
    if manifest.get("authority", "lab") not in AUTHORITIES:
        raise GalleryRefused("malformed", f"authority must be one of {', '.join(AUTHORITIES)}")
    model = manifest.get("embedder") or {}
    if model.get("sha256") != embedder.sha256:
        raise GalleryRefused(
            "other_embedder",
            f"made with embedder {str(model.get('file'))[:60]} ({str(model.get('sha256'))[:12]}), this terminal "
            f"runs {embedder.file} ({embedder.sha256[:12]})",
        )
    return manifest


def _chunks_described(schema: int, body: dict[str, Any], count: int) -> bool:
    if schema == 1:
        chunks = body["chunks"]
        return isinstance(chunks, list) and len(chunks) == count and all(isinstance(c, str) for c in chunks)
    root = body["chunk_root"]
    return (
        type(body["chunk_count"]) is int
        and body["chunk_count"] == count
        and isinstance(root, str)
        and _HEX_HASH.fullmatch(root) is not None
    )


def check_applicable(manifest: dict[str, Any], current: Gallery | None) -> None:
    """Refuses an update that is not newer than `current`, or a delta whose base is not `current`."""
    have = current.version if current is not None else 0
    if (
        current is not None
        and current.authority == "backend"
        and manifest.get("authority", "lab") != "backend"
    ):
        raise GalleryRefused(
            "managed",
            f"a backend keeps this terminal's gallery (version {have}): change it there, not with lab tools",
        )
    if manifest["version"] <= have:
        raise GalleryRefused("not_newer", f"version {manifest['version']} is not newer than {have}")
    if manifest["type"] == "delta":
        if current is None or manifest.get("base_version") != current.version:
            raise GalleryRefused(
                "wrong_base", f"delta from version {manifest.get('base_version')}, terminal has {have}"
            )
        if manifest.get("base_sha256") != current.sha256:
            raise GalleryRefused("wrong_base", "delta's base gallery differs from the terminal's")


def apply(
    manifest: dict[str, Any], body: bytes | bytearray, current: Gallery | None, embedder: ModelRef
) -> Gallery:
    """The new gallery from a checked manifest and its complete body; GalleryRefused (nothing changed) else."""
    check_applicable(manifest, current)
    if len(body) != manifest["body"]["size"] or sha256_hex(body) != manifest["body"]["sha256"]:
        raise GalleryRefused("forged", "the body does not match the signed manifest")
    try:
        subjects, remove = decode_body(body)
    except ValueError as exc:
        raise GalleryRefused("malformed", str(exc)) from None
    purged: tuple[tuple[str, str], ...] = ()
    if manifest["type"] == "snapshot":
        if remove:
            raise GalleryRefused("malformed", "a snapshot removes nothing")
    else:
        assert current is not None  # check_applicable refused a delta without a base
        gone = set(remove) | {s.id for s in subjects}
        kept = [s for s in current.subjects if s.id not in gone]
        purged = tuple(p for p in current.purged if p[0] not in gone)
        subjects = sorted(kept + subjects, key=lambda s: s.id)
    result = Gallery(manifest["version"], embedder, tuple(subjects), purged, manifest.get("authority", "lab"))
    if result.sha256 != manifest.get("result_sha256"):
        raise GalleryRefused("wrong_base", "the update does not give the gallery the backend signed for")
    return result


def load_verified(
    manifest: Any, body: bytes, purged: list, gallery_key: bytes, embedder: ModelRef
) -> Gallery:
    """A stored gallery: its subjects (and purged hashes) must give exactly the digest the stored, signed
    manifest vouches for."""
    checked = check_manifest(manifest, gallery_key, embedder)
    try:
        subjects, _ = decode_body(body)
        erased = tuple(sorted((str(sid), str(h)) for sid, h in purged))
    except (ValueError, TypeError):
        raise GalleryRefused("damaged", "the stored gallery is not valid") from None
    gallery = Gallery(checked["version"], embedder, tuple(subjects), erased, checked.get("authority", "lab"))
    if gallery.sha256 != checked.get("result_sha256"):
        raise GalleryRefused("forged", "the stored gallery is not the one its manifest vouches for")
    return gallery
