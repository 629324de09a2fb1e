"""From what the edges read (a badge code, a QR text, a number and PIN) to the person it names: the lookups a
door policy allows, and the keypad's lockout.

Lookups are made once per policy: keypad number -> person, badge hash -> person, member token id -> person.
A badge is found by its keyed hash (one HMAC), a QR code by its signature, a PIN by the person's number and
then one slow argon2id check (`pin`, run on a worker thread by the component). Nothing read here is ever
logged, put in an exception or sent: only the resulting person id and an access.* reason code leave.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from device.access import credentials as cr
from device.access.decide import Credential
from device.access.passes import PassRefused, read
from device.access.policy import AccessPolicy

MAX_TRACKED = 4096


@dataclass
class _Failures:
    count: int = 0
    locked_until: float = 0.0


class Claims:
    def __init__(
        self,
        policy: AccessPolicy,
        key: bytes | None,
        attempts: int,
        lockout_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy, self._key = policy, key
        self.attempts, self.lockout_s, self._clock = attempts, lockout_s, clock
        self._numbers = {p.number: s for s, p in policy.people.items() if p.number is not None}
        self._badges = {b: s for s, p in policy.people.items() for b in p.badges}
        self._members = {t: s for s, p in policy.people.items() for t in p.qr}
        self._failures: dict[str, _Failures] = {}

    def badge(self, code: str) -> Credential:
        if self._key is None:
            return Credential("badge", None, "access.credential_unknown")
        try:
            digest = cr.badge_hash(self._key, code)
        except ValueError:
            return Credential("badge", None, "access.credential_unknown")
        return Credential("badge", self._badges.get(digest), "access.credential_unknown")

    def qr(self, text: str) -> Credential:
        try:
            token = read(text, self.policy.pass_keys)
        except PassRefused as refused:
            return Credential("qr", None, refused.code)
        if token.k == "visitor":
            # A visitor is nobody of the policy: a pass naming a person is not theirs to use.
            if token.sub in self.policy.people:
                return Credential("pass", None, "access.pass_malformed", token)
            return Credential("pass", token.sub, None, token)
        subject = self._members.get(token.id)
        if subject != token.sub:
            return Credential("qr", None, "access.credential_unknown", token)  # revoked, or not theirs
        return Credential("qr", subject, None, token)

    # ---- keypad ------------------------------------------------------------------------------------
    def locked(self, number: str) -> bool:
        failures = self._failures.get(number)
        return failures is not None and self._clock() < failures.locked_until

    def pin_target(self, number: str) -> tuple[str, str] | None:
        """(subject, stored PIN hash) of a keypad number, None when nobody has it (or no key is set)."""
        subject = self._numbers.get(number)
        if subject is None or self._key is None:
            return None
        stored = self.policy.people[subject].pin
        return (subject, stored) if stored is not None else None

    def check_pin(self, number: str, pin: str) -> bool:
        """The slow part (argon2id): call it on a worker thread."""
        target = self.pin_target(number)
        assert self._key is not None
        return target is not None and cr.verify_pin(self._key, number, pin, target[1])

    def pin_result(self, number: str, ok: bool) -> Credential:
        """The credential a keypad entry gives once checked; counts failures towards the lockout (an unknown
        number counts too, so trying numbers costs the same as trying PINs)."""
        if ok:
            self._failures.pop(number, None)
            target = self.pin_target(number)
            return Credential("pin", target[0] if target is not None else None, "access.pin_wrong")
        if len(self._failures) >= MAX_TRACKED:  # numbers typed at random must not grow memory without end
            now = self._clock()
            self._failures = {k: v for k, v in self._failures.items() if v.locked_until > now}
        failures = self._failures.setdefault(number, _Failures())
        failures.count += 1
        if failures.count >= self.attempts:
            failures.count, failures.locked_until = 0, self._clock() + self.lockout_s
        return Credential("pin", None, "access.pin_wrong")
