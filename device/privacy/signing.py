"""Signed payloads: each terminal's own Ed25519 key, a signature over canonical JSON, and its check.

Canonical form: the payload without its `signature` field in the JSON Canonicalization Scheme
(RFC 8785: sorted keys, no whitespace, ECMAScript number formatting), so a consumer in any language
with a JCS library reproduces the signed bytes exactly, floats included (`1.0` is `1`, `1e-07` is
`1e-7` there, which plain `json.dumps` would not give).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rfc8785
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from device.privacy.keyfile import load_or_create_secret

ALG = "Ed25519"
SIGNATURE_FIELD = "signature"
SEED_BYTES = 32


class SignatureError(ValueError):
    """A payload's signature is missing, malformed, from another key, or does not match its content."""


def canonical_json(payload: dict[str, Any]) -> bytes:
    """The signed bytes. ValueError naming the field for what JSON cannot carry (NaN, Infinity)."""
    body = {k: v for k, v in payload.items() if k != SIGNATURE_FIELD}
    where = _non_finite(body, "")
    if where is not None:
        raise ValueError(f"payload cannot be canonicalised for signing: {where} is not a finite number")
    try:
        return rfc8785.dumps(body)
    except rfc8785.CanonicalizationError as exc:  # NaN/Infinity, integers beyond 2**53, non-str keys
        raise ValueError(f"payload cannot be canonicalised for signing: {exc}") from None


def _non_finite(value: Any, path: str) -> str | None:
    """The dotted path of the first NaN/Infinity in `value`, or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"{path or 'payload'} ({value})"
    if isinstance(value, dict):
        items = ((f"{path}.{k}" if path else str(k), v) for k, v in value.items())
    elif isinstance(value, list | tuple):
        items = ((f"{path}[{i}]", v) for i, v in enumerate(value))
    else:
        return None
    for sub_path, sub in items:
        found = _non_finite(sub, sub_path)
        if found is not None:
            return found
    return None


def key_id(public_key: bytes) -> str:
    """Short, stable name of a public key: the first 16 hex digits of its SHA-256."""
    return hashlib.sha256(public_key).hexdigest()[:16]


@dataclass(frozen=True)
class Signer:
    key: SigningKey

    @property
    def public_key(self) -> bytes:
        return bytes(self.key.verify_key)

    @property
    def key_id(self) -> str:
        return key_id(self.public_key)

    def sign(self, payload: dict[str, Any]) -> dict[str, Any]:
        """A copy of `payload` with `signature: {alg, key_id, value}` over its canonical JSON."""
        value = self.key.sign(canonical_json(payload)).signature
        out = {k: v for k, v in payload.items() if k != SIGNATURE_FIELD}
        out[SIGNATURE_FIELD] = {"alg": ALG, "key_id": self.key_id, "value": base64.b64encode(value).decode()}
        return out


def load_signer(path: Path) -> tuple[Signer, bool]:
    """(signer, created): the terminal's key from `path`, generated there (0600) on first start."""
    seed, created = load_or_create_secret(path, SEED_BYTES)
    return Signer(SigningKey(seed)), created


def verify_payload(payload: dict[str, Any], public_key: bytes | str) -> None:
    """Returns if `payload` was signed by `public_key` (raw 32 bytes or base64) and is unaltered; else SignatureError."""
    raw = base64.b64decode(public_key) if isinstance(public_key, str) else bytes(public_key)
    sig = payload.get(SIGNATURE_FIELD)
    if not isinstance(sig, dict):
        raise SignatureError("payload has no signature")
    if sig.get("alg") != ALG:
        raise SignatureError(f"unsupported signature alg {sig.get('alg')!r}")
    if sig.get("key_id") != key_id(raw):
        raise SignatureError(f"signed by key {sig.get('key_id')!r}, expected {key_id(raw)!r}")
    try:
        value = base64.b64decode(sig.get("value", ""), validate=True)
        key = VerifyKey(raw)
        try:
            # Fast path (a backend verifies thousands a second): for most payloads the JCS bytes are plain
            # sorted compact JSON. If the signature verifies over these bytes, the signer signed exactly
            # this content (both encodings parse back to the same value), so this is as strict as JCS.
            key.verify(_sorted_compact(payload), value)
        except (BadSignatureError, ValueError):
            key.verify(canonical_json(payload), value)
    except (BadSignatureError, ValueError, TypeError) as exc:
        raise SignatureError(f"signature does not match the payload: {exc}") from None


def _sorted_compact(payload: dict[str, Any]) -> bytes:
    body = {k: _integral(v) for k, v in payload.items() if k != SIGNATURE_FIELD}
    return json.dumps(
        body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def _integral(value: Any) -> Any:
    """JCS writes an integral float as an integer (10.0 -> 10); other floats mostly as Python's repr."""
    if isinstance(value, float):
        return int(value) if value.is_integer() and abs(value) < 2**53 else value
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral(v) for v in value]
    return value
