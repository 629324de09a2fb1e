"""The door's decision: credentials and faces in, one decision per attempt out. Pure (injected clocks and
stores); the loop-owned component (device/access/component.py) feeds it and acts on what it decides.

Per door mode:
- `face`: a live face found by 1:N opens for its person; a credential is refused (`access.mode`: use the
  alternative door);
- `credential+face`: a credential (number and PIN, badge, member QR code) names the person, who must be
  allowed through now; then the next live face within the door's `claim_window_s` is checked against that
  person's templates only (1:1, its own false-accept target); no template, a face of someone else, no face in
  time or a face that fails the challenge: refused. The terminal runs the face pipeline only while a claim
  waits (`wants_faces`), so nobody's face is processed before they present a credential;
- `credential`: a credential alone; the face pipeline never runs (the way in for people who do not consent to
  the face or cannot do the challenge, and for people with no face template at all);
- `face|credential`: whichever comes first.
A visitor pass opens only doors whose mode takes a credential alone, in its door set, in its validity window,
until its uses are spent. Who may pass (groups, schedules, anti-passback) is judged the same way for every
mode, on the wall clock in the site's time zone.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Literal

import numpy as np

from device.access.antipassback import Passages
from device.access.passes import PassRefused, Token, UsedPasses, check_window
from device.access.policy import CREDENTIAL_ALONE, AccessPolicy, Door
from device.access.schedule import is_open, local_time
from device.contracts import ProbeKind
from device.identity.claim import ClaimCheck

CredentialKind = Literal["pin", "badge", "qr", "pass"]
CHOICE_S = 30.0  # how long In / Out chosen on the screen of a `both` door holds for the next attempt
FaceCheck = Callable[[str, "Face | None"], ClaimCheck | None]  # subject, face -> 1:1 (None: no template)


@dataclass(frozen=True)
class Credential:
    """A credential the edges have read and verified: the person it names, or why it names nobody."""

    kind: CredentialKind  # pass: a visitor's QR pass; qr: a member's QR code
    subject: str | None
    reason: str | None = None  # an access.* code when subject is None
    token: Token | None = None


@dataclass(frozen=True)
class Face:
    """A decided face observation as the door sees it."""

    track_id: int
    live: bool
    reason: str | None  # the rejection's reason code when not live
    subject: str | None  # 1:N: the matched subject (None: unknown, or no gallery)
    score: float
    threshold: float
    embedding: np.ndarray | None = field(default=None, repr=False)
    probe: ProbeKind = "flip"  # what `embedding` is
    mirror: Callable[[], np.ndarray] | None = field(
        default=None, repr=False, compare=False
    )  # its flip average


@dataclass(frozen=True)
class Decision:
    door: str
    mode: str
    direction: str | None
    granted: bool
    reason: str | None
    subject: str | None
    credential: CredentialKind | None
    factors: dict[str, str]  # "face" | credential kind -> "passed" | "failed"
    track_id: int | None = None
    face_check: Literal["search", "claim"] | None = None
    score: float | None = None
    threshold: float | None = None
    token: Token | None = None
    attendance: bool = False
    wall: float = 0.0
    decided_at: float = 0.0  # monotonic

    @property
    def outcome(self) -> str:
        """The prompt code that tells the person."""
        if self.granted:
            return "result.welcome"
        return "result.not_recognised" if self.reason == "access.not_recognised" else "result.rejected"


@dataclass(frozen=True)
class Waiting:
    """credential+face: the credential was accepted, the face is awaited (prompt access.look)."""

    subject: str
    credential: CredentialKind


@dataclass(frozen=True)
class ClaimFirst:
    """credential+face: a face came with no credential before it (prompt access.claim_first)."""

    track_id: int


Outcome = Decision | Waiting | ClaimFirst


@dataclass
class _Claim:
    credential: Credential
    at: float


class DoorDecider:
    def __init__(  # noqa: PLR0913 - the door's inputs, each injected so that the decision stays pure
        self,
        policy: AccessPolicy,
        version: int,
        door_id: str,
        passages: Passages,
        used: UsedPasses | None,
        face_check: FaceCheck,
        wall: Callable[[], float],
        clock: Callable[[], float],
    ) -> None:
        self.policy, self.version, self.door_id = policy, version, door_id
        self.door: Door | None = policy.doors.get(door_id)
        self.passages, self.used, self._face_check = passages, used, face_check
        self._wall, self._clock = wall, clock
        self._holidays: frozenset[date] = frozenset(policy.site.holidays)
        self.pending: _Claim | None = None
        self._choice: tuple[str, float] | None = None  # a `both` door: the way the person said they go

    @property
    def direction(self) -> str | None:
        """The way through this door now: the door's own, or at a `both` door the one the person chose on
        the screen within CHOICE_S (None: not said; no anti-passback then)."""
        if self.door is None:
            return None
        if self.door.direction != "both":
            return self.door.direction
        if self._choice is not None and self._clock() - self._choice[1] <= CHOICE_S:
            return self._choice[0]
        return None

    def choose(self, direction: str | None) -> None:
        """At a `both` door: the person says which way they go (the screen's In / Out); None forgets it
        (after a decision: a choice holds for one attempt)."""
        if direction is None:
            self._choice = None
        elif self.door is not None and self.door.direction == "both" and direction in ("in", "out"):
            self._choice = (direction, self._clock())

    def wants_faces(self) -> bool:
        if self.door is None or self.door.mode == "credential":
            return False
        return self.door.mode != "credential+face" or self.pending is not None

    def takes(self, kind: str) -> bool:
        """Whether this door reads credentials of `kind` (pin, badge, qr) at all."""
        return self.door is not None and self.door.mode != "face" and kind in self.door.credentials

    # ---- inputs ----------------------------------------------------------------------------------
    def credential(self, cred: Credential) -> Outcome:
        door = self.door
        factors: dict[str, str] = {cred.kind: "passed" if cred.subject is not None else "failed"}
        if door is None:
            return self._refused("access.no_policy", cred.subject, cred, factors)
        if cred.subject is None:
            return self._refused(cred.reason or "access.credential_unknown", None, cred, factors)
        if door.mode == "face" or (cred.kind == "pass" and door.mode not in CREDENTIAL_ALONE):
            return self._refused("access.mode", cred.subject, cred, factors)
        if cred.kind == "pass":
            return self._visitor(cred, factors)
        judged = self._authorise(cred.subject, cred, factors)
        if door.mode != "credential+face" or not judged.granted:
            return judged
        if self._face_check(cred.subject, None) is None:
            return self._refused("access.no_face_template", cred.subject, cred, factors)
        self.pending = _Claim(cred, self._clock())
        return Waiting(cred.subject, cred.kind)

    def face(self, face: Face) -> Outcome | None:
        """The door's outcome for a decided face (None: the door does not use faces)."""
        door = self.door
        if door is None:
            return self._face_refused("access.no_policy", face, None, {})
        if door.mode == "credential":
            return None
        if door.mode == "credential+face":
            return self._claimed_face(face)
        if not face.live:
            return self._face_refused(face.reason or "access.not_recognised", face, None, {"face": "failed"})
        if face.subject is None or not math.isfinite(face.score):
            return self._face_refused("access.not_recognised", face, None, {"face": "failed"})
        decided = self._authorise(face.subject, None, {"face": "passed"})
        return _with_face(decided, face.track_id, "search", face.score, face.threshold)

    def tick(self) -> Decision | None:
        """A claim whose face never came: refused once its window is over."""
        claim, door = self.pending, self.door
        if claim is None or door is None or self._clock() - claim.at <= door.claim_window_s:
            return None
        self.pending = None
        cred = claim.credential
        factors = {cred.kind: "passed", "face": "failed"}
        return self._refused("access.claim_timeout", cred.subject, cred, factors)

    # ---- judgement -------------------------------------------------------------------------------
    def _claimed_face(self, face: Face) -> Outcome | None:
        claim = self.pending
        if claim is None or self._clock() - claim.at > self.door_window:
            return ClaimFirst(face.track_id) if face.live else None
        self.pending = None
        cred = claim.credential
        assert cred.subject is not None
        factors = {cred.kind: "passed", "face": "failed"}
        if not face.live:
            return self._face_refused(face.reason or "access.face_mismatch", face, cred, factors)
        check = self._face_check(cred.subject, face)
        if check is None:
            return self._face_refused("access.no_face_template", face, cred, factors)
        if not check.matched:
            decided = self._refused("access.face_mismatch", cred.subject, cred, factors)
        else:
            decided = self._authorise(cred.subject, cred, {**factors, "face": "passed"})
        return _with_face(decided, face.track_id, "claim", check.score, check.threshold)

    @property
    def door_window(self) -> float:
        return self.door.claim_window_s if self.door is not None else 0.0

    def _visitor(self, cred: Credential, factors: dict[str, str]) -> Decision:
        token = cred.token
        assert token is not None and cred.subject is not None
        try:
            check_window(token, self._wall())
            if self.door_id not in token.doors:
                raise PassRefused("access.pass_other_door")
            if self.used is None or self.used.used(token) >= token.uses:
                raise PassRefused("access.pass_replayed")  # no record of uses (damaged): closed
        except PassRefused as refused:
            return self._refused(refused.code, cred.subject, cred, {"pass": "failed"})
        if self._passback(cred.subject):
            return self._refused("access.anti_passback", cred.subject, cred, factors)
        return self._decision(True, None, cred.subject, cred, factors)

    def _authorise(self, subject: str, cred: Credential | None, factors: dict[str, str]) -> Decision:
        """Whether `subject` may pass this door now: a person with a group allowed here, in its schedule,
        and not a second entry."""
        door = self.door
        assert door is not None
        person = self.policy.people.get(subject)
        if person is None:
            return self._refused("access.unknown_person", subject, cred, factors)
        if cred is not None and cred.kind == "qr" and cred.token is not None:
            try:
                check_window(cred.token, self._wall())
            except PassRefused as refused:
                return self._refused(refused.code, subject, cred, {**factors, "qr": "failed"})
        schedules = [
            self.policy.groups[g].doors[self.door_id]
            for g in person.groups
            if self.door_id in self.policy.groups[g].doors
        ]
        if not schedules:
            return self._refused("access.not_allowed", subject, cred, factors)
        now = local_time(self._wall(), self.policy.site.timezone)
        if not any(is_open(self.policy.schedules.get(s, s), now, self._holidays) for s in schedules):
            outside = self._refused("access.outside_schedule", subject, cred, factors)
            return replace(outside, attendance=door.attendance_outside_schedule)
        if self._passback(subject):
            return self._refused("access.anti_passback", subject, cred, factors)
        return self._decision(True, None, subject, cred, factors)

    def _passback(self, subject: str) -> bool:
        door, direction = self.door, self.direction
        assert door is not None
        if direction is None:
            return False
        return self.passages.refuses(subject, direction, door.anti_passback_s, self._wall())

    def _face_refused(
        self, reason: str, face: Face, cred: Credential | None, factors: dict[str, str]
    ) -> Decision:
        subject = cred.subject if cred is not None else None
        decided = self._refused(reason, subject, cred, factors)
        return _with_face(decided, face.track_id, "search", face.score, face.threshold)

    def _refused(
        self, reason: str, subject: str | None, cred: Credential | None, factors: dict[str, str]
    ) -> Decision:
        return self._decision(False, reason, subject, cred, factors)

    def _decision(
        self, granted: bool, reason: str | None, subject: str | None, cred: Credential | None, factors: dict
    ) -> Decision:
        direction = self.direction
        return Decision(
            door=self.door_id,
            mode=self.door.mode if self.door is not None else "face",
            direction=direction,
            granted=granted,
            reason=reason,
            subject=subject,
            credential=cred.kind if cred is not None else None,
            factors=dict(factors),
            token=cred.token if cred is not None else None,
            attendance=granted,
            wall=self._wall(),
            decided_at=self._clock(),
        )


def _with_face(
    decision: Decision, track_id: int, check: Literal["search", "claim"], score: float, threshold: float
) -> Decision:
    """The decision with the face factor's check (a non-finite score or threshold is none)."""
    return replace(
        decision,
        track_id=track_id,
        face_check=check,
        score=score if math.isfinite(score) else None,
        threshold=threshold if math.isfinite(threshold) else None,
    )
