"""The door's decision for every mode, on injected clocks: who may pass, when (window edges, across a DST
change), with what (credential, face, both), anti-passback (in/in refused, in/out/in passes, after a restart
too) and visitor passes (in and outside their window, replayed)."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from nacl.signing import SigningKey

from device.access.antipassback import Passages
from device.access.claims import Claims
from device.access.decide import ClaimFirst, Credential, Decision, DoorDecider, Face, Waiting
from device.access.passes import UsedPasses
from device.identity.claim import ClaimCheck
from tests.access_parts import KEY, member_code, new_signer, policy_of, signed, source, visitor_pass

PASS_KEY = SigningKey(bytes(range(2, 34)))
MONDAY_NOON = datetime(2026, 5, 4, 10, 0, tzinfo=UTC).timestamp()  # 12:00 CEST
ANN_FACE = np.ones(4, np.float32)


@pytest.fixture(scope="module")
def policy():
    return policy_of(signed(source(pass_key=PASS_KEY), new_signer()))


class Clocks:
    def __init__(self, wall: float) -> None:
        self.wall_now, self.mono = wall, 1000.0

    def wall(self) -> float:
        return self.wall_now

    def clock(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.wall_now += seconds
        self.mono += seconds


def face_check(subject: str, face) -> ClaimCheck | None:
    """1:1 as the terminal does it, on a toy gallery: Ann has a template, Bo has none."""
    if subject != "ann":
        return None
    if face is None or face.embedding is None:
        return ClaimCheck(subject, False, math.nan, 0.9, 1e-4)
    score = float(np.dot(face.embedding, ANN_FACE) / 4)
    return ClaimCheck(subject, score > 0.9, score, 0.9, 1e-4)


def door(policy, name: str, tmp: Path, clocks: Clocks) -> DoorDecider:
    used = UsedPasses(tmp / "passes-used.json")
    passages = Passages(tmp / "passages.json")
    return DoorDecider(policy, 1, name, passages, used, face_check, clocks.wall, clocks.clock)


def live(subject: str | None, probe=ANN_FACE, track: int = 1) -> Face:
    return Face(track, True, None, subject, 0.97 if subject else 0.3, 0.93, probe)


def pin(claims: Claims, number: str, typed: str) -> Credential:
    return claims.pin_result(number, claims.check_pin(number, typed))


def test_credential_then_face_passes_for_the_right_face_only(policy, tmp_path) -> None:
    clocks = Clocks(MONDAY_NOON)
    main = door(policy, "main", tmp_path, clocks)
    claims = Claims(policy, KEY, 5, 300, clocks.clock)
    assert not main.wants_faces()  # nobody's face is processed before a credential
    outcome = main.credential(pin(claims, "4242", "2468"))
    assert outcome == Waiting("ann", "pin") and main.wants_faces()
    decided = main.face(live("bo", probe=-ANN_FACE))  # someone else's face
    assert isinstance(decided, Decision) and not decided.granted
    assert (decided.reason, decided.factors) == ("access.face_mismatch", {"pin": "passed", "face": "failed"})
    assert decided.face_check == "claim" and decided.subject == "ann"
    assert not main.wants_faces()
    main.credential(pin(claims, "4242", "2468"))
    decided = main.face(live(None))  # 1:N found nobody, but 1:1 against Ann matches: 1:1 decides
    assert decided.granted and decided.factors == {"pin": "passed", "face": "passed"}
    assert (decided.mode, decided.direction, decided.outcome) == ("credential+face", "in", "result.welcome")


def test_credential_then_face_refuses_a_wrong_pin_no_template_a_dead_face_and_no_face(
    policy, tmp_path
) -> None:
    clocks = Clocks(MONDAY_NOON)
    main = door(policy, "main", tmp_path, clocks)
    claims = Claims(policy, KEY, 5, 300, clocks.clock)
    wrong = main.credential(pin(claims, "4242", "0000"))
    assert wrong.reason == "access.pin_wrong" and wrong.factors == {"pin": "failed"} and wrong.subject is None
    assert main.credential(pin(claims, "5151", "1357")).reason == "access.no_face_template"  # Bo: no face
    main.credential(claims.badge("12345678"))
    dead = main.face(Face(2, False, "liveness.no_blink", None, math.nan, math.nan))
    assert (dead.reason, dead.factors) == ("liveness.no_blink", {"badge": "passed", "face": "failed"})
    main.credential(claims.badge("12345678"))
    clocks.advance(19.0)
    assert main.tick() is None
    clocks.advance(1.5)
    timed_out = main.tick()
    assert timed_out.reason == "access.claim_timeout" and not main.wants_faces()
    assert main.face(live("ann")) == ClaimFirst(1)  # a face with no credential before it
    assert main.face(Face(3, False, "liveness.no_blink", None, math.nan, math.nan)) is None


def test_credential_mode_needs_no_face_and_no_template(policy, tmp_path) -> None:
    clocks = Clocks(MONDAY_NOON)
    side = door(policy, "side", tmp_path, clocks)
    claims = Claims(policy, KEY, 5, 300, clocks.clock)
    assert not side.wants_faces()
    decided = side.credential(claims.badge("77"))  # Bo: no face template
    assert decided.granted and decided.factors == {"badge": "passed"} and decided.subject == "bo"
    assert side.face(live("ann")) is None  # faces play no part here
    assert side.credential(claims.badge("78")).reason == "access.credential_unknown"


def test_face_or_credential_takes_whichever_comes(policy, tmp_path) -> None:
    clocks = Clocks(MONDAY_NOON)
    lobby = door(policy, "lobby", tmp_path, clocks)
    claims = Claims(policy, KEY, 5, 300, clocks.clock)
    assert lobby.wants_faces()
    by_face = lobby.face(live("ann"))
    assert by_face.granted and by_face.factors == {"face": "passed"} and by_face.face_check == "search"
    assert by_face.direction == "out"
    assert lobby.credential(claims.badge("77")).granted
    unknown = lobby.face(live(None))
    assert (unknown.reason, unknown.outcome) == ("access.not_recognised", "result.not_recognised")


def test_face_mode_refuses_credentials_and_points_elsewhere(policy, tmp_path) -> None:
    clocks = Clocks(MONDAY_NOON)
    turnstile = door(policy, "turnstile", tmp_path, clocks)
    claims = Claims(policy, KEY, 5, 300, clocks.clock)
    assert not turnstile.takes("badge") and turnstile.wants_faces()
    assert turnstile.credential(claims.badge("77")).reason == "access.mode"
    assert turnstile.face(live("ann")).granted


def test_schedule_edges_and_across_a_dst_change(policy, tmp_path) -> None:
    """Cy's group may pass main and side Monday to Friday 07:00-19:00 Berlin time."""
    clocks = Clocks(datetime(2026, 3, 27, 5, 59, 59, tzinfo=UTC).timestamp())  # Friday 06:59:59 CET
    side = door(policy, "side", tmp_path, clocks)
    claims = Claims(policy, KEY, 5, 300, clocks.clock)

    def attempt(when: datetime) -> Decision:
        clocks.wall_now = when.timestamp()
        return side.credential(pin(claims, "6161", "9999"))

    outside = attempt(datetime(2026, 3, 27, 5, 59, 59, tzinfo=UTC))
    assert (outside.granted, outside.reason) == (False, "access.outside_schedule")
    assert outside.outcome == "result.rejected" and not outside.attendance
    assert attempt(datetime(2026, 3, 27, 6, 0, 0, tzinfo=UTC)).granted  # 07:00 CET
    assert attempt(datetime(2026, 3, 27, 17, 59, 59, tzinfo=UTC)).granted  # 18:59:59 CET
    assert not attempt(datetime(2026, 3, 27, 18, 0, 0, tzinfo=UTC)).granted  # 19:00 CET
    # Clocks went forward on Sunday 29 March: on Monday 07:00 is 05:00 UTC, an hour earlier than Friday.
    assert not attempt(datetime(2026, 3, 30, 4, 59, 59, tzinfo=UTC)).granted
    assert attempt(datetime(2026, 3, 30, 5, 0, 0, tzinfo=UTC)).granted
    assert not attempt(datetime(2026, 3, 30, 6, 0, 0, tzinfo=UTC).replace(hour=17)).granted  # 19:00 CEST
    assert not attempt(datetime(2026, 12, 25, 9, 0, tzinfo=UTC)).granted  # a holiday (Friday)


