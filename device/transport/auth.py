"""Signed commands: the backend's Ed25519 command key signs what it asks; the terminal checks it.

Signed bytes: RFC 8785 canonical JSON (the same canonicaliser as the terminal's event signatures,
device.privacy.signing) of `{terminal, name, args, issued_at, expires_at, nonce}`. The request
carries those fields (the name is its topic) plus `signature: {alg, key_id, value}`. A signature
binds the command to one terminal, one validity window and one nonce, so a broker that sees it
can neither redirect it to another terminal, nor hold it back for later, nor send it twice.

Key files (`faceonly keys generate`): FILE holds base64 of the raw 32-byte seed (0600), FILE.pub
base64 of the raw 32-byte public key.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey

from device.infra.atomicfile import write_atomic
from device.privacy.signing import SEED_BYTES, SignatureError, Signer, key_id, verify_payload
from device.transport.commands import BUSY, EXPIRED, FAILED, REPLAYED, UNAUTHENTICATED, CommandError
from device.transport.nonces import CacheFull, ReplayCache
from device.wire.base import validate
from device.wire.command import SignedFields

AUTH_FIELDS = ("terminal", "issued_at", "expires_at", "nonce", "signature")
PUBLIC_SUFFIX = ".pub"


def sign_command(
    key: SigningKey,
    terminal: str,
    name: str,
    args: dict[str, Any],
    *,
    ttl_s: float,
    now: float | None = None,
) -> dict[str, Any]:
    """The request fields that authenticate `name(args)` for `terminal` during the next `ttl_s` seconds."""
    issued = time.time() if now is None else now
    doc = {
        "terminal": terminal,
        "name": name,
        "args": args,
        "issued_at": round(issued, 3),
        "expires_at": round(issued + ttl_s, 3),
        "nonce": secrets.token_urlsafe(18),
    }
    signed = Signer(key).sign(doc)
    del signed["name"]  # travels as the request topic
    return signed


@dataclass(frozen=True)
class Grant:
    """A verified request, not yet committed: its nonce is recorded just before the command runs."""

    nonce: str | None  # None: accepted unsigned (lab setting)
    until: float


class Authenticator:
    def __init__(
        self,
        terminal_id: str,
        public_key: bytes | None,
        cache: ReplayCache,
        *,
        window_s: float,
        clock_skew_s: float,
        allow_unsigned: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.terminal_id = terminal_id
        self.public_key = public_key
        self.cache = cache
        self.window_s = window_s
        self.skew_s = clock_skew_s
        self.allow_unsigned = allow_unsigned
        self.clock = clock

    def check(self, name: str, data: dict[str, Any]) -> Grant:
        """Raises CommandError(unauthenticated | expired | replayed); changes nothing either way."""
        if "signature" not in data:
            if self.allow_unsigned:
                return Grant(None, 0.0)
            raise CommandError(
                UNAUTHENTICATED, f"{name} changes the terminal: it must be signed by the command key"
            )
        if self.public_key is None:
            raise CommandError(
                UNAUTHENTICATED, "this terminal has no command key (control.command_public_key_file)"
            )
        _, problems = validate(SignedFields, data)
        if problems:
            raise CommandError(UNAUTHENTICATED, "; ".join(problems), problems)
        doc = {k: data[k] for k in AUTH_FIELDS}
        doc.update(name=name, args=data.get("args") or {})
        try:
            verify_payload(doc, self.public_key)
        except (SignatureError, ValueError) as exc:
            raise CommandError(UNAUTHENTICATED, f"bad signature: {exc}") from None
        if data["terminal"] != self.terminal_id:
            raise CommandError(UNAUTHENTICATED, f"signed for terminal {data['terminal']!r}, not this one")
        now, issued, expires = self.clock(), data["issued_at"], data["expires_at"]
        if issued > now + self.skew_s:
            raise CommandError(EXPIRED, f"issued_at {issued} is in the future (clock skew > {self.skew_s} s)")
        if not issued < expires <= issued + self.window_s:
            raise CommandError(EXPIRED, f"validity must be within (0, {self.window_s}] s after issued_at")
        if expires <= now:
            raise CommandError(EXPIRED, f"command expired at {expires}")
        if self.cache.seen(data["nonce"]):
            raise CommandError(REPLAYED, "this signed command was already received")
        return Grant(data["nonce"], expires + self.skew_s)

    def commit(self, grant: Grant) -> None:
        """Record the nonce (durably) before the command acts; refuse the command if that fails."""
        if grant.nonce is None:
            return
        try:
            self.cache.add(grant.nonce, grant.until)
        except CacheFull:
            raise CommandError(BUSY, "too many recent signed commands; retry later") from None
        except OSError as exc:
            raise CommandError(FAILED, f"cannot record the command nonce ({exc.strerror}); not run") from None

    def describe(self) -> dict[str, Any]:
        signed = self.public_key is not None
        out: dict[str, Any] = {"signed_commands": signed, "unsigned_allowed": self.allow_unsigned}
        if self.public_key is not None:
            out["command_key_id"] = key_id(self.public_key)
        if self.allow_unsigned:
            out["warning"] = (
                "UNSAFE LAB SETTING: control.allow_unsigned accepts state-changing commands without a "
                "signature; anyone who can publish on the broker commands this terminal"
            )
        elif not signed:
            out["note"] = "no command key configured: state-changing commands are refused"
        return out


# ---- key files ------------------------------------------------------------------------------


def write_keypair(path: Path) -> bytes:
    """A new command key: FILE (base64 seed, 0600) and FILE.pub (base64 public key). Returns the public key."""
    path = Path(path)
    key = SigningKey.generate()
    public = bytes(key.verify_key)
    write_atomic(path, base64.b64encode(bytes(key)) + b"\n", mode=0o600)
    write_atomic(public_path(path), base64.b64encode(public) + b"\n", mode=0o644)
    return public


def public_path(path: Path) -> Path:
    return Path(path).with_name(Path(path).name + PUBLIC_SUFFIX)


def read_signing_key(path: Path) -> SigningKey:
    """The command key written by write_keypair; ValueError names the file and what is wrong."""
    try:
        raw = base64.b64decode(Path(path).read_text(encoding="ascii").strip(), validate=True)
    except (OSError, UnicodeDecodeError, binascii.Error, ValueError) as exc:
        raise ValueError(f"command key {path}: {exc}") from None
    if len(raw) != SEED_BYTES:
        raise ValueError(f"command key {path}: must decode to {SEED_BYTES} bytes, got {len(raw)}")
    return SigningKey(raw)
