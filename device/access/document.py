"""The door policy as it travels and rests: a body (the policy's JSON) under a small signed manifest.

The manifest is the gallery's (device/identity/gallery.py) with its own `kind`: signed by the backend's key
(Ed25519 over RFC 8785 JSON), naming the body's size, sha256 and the Merkle root of its chunks, so it travels
by the same chunked, resumable transfer (`access.sync` / `access.chunk`, or `access.update` with the body
inline when it is small), sealed to the terminal on the way like gallery chunks (device/access/commands.py). A policy is always whole (a snapshot) and its version
only goes up; anything unsigned, forged, not newer or not a valid policy is refused with a reason and the
policy in force stays. At rest it is encrypted with the terminal's own key and verified again at every load.
"""

from __future__ import annotations

import json
import math
import re
import struct
import time
from pathlib import Path
from typing import Any

from nacl.exceptions import CryptoError
from nacl.secret import SecretBox
from pydantic import ValidationError

from device.access.policy import AccessPolicy
from device.identity import merkle
from device.identity.gallery import sha256_hex
from device.infra.atomicfile import write_atomic
from device.privacy.signing import SignatureError, Signer, verify_payload
from device.wire.base import problems
from device.wire.bounded import PayloadError, loads_bounded

KIND = "faceonly.access"
# Schema 2, as gallery manifests since the Merkle transfer: the body is described by its chunk_count and the
# chunk_root of a Merkle tree over its chunks (device.identity.merkle), so it travels by the same transfer.
SCHEMA = 2
_HEX_HASH = re.compile(r"[0-9a-f]{64}")
MAX_BODY = 64 * 1024 * 1024  # 200,000 people with a PIN, two badges and a QR code each is ~60 MB
DEFAULT_CHUNK = 32 * 1024
_LEN = struct.Struct("<I")


class PolicyRefused(ValueError):
    """A policy update or file was refused; `reason` is one word for machines, str(self) for people."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def encode(policy: AccessPolicy) -> bytes:
    return json.dumps(policy.model_dump(mode="json", by_alias=True), separators=(",", ":")).encode()


def make_manifest(
    signer: Signer, version: int, body: bytes, chunk_size: int = DEFAULT_CHUNK
) -> dict[str, Any]:
    leaves = [merkle.leaf_hash(body[i : i + chunk_size]) for i in range(0, len(body), chunk_size)]
    description: dict[str, Any] = {"size": len(body), "sha256": sha256_hex(body), "chunk_size": chunk_size}
    description.update({"chunk_count": len(leaves), "chunk_root": merkle.root(leaves).hex()})
    return signer.sign(
        {
            "schema": SCHEMA,
            "kind": KIND,
            "type": "snapshot",
            "version": version,
            "issued_at": round(time.time(), 3),
            "body": description,
        }
    )


def check_manifest(manifest: Any, key: bytes) -> dict[str, Any]:
    """The manifest if the policy key signed it and it is well formed; PolicyRefused otherwise."""
    if not isinstance(manifest, dict) or manifest.get("kind") != KIND or manifest.get("schema") != SCHEMA:
        raise PolicyRefused("malformed", f"not a {KIND} schema {SCHEMA} manifest")
    if "signature" not in manifest:
        raise PolicyRefused("unsigned", "the update carries no signature")
    try:
        verify_payload(manifest, key)
    except (SignatureError, ValueError) as exc:
        raise PolicyRefused("forged", f"not signed by this terminal's policy key ({exc})") from None
    try:
        version, body = manifest["version"], manifest["body"]
        ok = (
            type(version) is int
            and 1 <= version < 2**53
            and manifest.get("type") == "snapshot"
            and type(body["size"]) is int
            and 0 < body["size"] <= MAX_BODY
            and type(body["chunk_size"]) is int
            and body["chunk_size"] >= 1
            and isinstance(body["sha256"], str)
            and type(body["chunk_count"]) is int
            and body["chunk_count"] == math.ceil(body["size"] / body["chunk_size"])
            and isinstance(body["chunk_root"], str)
            and _HEX_HASH.fullmatch(body["chunk_root"]) is not None
        )
    except (KeyError, TypeError):
        ok = False
    if not ok:
        raise PolicyRefused("malformed", "version, type or body description missing or invalid")
    return manifest


def read_body(manifest: dict[str, Any], body: bytes | bytearray) -> AccessPolicy:
    """The policy a checked manifest's complete body holds; PolicyRefused when it is not that body or not
    a valid policy (the message names the field, never a credential)."""
    if len(body) != manifest["body"]["size"] or sha256_hex(body) != manifest["body"]["sha256"]:
        raise PolicyRefused("forged", "the body does not match the signed manifest")
    try:
        data = loads_bounded(body, MAX_BODY, max_depth=8)
    except PayloadError as exc:
        raise PolicyRefused("malformed", str(exc)) from None
    try:
        return AccessPolicy.model_validate(data)
    except ValidationError as exc:
        found = problems(exc)
        raise PolicyRefused("malformed", "; ".join(found[:5]) + (" ..." if len(found) > 5 else "")) from None


def check_newer(manifest: dict[str, Any], current: int) -> None:
    if manifest["version"] <= current:
        raise PolicyRefused("not_newer", f"version {manifest['version']} is not newer than {current}")


class PolicyStore:
    """The policy at rest: encrypted with the terminal's key, written atomically, verified at every load."""

    def __init__(self, path: Path, box: SecretBox) -> None:
        self.path, self._box = Path(path), box

    def save(self, manifest: dict[str, Any], body: bytes | bytearray) -> None:
        head = json.dumps(manifest, separators=(",", ":")).encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, bytes(self._box.encrypt(_LEN.pack(len(head)) + head + body)))

    def load(self, key: bytes) -> tuple[dict[str, Any], AccessPolicy] | None:
        """(manifest, policy), None when there is none yet; PolicyRefused when it cannot be trusted."""
        if not self.path.exists():
            return None
        try:
            plain = self._box.decrypt(self.path.read_bytes())
            (n,) = _LEN.unpack_from(plain)
            manifest = loads_bounded(plain[4 : 4 + n], n)
        except (CryptoError, struct.error, PayloadError):
            raise PolicyRefused("damaged", f"{self.path} does not decrypt with this terminal's key") from None
        checked = check_manifest(manifest, key)
        return checked, read_body(checked, plain[4 + n :])
