"""Sealed biometric payloads: embedding and thumbnail encrypted to the backend's X25519 public key.

A libsodium sealed box (X25519 + XSalsa20-Poly1305, ephemeral sender key): only the holder of the
backend's private key can open it; the terminal itself cannot read back what it sealed. The backend
opens a payload with one call::

    from device.privacy.seal import open_sealed
    biometric = open_sealed(backend_private_key, event_payload)   # -> {"embedding": ..., "thumbnail": ...}
"""

from __future__ import annotations

import base64
import json
from typing import Any

from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, PublicKey, SealedBox

from device.privacy.signing import key_id
from device.wire.bounded import PayloadError, loads_bounded

ALG = "x25519-xsalsa20poly1305-sealedbox"
SEALED_SCHEMA = 1


class SealError(ValueError):
    """A sealed blob is malformed, addressed to another key, or was altered."""


def seal(public_key: bytes, content: dict[str, Any]) -> dict[str, Any]:
    """`content` (JSON-ready) encrypted to `public_key`: {alg, recipient, ciphertext(base64)}."""
    plaintext = json.dumps(
        {"schema": SEALED_SCHEMA, **content}, sort_keys=True, separators=(",", ":"), allow_nan=False
    ).encode("utf-8")
    ciphertext = SealedBox(PublicKey(bytes(public_key))).encrypt(plaintext)
    return {
        "alg": ALG,
        "recipient": key_id(public_key),
        "ciphertext": base64.b64encode(ciphertext).decode(),
    }


def _as_private_key(key: PrivateKey | bytes | str) -> PrivateKey:
    if isinstance(key, PrivateKey):
        return key
    raw = base64.b64decode(key, validate=True) if isinstance(key, str) else bytes(key)
    return PrivateKey(raw)


def find_sealed(payload: dict[str, Any]) -> dict[str, Any]:
    """The sealed blob in an event payload, its `biometric` section, or the blob itself."""
    biometric = payload.get("biometric")
    nested = biometric.get("sealed") if isinstance(biometric, dict) else None
    for candidate in (payload, payload.get("sealed"), nested):
        if isinstance(candidate, dict) and candidate.get("alg") == ALG and "ciphertext" in candidate:
            return candidate
    raise SealError("no sealed biometric blob in this payload (was sealing off on the terminal?)")


def open_sealed(private_key: PrivateKey | bytes | str, payload: dict[str, Any]) -> dict[str, Any]:
    """The biometric content of a sealed event (whole payload, its `biometric` section or the blob).

    `private_key`: the backend's X25519 private key (nacl PrivateKey, 32 raw bytes or base64 text).
    Returns {"schema", "embedding" (base64 float32 little-endian), "embedding_dim", ["thumbnail" (base64 PNG)]}.
    """
    blob = find_sealed(payload)
    key = _as_private_key(private_key)
    mine = key_id(bytes(key.public_key))
    if blob.get("recipient") != mine:
        raise SealError(f"sealed to key {blob.get('recipient')!r}, this private key is {mine!r}")
    try:
        plaintext = SealedBox(key).decrypt(base64.b64decode(blob["ciphertext"], validate=True))
    except (CryptoError, ValueError, TypeError) as exc:
        raise SealError(f"sealed blob does not decrypt (altered or truncated): {exc}") from None
    try:
        content = loads_bounded(plaintext, len(plaintext))
    except PayloadError as exc:
        raise SealError(f"the sealed content is not readable: {exc}") from None
    if not isinstance(content, dict) or content.get("schema") != SEALED_SCHEMA:
        schema = content.get("schema") if isinstance(content, dict) else None
        raise SealError(f"unsupported sealed content schema {schema!r}")
    return content