def test_attendance_outside_schedule_where_the_door_says_so(tmp_path) -> None:
    src = source()
    src["doors"]["side"]["attendance_outside_schedule"] = True
    policy = policy_of(signed(src, new_signer()))
    clocks = Clocks(datetime(2026, 5, 9, 10, 0, tzinfo=UTC).timestamp())  # Saturday
    refused = door(policy, "side", tmp_path, clocks).credential(
        Claims(policy, KEY, 5, 300, clocks.clock).pin_result("6161", True)
    )
    assert (refused.granted, refused.reason, refused.attendance) == (False, "access.outside_schedule", True)


def test_anti_passback_in_in_refused_in_out_in_passes_and_survives_a_restart(policy, tmp_path) -> None:
    clocks = Clocks(MONDAY_NOON)
    claims = Claims(policy, KEY, 5, 300, clocks.clock)
    main = door(policy, "main", tmp_path, clocks)

    def enter() -> Decision:
        claimed = main.credential(claims.badge("12345678"))  # refused at once when she may not enter now
        return claimed if isinstance(claimed, Decision) else main.face(live("ann"))

    first = enter()
    assert first.granted and first.direction == "in"
    main.passages.record("ann", "in", clocks.wall())  # the gate opened
    clocks.advance(60)
    again = enter()
    assert (again.granted, again.reason) == (False, "access.anti_passback")
    # A restart: the record is on disk.
    main = door(policy, "main", tmp_path, clocks)
    assert enter().reason == "access.anti_passback"
    # Out through the side door (both ways: the person chose Out on its screen), then in again.
    side = door(policy, "side", tmp_path, clocks)
    side.passages = main.passages
    side.choose("out")
    out = side.credential(claims.badge("12345678"))
    assert out.granted and out.direction == "out"
    main.passages.record("ann", "out", clocks.wall())
    assert enter().granted
    # Without a way out the period forgives: an hour after the last entry.
    main.passages.record("ann", "in", clocks.wall())
    clocks.advance(3599)
    assert not enter().granted
    clocks.advance(2)
    assert enter().granted


