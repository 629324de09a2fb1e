"""QR codes as credentials: tokens the backend signs, read off the camera by the terminal.

    FO1.<base64url of the token's JSON>.<base64url of its Ed25519 signature>

The signature is over b"faceonly.qr.v1\\n" + the token's JSON bytes exactly as carried (nothing to
canonicalise; the prefix keeps a token from ever being mistaken for any other signed faceonly message), by one
of the door policy's `pass_keys` (a front desk can hold a pass key without holding the gallery key). Two kinds:

- `visitor`: a pass for one person (`sub`, not a member), a set of doors, a validity window (`nbf`..`exp`,
  unix seconds) and a number of uses (`uses`); the terminal counts the uses of each pass id on disk, so a
  pass used up (replayed, copied) is refused, also after a restart;
- `member`: a member's code (`sub` a person of the policy, `id` listed in their `qr`), valid `nbf`..`exp`;
  removing the id from the person revokes it. Doors and times are the person's groups'.

A token carries no name and no secret beyond itself: it is a bearer credential, which is why a door that
needs more asks for the face too (`credential+face`). Decoded text is never logged or sent.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey
from pydantic import Field, StringConstraints, ValidationError, model_validator

from device.access.policy import Id, SubjectId, TokenId
from device.infra.atomicfile import write_atomic
from device.privacy.signing import key_id
from device.wire.base import Wire
from device.wire.bounded import PayloadError, loads_bounded

PREFIX = "FO1."
CONTEXT = b"faceonly.qr.v1\n"
MAX_TEXT = 1024  # a QR code a phone shows at a door holds a few hundred characters
MAX_TOKEN = 600


class PassRefused(ValueError):
    """Why a QR code opens nothing: `code` is an access.* reason code."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class Token(Wire):
    v: Literal[1]
    k: Literal["visitor", "member"]
    id: TokenId
    sub: SubjectId
    kid: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{16}$")]
    nbf: int = Field(ge=0, le=2**41)
    exp: int = Field(ge=0, le=2**41)
    doors: list[Id] = Field(default_factory=list, max_length=64)
    uses: int = Field(0, ge=0, le=10_000)

    @model_validator(mode="after")
    def _kind(self) -> Token:
        if self.exp <= self.nbf:
            raise ValueError("a token expires after it becomes valid")
        if self.k == "visitor" and (not self.doors or self.uses < 1):
            raise ValueError("a visitor pass names its doors and at least one use")
        if self.k == "member" and (self.doors or self.uses):
            raise ValueError("a member code takes its doors from the person's groups")
        return self


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue(key: SigningKey, token: dict[str, Any]) -> str:
    """The QR text of a token signed with `key` (the backend's or front desk's pass key)."""
    body = {"v": 1, "kid": key_id(bytes(key.verify_key)), **token}
    Token.model_validate(body)  # never issue what a terminal would refuse
    raw = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
    return PREFIX + _b64(raw) + "." + _b64(key.sign(CONTEXT + raw).signature)


def new_id() -> str:
    return secrets.token_urlsafe(12)


def read(text: str, pass_keys: list[str]) -> Token:
    """The token a QR text carries if a pass key signed it; PassRefused otherwise (no time checks here)."""
    if len(text) > MAX_TEXT or not text.startswith(PREFIX) or text.count(".") != 2:
        raise PassRefused("access.pass_malformed")
    body_b64, sig_b64 = text[len(PREFIX) :].split(".")
    try:
        raw, signature = _unb64(body_b64), _unb64(sig_b64)
        data = loads_bounded(raw, MAX_TOKEN, max_depth=3)
        token = Token.model_validate(data)
    except (binascii.Error, ValueError, PayloadError, ValidationError):
        raise PassRefused("access.pass_malformed") from None
    keys = {key_id(base64.b64decode(k)): base64.b64decode(k) for k in pass_keys}
    public = keys.get(token.kid)
    if public is None or len(signature) != 64:
        raise PassRefused("access.pass_forged")
    try:
        VerifyKey(public).verify(CONTEXT + raw, signature)
    except BadSignatureError:
        raise PassRefused("access.pass_forged") from None
    return token


def check_window(token: Token, now: float) -> None:
    if now < token.nbf:
        raise PassRefused("access.pass_not_yet_valid")
    if now >= token.exp:
        raise PassRefused("access.pass_expired")


@dataclass
class UsedPasses:
    """How often each visitor pass opened a door here, on disk (atomic), kept until the pass expires."""

    path: Path

    def __post_init__(self) -> None:
        self._uses: dict[str, tuple[int, int]] = {}  # id -> (uses, exp)
        try:
            data = loads_bounded(self.path.read_bytes(), 64 * 1024 * 1024)
            self._uses = {str(k): (int(v[0]), int(v[1])) for k, v in data.items()}
        except FileNotFoundError:
            pass
        except (PayloadError, AttributeError, TypeError, ValueError, IndexError) as exc:
            # Forgetting uses would let used passes in again: the component refuses every visitor pass
            # while this file is damaged (fail closed) and says so in status; the file is left as it is.
            raise ValueError(f"{self.path}: the record of used passes is damaged ({exc})") from None

    def used(self, token: Token) -> int:
        return self._uses.get(token.id, (0, 0))[0]

    def use(self, token: Token, now: float) -> None:
        """Count one opening (stored before the gate opens: a crash can lose an opening, never a use)."""
        self._uses = {k: v for k, v in self._uses.items() if v[1] > now}
        self._uses[token.id] = (self.used(token) + 1, token.exp)
        write_atomic(self.path, json.dumps({k: list(v) for k, v in self._uses.items()}).encode())
