"""Door policies for the door-mode tests: keys, a site with the four modes, people with every credential kind,
passes; built with the operator's own tools (device/access/build.py), so what the tests install is what
`faceonly access build` makes."""

from __future__ import annotations

import base64
import copy
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey

from device.access import document as doc
from device.access.build import build
from device.access.passes import issue
from device.access.policy import AccessPolicy
from device.identity.operator import UpdateFile
from device.privacy.signing import Signer

KEY = bytes(range(32))  # a credential key for tests (a site makes its own: faceonly access keygen)
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri"]


def source(tz: str = "Europe/Berlin", pass_key: SigningKey | None = None) -> dict[str, Any]:
    """Doors of every mode: main (credential+face, in), side (credential, both), lobby (face|credential,
    out), turnstile (face, in). Ann has a face template (the astronaut), Bo has none (credential only)."""
    keys = [base64.b64encode(bytes(pass_key.verify_key)).decode()] if pass_key is not None else []
    return {
        "site": {"timezone": tz, "holidays": ["2026-12-25"]},
        "doors": {
            "main": {
                "mode": "credential+face",
                "direction": "in",
                "label": "side door",
                "alternative_door": "side",
                "anti_passback_s": 3600,
            },
            "side": {"mode": "credential", "direction": "both", "label": "side door", "anti_passback_s": 3600},
            "lobby": {"mode": "face|credential", "direction": "out"},
            "turnstile": {"mode": "face", "direction": "in", "alternative_door": "side"},
        },
        "schedules": {
            "office": {"windows": [{"days": WEEKDAYS, "start": "07:00", "end": "19:00"}]},
            "night": {"windows": [{"days": ["fri"], "start": "22:00", "end": "06:00"}]},
        },
        "groups": {
            "staff": {"doors": {"main": "always", "side": "always", "lobby": "always", "turnstile": "always"}},
            "office": {"doors": {"main": "office", "side": "office"}},
        },
        "people": {
            "ann": {"groups": ["staff"], "number": "4242", "pin": "2468", "badges": ["0012345678"], "qr": ["ann-code-1"]},
            "bo": {"groups": ["staff"], "number": "5151", "pin": "1357", "badges": ["77"]},
            "cy": {"groups": ["office"], "number": "6161", "pin": "9999"},
        },
        "pass_keys": keys,
    }  # fmt: skip


def signed(
    src: dict[str, Any], signer: Signer, version: int = 1, key: bytes = KEY, chunk: int = doc.DEFAULT_CHUNK
) -> UpdateFile:
    return build(copy.deepcopy(src), key, signer, version, chunk)


def policy_of(update: UpdateFile) -> AccessPolicy:
    return doc.read_body(update.manifest, update.body)


def new_signer() -> Signer:
    return Signer(SigningKey.generate())


def visitor_pass(key: SigningKey, now: float, **fields: Any) -> str:
    token = {"k": "visitor", "id": "visit-000001", "sub": "visitor-17", "doors": ["side"], "uses": 1}
    token.update({"nbf": int(now) - 60, "exp": int(now) + 3600, **fields})
    return issue(key, token)


def member_code(key: SigningKey, now: float, **fields: Any) -> str:
    token = {"k": "member", "id": "ann-code-1", "sub": "ann", "nbf": int(now) - 60, "exp": int(now) + 86_400}
    return issue(key, {**token, **fields})


def write_credential_key(path: Path) -> Path:
    from device.infra.atomicfile import write_checksummed

    write_checksummed(path, KEY, 0o600)
    return path