def test_visitor_passes_in_and_outside_their_window_and_used_up(policy, tmp_path) -> None:
    clocks = Clocks(MONDAY_NOON)
    claims = Claims(policy, KEY, 5, 300, clocks.clock)
    side = door(policy, "side", tmp_path, clocks)
    text = visitor_pass(PASS_KEY, clocks.wall())
    decided = side.credential(claims.qr(text))
    assert decided.granted and decided.credential == "pass" and decided.subject == "visitor-17"
    assert decided.factors == {"pass": "passed"} and decided.token is not None
    side.used.use(decided.token, clocks.wall())  # the gate opened: one use gone
    replayed = side.credential(claims.qr(text))
    assert (replayed.granted, replayed.reason) == (False, "access.pass_replayed")
    early = visitor_pass(PASS_KEY, clocks.wall() + 7200, id="visit-000002")
    assert side.credential(claims.qr(early)).reason == "access.pass_not_yet_valid"
    late = visitor_pass(PASS_KEY, clocks.wall() - 7200, id="visit-000003")
    assert side.credential(claims.qr(late)).reason == "access.pass_expired"
    elsewhere = visitor_pass(PASS_KEY, clocks.wall(), id="visit-000004", doors=["lobby"])
    assert side.credential(claims.qr(elsewhere)).reason == "access.pass_other_door"
    main = door(policy, "main", tmp_path, clocks)  # credential+face: a visitor has no face to check
    assert (
        main.credential(claims.qr(visitor_pass(PASS_KEY, clocks.wall(), id="visit-000005"))).reason
        == "access.mode"
    )
    posing = visitor_pass(PASS_KEY, clocks.wall(), id="visit-000006", sub="ann")  # a pass naming a member
    assert side.credential(claims.qr(posing)).reason == "access.pass_malformed"


def test_member_codes_are_the_persons_until_revoked(policy, tmp_path) -> None:
    clocks = Clocks(MONDAY_NOON)
    claims = Claims(policy, KEY, 5, 300, clocks.clock)
    side = door(policy, "side", tmp_path, clocks)
    assert side.credential(claims.qr(member_code(PASS_KEY, clocks.wall()))).granted
    revoked = member_code(PASS_KEY, clocks.wall(), id="ann-code-2")  # signed, but not in Ann's list
    assert side.credential(claims.qr(revoked)).reason == "access.credential_unknown"
    stolen = member_code(PASS_KEY, clocks.wall(), sub="bo")  # Ann's code id, issued for Bo
    assert side.credential(claims.qr(stolen)).reason == "access.credential_unknown"
    expired = member_code(PASS_KEY, clocks.wall() - 200_000)
    assert side.credential(claims.qr(expired)).reason == "access.pass_expired"


def test_the_keypad_locks_a_number_after_wrong_pins(policy) -> None:
    clocks = Clocks(MONDAY_NOON)
    claims = Claims(policy, KEY, 3, 300, clocks.clock)
    for _ in range(3):
        assert claims.pin_result("4242", False).reason == "access.pin_wrong"
    assert claims.locked("4242") and not claims.locked("5151")
    clocks.advance(301)
    assert not claims.locked("4242")
    assert claims.pin_target("0000") is None and Claims(policy, None, 3, 300).pin_target("4242") is None


class PassagesMachine(RuleBasedStateMachine):
    """Anti-passback against a model: an entry is refused exactly when the person's last recorded passage was
    an entry less than the period ago; what is recorded survives reopening the file."""

    PERIOD = 100.0

    def __init__(self) -> None:
        super().__init__()
        import tempfile

        self.path = Path(tempfile.mkdtemp()) / "passages.json"
        self.passages = Passages(self.path)
        self.now = 1_000_000.0
        self.model: dict[str, tuple[str, float]] = {}

    @rule(subject=st.sampled_from(["a", "b"]), direction=st.sampled_from(["in", "out", "both"]))
    def record(self, subject: str, direction: str) -> None:
        self.passages.record(subject, direction, self.now)
        if direction != "both":
            self.model[subject] = (direction, self.now)

    @rule(seconds=st.floats(0, 300))
    def wait(self, seconds: float) -> None:
        self.now += seconds

    @rule()
    def restart(self) -> None:
        self.passages = Passages(self.path)

    @invariant()
    def refuses_as_the_model_says(self) -> None:
        for subject in ("a", "b", "c"):
            last = self.model.get(subject)
            expected = last is not None and last[0] == "in" and self.now - last[1] < self.PERIOD
            assert self.passages.refuses(subject, "in", self.PERIOD, self.now) == expected
            assert not self.passages.refuses(subject, "out", self.PERIOD, self.now)


TestPassages = PassagesMachine.TestCase
TestPassages.settings = settings(max_examples=40, stateful_step_count=25, deadline=None)
