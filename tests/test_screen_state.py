"""The door screen's state machine: a whole pass (idle -> positioning -> each step -> checking -> result ->
idle), hints that hold before they show, the face it follows, enrolment, and properties over any sequence."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from device.contracts import FaceGuide, Prompt
from device.screen.state import FACE_GONE_S, ScreenState


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def guide(track: int = 1, reasons: tuple[str, ...] = (), size: float = 0.4, x: float = 0.3) -> FaceGuide:
    return FaceGuide(track, 0.0, (x, 0.2, x + size, 0.2 + size), ((x + 0.1, 0.3),), reasons)


def step(code: str, step: str | None, index: int, track: int = 1) -> Prompt:
    return Prompt(track, "prompt", step, index, 2, 4.0, code, 0.0)  # type: ignore[arg-type]


def outcome(code: str, track: int = 1, reason: str | None = None, subject: str | None = None) -> Prompt:
    params = {k: v for k, v in (("reason", reason), ("subject", subject)) if v is not None}
    return Prompt(track, "feedback", None, 0, 0, 0.0, code, 0.0, params)


def test_a_whole_pass() -> None:
    clock = Clock()
    s = ScreenState(result_hold_s=4.0, clock=clock)
    assert s.view.screen == "idle"
    v = s.guide(guide(reasons=("quality.too_small",)), 1.0)
    assert v is not None and v.screen == "positioning" and v.hint is None  # a hint must hold first
    v = s.guide(guide(reasons=("quality.too_small",)), 2.0)
    assert v is not None and v.hint == "hint.closer" and v.issued_ms == 2.0
    assert s.guide(guide(reasons=("quality.too_small",)), 3.0) is None  # nothing new
    s.guide(guide(), 4.0)
    v = s.guide(guide(), 5.0)
    assert v is not None and v.screen == "positioning" and v.hint is None
    v = s.prompt(step("challenge.turn_left", "turn_left", 1), None, 6.0)
    assert v is not None and (v.screen, v.step, v.step_index, v.steps, v.retry) == (
        "challenge",
        "turn_left",
        1,
        2,
        False,
    )
    assert s.followed == 1 and s.guide(guide(), 7.0) is None  # the challenge view stays
    # A failed step is asked again: "Let's try again" (no step yet), then the fresh step says it too.
    retry = Prompt(
        1, "retry", None, 1, 2, 0.0, "challenge.retry", 0.0, {"reason": "liveness.no_turn", "try": 2}
    )
    v = s.prompt(retry, None, 8.0)
    assert v is not None and (v.screen, v.step, v.retry) == ("challenge", None, True)
    v = s.prompt(step("challenge.turn_right", "turn_right", 1), None, 8.5)
    assert v is not None and v.retry and v.step == "turn_right"
    v = s.prompt(step("challenge.blink", "blink", 2), None, 9.0)
    assert v is not None and v.step == "blink" and not v.retry
    v = s.prompt(outcome("challenge.passed"), None, 10.0)
    assert v is not None and v.screen == "checking"
    v = s.prompt(outcome("result.welcome", subject="ann"), "Ann Example", 11.0)
    assert v is not None and (v.screen, v.outcome, v.name, v.subject) == (
        "result",
        "result.welcome",
        "Ann Example",
        "ann",
    )
    assert s.followed is None
    clock.t = 3.9
    assert s.tick() is None  # held
    clock.t = 4.1
    v = s.tick()
    assert v is not None and v.screen == "idle" and v.name is None
    seqs = [1, 2]
    assert seqs == sorted(seqs)


def test_the_challenges_own_hint_prompts_show_while_positioning() -> None:
    s = ScreenState(clock=Clock())
    v = s.prompt(Prompt(3, "hint", None, 0, 0, 0.0, "quality.too_dark", 0.0), None, 1.0)
    assert v is not None and (v.screen, v.track, v.hint) == ("positioning", 3, "hint.light")
    assert s.prompt(Prompt(3, "hint", None, 0, 0, 0.0, "quality.too_dark", 0.0), None, 2.0) is None


def test_rejection_after_a_failed_challenge_is_shown_once_with_its_reason() -> None:
    s = ScreenState(clock=Clock())
    s.prompt(step("challenge.turn_right", "turn_right", 1), None, 1.0)
    v = s.prompt(outcome("challenge.failed", reason="liveness.no_turn"), None, 2.0)
    assert v is not None and (v.screen, v.outcome, v.reason) == (
        "result",
        "result.rejected",
        "liveness.no_turn",
    )
    assert s.prompt(outcome("result.rejected", reason="liveness.no_turn"), None, 3.0) is None
    v = s.prompt(outcome("result.rejected", reason="track.timeout"), None, 4.0)
    assert v is not None and v.reason == "track.timeout"


def test_a_face_never_good_enough_is_told_what_to_fix() -> None:
    s = ScreenState(clock=Clock())
    for i in range(3):
        s.guide(guide(reasons=("quality.too_dark",)), float(i))
    assert s.view.hint == "hint.light"
    v = s.prompt(outcome("result.rejected", reason="track.never_good_enough"), None, 5.0)
    assert v is not None and v.reason == "track.never_good_enough" and v.hint == "hint.light"
    v = s.prompt(outcome("result.rejected", track=9, reason="liveness.no_blink"), None, 6.0)
    assert v is not None and v.hint is None  # not a quality problem: no hint


def test_it_follows_the_larger_face_and_goes_idle_when_faces_leave() -> None:
    clock = Clock()
    s = ScreenState(clock=clock)
    s.guide(guide(1, size=0.2), 1.0)
    assert s.view.track == 1
    assert s.guide(guide(2, size=0.1, x=0.6), 2.0) is None  # smaller, while 1 is in view
    v = s.guide(guide(2, size=0.3, x=0.6), 3.0)
    assert v is not None and v.track == 2
    clock.t = FACE_GONE_S + 0.5
    v = s.tick()
    assert v is not None and v.screen == "idle"


def test_enrolment_banner_until_its_outcome() -> None:
    clock = Clock()
    s = ScreenState(result_hold_s=2.0, clock=clock)
    v = s.prompt(outcome("enrol.started", track=0, subject="cy"), "Cy Example", 1.0)
    assert v is not None and v.screen == "idle" and v.enrolment == "Cy Example"
    v = s.guide(guide(), 2.0)
    assert v is not None and v.screen == "positioning" and v.enrolment == "Cy Example"
    v = s.prompt(outcome("enrol.done", subject="cy"), "Cy Example", 3.0)
    assert v is not None and (v.screen, v.outcome, v.enrolment) == ("enrol", "enrol.done", None)
    s.prompt(outcome("enrol.started", track=0, subject="dee"), None, 4.0)
    assert s.view.enrolment == "dee"  # no display name: the subject id, on the local screen
    v = s.prompt(outcome("enrol.failed", subject="dee", reason="enrol.timeout"), None, 5.0)
    assert v is not None and v.reason == "enrol.timeout" and v.enrolment is None


CODES = st.sampled_from(
    [
        ("challenge.turn_left", "turn_left"),
        ("challenge.turn_right", "turn_right"),
        ("challenge.blink", "blink"),
        ("challenge.retry", "blink"),
        ("challenge.passed", None),
        ("challenge.failed", None),
        ("result.welcome", None),
        ("result.accepted", None),
        ("result.not_recognised", None),
        ("result.rejected", None),
        ("enrol.started", None),
        ("enrol.done", None),
        ("enrol.failed", None),
    ]
)
EVENTS = st.one_of(
    st.tuples(st.just("prompt"), CODES, st.integers(0, 3), st.sampled_from([None, "liveness.no_blink"])),
    st.tuples(
        st.just("guide"),
        st.integers(0, 3),
        st.sampled_from([(), ("quality.too_dark",)]),
        st.floats(0.05, 0.6),
    ),
    st.tuples(st.just("tick"), st.floats(0.0, 6.0)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(EVENTS, max_size=60))
def test_any_sequence_gives_numbered_views_and_names_only_where_they_belong(events) -> None:
    clock = Clock()
    s = ScreenState(result_hold_s=2.0, clock=clock)
    last = s.view.seq
    for event in events:
        if event[0] == "prompt":
            _, (code, stp), track, reason = event
            state = "prompt" if stp else "feedback"
            params = {"subject": "subj", **({"reason": reason} if reason else {})}
            p = Prompt(track, state, stp, 1 if stp else 0, 2, 3.0, code, 0.0, params)  # type: ignore[arg-type]
            v = s.prompt(p, "Some Name", 0.0)
        elif event[0] == "guide":
            _, track, reasons, size = event
            v = s.guide(guide(track, reasons, size), 0.0)
        else:
            clock.t += event[1]
            v = s.tick()
        if v is None:
            continue
        assert v.seq == last + 1 and v is s.view
        last = v.seq
        if v.name is not None:
            assert (v.screen, v.outcome) == ("result", "result.welcome")
        if v.enrolment is not None:
            assert v.enrolment in ("Some Name", "subj")
        if v.screen == "challenge":
            assert v.step in ("turn_left", "turn_right", "blink") and s.followed == v.track
        assert v.screen in ("idle", "positioning", "challenge", "checking", "result", "enrol")
    clock.t += 100.0
    s.tick()
    s.tick()
    assert s.view.screen in ("idle", "challenge")  # a challenge ends only with its own prompt
