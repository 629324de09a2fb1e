"""The terminal's availability messages (retained `status`): birth, last will and clean-stop offline, signed.

Signed with the terminal's event key, like its events, so a backend believes only what this terminal said.
The birth and the will are made by the link before every connection attempt, for that attempt's time: the
will is fixed at CONNECT, so it is signed then, with a fresh envelope id (a random UUID: the nonce), and
dated like the birth of the same connection. A backend orders one terminal's statuses by that time, offline
after online at the same time, so a will never loses to the birth it follows and never wins over a later one.

The loop owns the terminal's state; it hands a snapshot of the status body to `refresh` (replaced, never
changed in place), and the link's thread only stamps, signs and encodes it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from device.transport.envelope import encode, envelope

log = logging.getLogger(__name__)

Sign = Callable[[dict[str, Any]], dict[str, Any]]
# What a status keeps when the rest of its body cannot be signed (a non-finite number somewhere).
_ESSENTIAL = ("software", "started_at", "models")


class Availability:
    def __init__(self, terminal_id: str, sign: Sign, body: dict[str, Any]) -> None:
        self.terminal_id = terminal_id
        self._sign = sign
        self._body = dict(body)

    def refresh(self, body: dict[str, Any]) -> None:
        """A new snapshot of what every status says besides its state (loop thread)."""
        self._body = dict(body)

    def birth(self, at: float) -> bytes:
        return self.status("online", None, at)

    def will(self, at: float) -> bytes:
        return self.status("offline", "lost", at)

    def status(self, state: str, reason: str | None, at: float) -> bytes:
        """The signed status payload, dated `at`."""
        body = {**self._body, "state": state}
        if reason is not None:
            body["reason"] = reason
        try:
            return encode(self._sign(envelope("status", self.terminal_id, body, now=at)))
        except ValueError as exc:  # a non-finite number in the snapshot: the state still leaves, signed
            log.error("status sent without its details, which cannot be signed: %s", exc)
            essential = {k: self._body[k] for k in _ESSENTIAL if k in self._body}
            fallback = {**essential, "state": state, **({"reason": reason} if reason else {})}
            return encode(self._sign(envelope("status", self.terminal_id, fallback, now=at)))
