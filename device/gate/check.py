"""Whether a gate decision from the broker may open this door: the listener's whole judgement, pure.

In order: the payload is bounded before it is parsed (device.wire.bounded), is a gate decision
(device.wire.gate), is signed by the pinned terminal key, names this terminal and this door, was decided
within `max_age_s` of this box's clock (and not after it, beyond `max_skew_s`), has not expired, and
carries a nonce not acted on before. Anything else is refused with one of REFUSALS, never an exception.

Freshness compares the terminal's wall-clock `decided_at` with this box's wall clock: two machines have
nothing else in common, so both keep NTP time (a terminal whose clock is off opens nothing: it fails
closed). Nonces are remembered on the monotonic clock for `hold_s`, far beyond the window, so a wall-clock
step back on this box cannot make an old decision acceptable again.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from device.privacy.signing import SignatureError, verify_payload
from device.wire.bounded import PAYLOAD_CODES, PayloadError, loads_bounded
from device.wire.gate import GateDecision

MAX_BYTES = 4096  # a gate decision is ~600 bytes
OPENED = "opened"
REFUSALS = {
    **PAYLOAD_CODES,
    "malformed": "not a gate decision (fields or types)",
    "forged": "not signed by the pinned terminal key, or altered after signing",
    "other_terminal": "a decision of another terminal",
    "other_door": "a decision for another door",
    "stale": "decided longer ago than --max-age-s, or past its own expiry",
    "future": "dated ahead of this box's clock by more than --max-skew-s",
    "replayed": "a decision already acted on (its nonce was seen)",
    "internal_error": "the check itself failed (a bug): refused, and the next message is checked",
}


@dataclass(frozen=True)
class Verdict:
    code: str  # OPENED or a key of REFUSALS
    subject: str | None = None
    age_s: float | None = None  # by this box's clock, when the decision got that far

    @property
    def opens(self) -> bool:
        return self.code == OPENED


class NonceMemory:
    """Nonces of decisions acted on, each kept `hold_s` on the monotonic clock; beyond `capacity` the oldest
    is forgotten first (only signed, fresh decisions get here: nobody but the terminal can fill it)."""

    def __init__(
        self, hold_s: float = 3600.0, capacity: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.hold_s, self.capacity, self._clock = hold_s, capacity, clock
        self._seen: OrderedDict[str, float] = OrderedDict()

    def first_time(self, nonce: str) -> bool:
        """True (and remembered) if `nonce` is new; False if it was seen within `hold_s`."""
        now = self._clock()
        while self._seen and (
            next(iter(self._seen.values())) < now - self.hold_s or len(self._seen) >= self.capacity
        ):
            self._seen.popitem(last=False)
        if nonce in self._seen:
            return False
        self._seen[nonce] = now
        return True


class DecisionCheck:
    def __init__(
        self,
        terminal_id: str,
        door: str,
        public_key: bytes,
        *,
        max_age_s: float = 2.0,
        max_skew_s: float = 1.0,
        wall: Callable[[], float] = time.time,
        nonces: NonceMemory | None = None,
    ) -> None:
        self.terminal_id, self.door, self.public_key = terminal_id, door, public_key
        self.max_age_s, self.max_skew_s = max_age_s, max_skew_s
        self._wall = wall
        self.nonces = nonces or NonceMemory()

    def check(self, raw: bytes) -> Verdict:
        decision = self._authentic(raw)
        return decision if isinstance(decision, Verdict) else self._judge(decision)

    def _authentic(self, raw: bytes) -> GateDecision | Verdict:
        """The decision, if it is one and the pinned terminal key signed it; else the refusal."""
        try:
            data: Any = loads_bounded(raw, MAX_BYTES)
        except PayloadError as exc:
            return Verdict(exc.code)
        try:
            decision = GateDecision.model_validate(data)
        except ValidationError:
            return Verdict("malformed")
        try:
            verify_payload(data, self.public_key)
        except SignatureError:
            return Verdict("forged")
        return decision

    def _judge(self, decision: GateDecision) -> Verdict:
        if decision.terminal_id != self.terminal_id:
            return Verdict("other_terminal", decision.subject)
        if decision.door != self.door:
            return Verdict("other_door", decision.subject)
        now = self._wall()
        age = now - decision.decided_at
        if age > self.max_age_s or now > decision.expires_at + self.max_skew_s:
            return Verdict("stale", decision.subject, age)
        if -age > self.max_skew_s:
            return Verdict("future", decision.subject, age)
        if not self.nonces.first_time(decision.nonce):
            return Verdict("replayed", decision.subject, age)
        return Verdict(OPENED, decision.subject, age)
