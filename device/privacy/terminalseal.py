"""What the backend sends a terminal that the broker must not read: gallery data (display names, templates,
door policy) and the display name of a walk-up enrolment, sealed to that one terminal.

A libsodium sealed box to the terminal's X25519 key, which is its Ed25519 signing key converted
(crypto_sign_ed25519_{pk,sk}_to_curve25519): the public key a backend already pins to check the terminal's
signatures (`faceonly backend terminals add`) is the key it seals to, so there is no second key to
distribute or to get wrong. The signed gallery manifest still vouches for every chunk's content (its Merkle
proof is checked on the opened bytes), so sealing adds secrecy without changing what is trusted.
"""

from __future__ import annotations

import base64
import binascii

from nacl.exceptions import CryptoError
from nacl.public import PublicKey, SealedBox
from nacl.signing import SigningKey, VerifyKey

from device.privacy.seal import SealError

ALG = "ed25519-to-x25519-sealedbox"


def seal_for_terminal(terminal_public_key: bytes, data: bytes) -> str:
    """`data` sealed to the terminal whose Ed25519 public key (32 raw bytes) is given, as base64 text."""
    try:
        recipient: PublicKey = VerifyKey(bytes(terminal_public_key)).to_curve25519_public_key()
    except (CryptoError, ValueError, TypeError) as exc:
        raise SealError(f"not a terminal's Ed25519 public key: {exc}") from None
    return base64.b64encode(SealedBox(recipient).encrypt(bytes(data))).decode("ascii")


class TerminalOpener:
    """Opens what was sealed to this terminal (it holds the terminal's signing key)."""

    def __init__(self, signing_key: SigningKey) -> None:
        self._box = SealedBox(signing_key.to_curve25519_private_key())

    def open(self, sealed_b64: str) -> bytes:
        """The plaintext; SealError when it is not base64, not sealed to this terminal, or altered."""
        try:
            return self._box.decrypt(base64.b64decode(sealed_b64, validate=True))
        except (binascii.Error, ValueError, TypeError):
            raise SealError("not base64 text of a sealed box") from None
        except CryptoError:
            raise SealError("not sealed to this terminal's key, or altered on the way") from None
