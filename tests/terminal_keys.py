"""The parts of a terminal's Protector that the identity component uses, with a real terminal key: the enroll
reply's fields, and opening what a backend sealed to the terminal (device.privacy.terminalseal)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nacl.signing import SigningKey

from device.privacy.signing import Signer
from device.privacy.terminalseal import TerminalOpener, seal_for_terminal


class TerminalKeys:
    def __init__(self, fields: Callable[[Any], dict[str, Any]] = lambda obs: {}) -> None:
        self.signer = Signer(SigningKey.generate())
        self._fields = fields

    @property
    def public_key(self) -> bytes:
        return self.signer.public_key

    def enrolment_fields(self, observation: Any) -> dict[str, Any]:
        return self._fields(observation)

    def unseal(self, sealed_b64: str) -> bytes:
        return TerminalOpener(self.signer.key).open(sealed_b64)

    def seal(self, data: bytes) -> str:
        """What a backend sends this terminal: `data` sealed to its key."""
        return seal_for_terminal(self.public_key, data)
