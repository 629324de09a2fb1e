"""The parts of a simulated terminal that stand in for a real terminal's: its protector (only the opening of
what the backend sealed to it), its identity component (the real gallery commands, on a state dir of its own),
and a replay cache that lives in memory."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from device.identity.component import IdentityComponent
from device.privacy.signing import Signer
from device.privacy.terminalseal import SealError, TerminalOpener
from device.transport.commands import NOT_AVAILABLE, CommandError
from device.transport.nonces import ReplayCache


class SimProtector:
    """The part of a terminal's protector the gallery commands use: opening what the backend sealed to this
    terminal's key. A simulated terminal has no camera, so it never makes an event body or an enrolment."""

    def __init__(self, signer: Signer) -> None:
        self._signer = signer
        self._opener = TerminalOpener(signer.key)

    def protect(self, observation: Any, match: Any = None) -> dict[str, Any]:
        raise CommandError(NOT_AVAILABLE, "a simulated terminal has no camera")

    def enrolment_fields(self, observation: Any) -> dict[str, Any]:
        raise CommandError(NOT_AVAILABLE, "a simulated terminal has no camera")

    def sign(self, payload: dict[str, Any]) -> dict[str, Any]:
        return self._signer.sign(payload)

    def unseal(self, sealed_b64: str) -> bytes:
        try:
            return self._opener.open(sealed_b64)
        except SealError as exc:
            raise ValueError(str(exc)) from None

    def report(self) -> dict[str, Any]:
        return {"simulated": True}


def sim_identity(
    gallery_key: Path,
    state: Path | None,
    signer: Signer,
    reply: Callable[[Any, dict[str, Any] | CommandError], None],
) -> IdentityComponent:
    """The terminal's own identity component (gallery commands, verified and stored in `state`)."""
    from device.contracts import ModelRef
    from device.identity.gate import Gate
    from device.identity.operator import read_public_key
    from device.identity.runtime import Identity, load_curves
    from device.infra.modelstore import ModelStore

    if state is None:
        raise ValueError("a simulated terminal that takes gallery commands needs a state dir")
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    entry = ModelStore(None).entry("embedder")
    identity = Identity(
        ModelRef("embedder", entry.file, entry.sha256),
        load_curves(entry.info),
        read_public_key(gallery_key),
        state / "gallery.sealed",
        state / "gallery.key",
        1e-3,
    )
    return IdentityComponent(identity, Gate(1.0), lambda p: None, reply, SimProtector(signer), lambda s: 0)


class MemoryNonces(ReplayCache):
    """The replay cache without its file: a simulated terminal's nonces live as long as its process."""

    def __init__(self) -> None:
        self.capacity, self.clock, self._until = 10_000, time.time, {}

    def add(self, nonce: str, until: float) -> None:
        self._prune()
        self._until[nonce] = until
