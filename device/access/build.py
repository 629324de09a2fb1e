"""The operator's side of the door policy (`faceonly access build`): from a readable source to a signed update.

The source is the policy itself (TOML or JSON, the shape of device/access/policy.py) in which a person's `pin`
and `badges` may be written in the clear; building replaces each with its stored form (argon2id of the keyed
hash, the keyed hash: device/access/credentials.py), validates the whole policy as a terminal will, and signs
it. What leaves the builder never holds a PIN or a badge code. Keep the source itself like a password file,
or write the hashes into it (`faceonly access hash`) and keep none in the clear at all.
"""

from __future__ import annotations

import base64
import json
import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from device.access import credentials as cr
from device.access import document as doc
from device.access.policy import AccessPolicy
from device.config.privacy import read_public_key_file
from device.identity.operator import UpdateFile
from device.privacy.signing import Signer
from device.wire.base import problems

_BADGE_HASH = re.compile(r"^[0-9a-f]{64}$")


def read_source(path: Path) -> dict[str, Any]:
    text = path.read_bytes()
    data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text.decode())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a policy is a table")
    return data


def hash_credentials(source: dict[str, Any], key: bytes | None) -> dict[str, Any]:
    """A copy of `source` with every clear PIN and badge code replaced by its stored form."""
    out = {**source, "schema": source.get("schema", 1), "people": {}}
    for subject, person in (source.get("people") or {}).items():
        entry = dict(person)
        pin, badges = entry.get("pin"), entry.get("badges") or []
        clear_pin = isinstance(pin, str) and not pin.startswith("$argon2")
        clear_badges = [b for b in badges if not (isinstance(b, str) and _BADGE_HASH.match(b))]
        if (clear_pin or clear_badges) and key is None:
            raise ValueError(f"people.{subject}: a clear PIN or badge needs --credential-key to be hashed")
        if clear_pin:
            assert key is not None and isinstance(pin, str)
            try:
                entry["pin"] = cr.hash_pin(key, str(entry.get("number", "")), pin)
            except ValueError as exc:
                raise ValueError(f"people.{subject}.pin: {exc}") from None
        if clear_badges:
            assert key is not None
            try:
                entry["badges"] = [b if b not in clear_badges else cr.badge_hash(key, str(b)) for b in badges]
            except ValueError as exc:
                raise ValueError(f"people.{subject}.badges: {exc}") from None
        out["people"][subject] = entry
    return out


def pass_key_text(value: str) -> str:
    """A pass key given as base64 or as the path of a .pub file."""
    path = Path(value)
    if path.suffix == ".pub" and path.exists():
        return base64.b64encode(read_public_key_file(path)).decode()
    return value


def build(
    source: dict[str, Any], key: bytes | None, signer: Signer, version: int, chunk: int = doc.DEFAULT_CHUNK
) -> UpdateFile:
    hashed = hash_credentials(source, key)
    hashed["pass_keys"] = [pass_key_text(str(k)) for k in hashed.get("pass_keys") or []]
    try:
        policy = AccessPolicy.model_validate(hashed)
    except ValidationError as exc:
        raise ValueError("; ".join(problems(exc)[:10])) from None
    body = doc.encode(policy)
    manifest = doc.make_manifest(signer, version, body, chunk)
    return UpdateFile(manifest, body, body)
