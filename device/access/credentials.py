"""PINs and badges, never kept in the clear: keyed with the site's credential key, and PINs made slow.

The credential key (32 random bytes, `faceonly access keygen`, 0600 on the backend and on each terminal) keys
an HMAC-SHA256 of every PIN and badge code, so the door policy alone (on the broker, in a backup) gives away
neither: a badge number is a handful of digits and a PIN fewer, both found by trying every value in
microseconds without the key. On top of that a PIN is stored as argon2id of its keyed hash, with a salt of
its own (argon2-cffi; OWASP's parameters by default: 19 MiB, 2 passes, one lane, ~0.1-0.2 s here), so even
with the key each person's PIN costs a search of its own at that price. A PIN is typed after the person's
keypad number, which finds the one hash to check (a slow hash cannot be searched by value).

Verifying a PIN takes that long on purpose: the terminal does it on a worker thread, never in the frame loop.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from device.infra.atomicfile import write_checksummed
from device.privacy.keyfile import KEY_MODE, load_secret

KEY_BYTES = 32
PIN = re.compile(r"^\d{4,12}$")
BADGE = re.compile(r"^[0-9A-Za-z]{1,32}$")
# Parameters a stored PIN hash may ask for: a policy is signed, but a typo in it must not make every PIN
# cost seconds of a Pi's CPU and hundreds of MiB.
MAX_MEMORY_KIB = 262_144
MAX_TIME_COST = 16
MAX_LANES = 8
_PARAMS = re.compile(r"^\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$")


def keygen(path: Path) -> None:
    """A new credential key at `path` (0600); refuses to replace one: every PIN and badge hangs on it."""
    import secrets

    if path.exists():
        raise FileExistsError(f"{path} exists: a credential key is never replaced silently")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_checksummed(path, secrets.token_bytes(KEY_BYTES), KEY_MODE)


def load_key(path: Path) -> bytes:
    return load_secret(path, KEY_BYTES)


def _keyed(key: bytes, purpose: bytes, *parts: str) -> bytes:
    message = purpose + b"\x00" + b"\x00".join(p.encode() for p in parts)
    return hmac.new(key, message, hashlib.sha256).digest()


def badge_hash(key: bytes, code: str) -> str:
    """The stored form of a badge code (leading zeros and case do not matter to a reader's number)."""
    if not BADGE.match(code):
        raise ValueError("a badge code is 1 to 32 letters or digits")
    normal = code.lstrip("0").upper() or "0"
    return _keyed(key, b"faceonly.badge", normal).hex()


def hash_pin(
    key: bytes, number: str, pin: str, memory_kib: int = 19_456, time_cost: int = 2, lanes: int = 1
) -> str:
    """The stored form of `number`'s PIN: argon2id (own salt) of its keyed hash."""
    if not PIN.match(pin):
        raise ValueError("a PIN is 4 to 12 digits")
    hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=lanes)
    return hasher.hash(_keyed(key, b"faceonly.pin", number, pin))


def pin_cost_ok(encoded: str) -> bool:
    found = _PARAMS.match(encoded)
    if found is None:
        return False
    memory, time_cost, lanes = (int(v) for v in found.groups())
    return memory <= MAX_MEMORY_KIB and time_cost <= MAX_TIME_COST and lanes <= MAX_LANES


def verify_pin(key: bytes, number: str, pin: str, encoded: str) -> bool:
    """Whether `pin` is `number`'s PIN. False for anything malformed, never an exception."""
    if not PIN.match(pin) or not pin_cost_ok(encoded):
        return False
    try:
        return PasswordHasher().verify(encoded, _keyed(key, b"faceonly.pin", number, pin))
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
