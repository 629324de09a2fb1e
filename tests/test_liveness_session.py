"""The challenge session on its own: monotonic clock (a stepped wall clock changes nothing), the onset window,
retries with the "Let's try again" prompt, and the step-up that never rejects on an uncalibrated camera."""

from __future__ import annotations

import math

import numpy as np
import pytest

from device.config.vision import LivenessConfig
from device.contracts import Prompt
from device.vision.liveness.session import LiveFrame, LivenessSession

FPS = 15.0
OPEN, CLOSED = 0.3, 0.05


class Person:
    """Feeds a session like a camera would, answering each prompt after `reaction` seconds.

    The session's clock is the monotonic time `now`; the frames carry a wall-clock stamp `now + wall_offset`,
    and `wall_jumps` steps that offset at given frames (NTP stepping the clock of a Pi without RTC)."""

    def __init__(
        self, config: LivenessConfig, reactions, risk=None, calibrated=False, wall_jumps=None, flick=False
    ):
        self.now = 0.0
        self.prompts: list[Prompt] = []
        self.session = LivenessSession(5, config, "challenge", self, lambda: self.now, 30.0, calibrated)
        self.reactions = list(reactions)
        self.risk = risk
        self.wall_offset = 1.7e9
        self.wall_jumps = dict(wall_jumps or {})
        self.flick = flick  # a photo pitched on cue: the face squashes with the eyes
        self._blink_at: float | None = None
        self._turn: tuple[float, float] | None = None  # (start, sign)

    def publish(self, prompt: Prompt) -> None:
        self.prompts.append(prompt)
        if prompt.state == "prompt" and self.reactions:
            start = self.now + self.reactions.pop(0)
            if prompt.step == "blink":
                self._blink_at = start
            else:
                self._turn = (start, 1.0 if prompt.step == "turn_left" else -1.0)

    def listening(self) -> bool:
        return True

    def _closing(self) -> bool:
        return self._blink_at is not None and 0 <= self.now - self._blink_at < 3 / FPS

    def _openness(self) -> float:
        return CLOSED if self._closing() else OPEN

    def _aspect(self) -> float:
        return 1.08 * (0.8 if self.flick and self._closing() else 1.0)

    def _yaw(self) -> float:
        if self._turn is None:
            return 0.0
        start, sign = self._turn
        u = self.now - start  # 60 deg/s up to 30 deg, a moment there, and back
        return sign * float(np.clip(min(u * 60.0, 30.0 - (u - 0.7) * 60.0), 0.0, 30.0))

    def run(self, seconds: float = 30.0):
        result = None
        for i in range(int(seconds * FPS)):
            self.now = i / FPS
            self.wall_offset += self.wall_jumps.get(i, 0.0)
            yaw = self._yaw()
            f = LiveFrame(
                t=self.now + self.wall_offset,
                index=i,
                yaw=yaw,
                mesh_xy=head_mesh(yaw),
                openness=self._openness(),
                steady=abs(yaw) < 20,
                face_aspect=self._aspect(),
                risk=self.risk,
                good=True,
            )
            result = self.session.update(f)
            if result.status != "pending":
                return result
        return result


_HEAD = np.random.default_rng(0).normal(0.0, 1.0, (478, 3)) * np.array([60.0, 75.0, 35.0])


def head_mesh(yaw_deg: float) -> np.ndarray:
    """A 3D head's landmarks turned by `yaw` (no homography explains two views of it)."""
    a = math.radians(yaw_deg)
    rot = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    p = _HEAD @ rot.T + np.array([0, 0, 600.0])
    return 700.0 * p[:, :2] / p[:, 2:3] + np.array([320.0, 240.0])


def codes(result) -> list[str]:
    return [r.code for r in result.reasons]


def test_a_prompt_answered_in_time_passes_and_reports_its_onset():
    person = Person(LivenessConfig(steps=("blink",), seed=1), reactions=[0.6])
    result = person.run()
    assert result.status == "passed", result.reasons
    assert 0.5 <= result.scores["onset_s"] <= 0.75
    assert result.scores["tries"] == 1
    prompt = person.prompts[0]
    assert prompt.code == "challenge.blink" and prompt.params == {}


def test_each_prompt_comes_after_a_random_pause():
    pauses = set()
    for seed in range(6):
        person = Person(LivenessConfig(steps=("blink",), seed=seed), reactions=[0.6])
        person.run()
        pauses.add(round(person.prompts[0].t - 1.7e9, 2))
    c = LivenessConfig()
    assert all(c.prompt_delay_min_s - 0.1 <= p <= c.prompt_delay_max_s + 0.1 for p in pauses)
    assert len(pauses) >= 4  # not predictable


@pytest.mark.parametrize("jump_s", [3600.0, -3600.0])
def test_a_wall_clock_step_mid_challenge_neither_fails_nor_passes_it(jump_s):
    """The wall clock jumps while the challenge runs (NTP after boot): same decision, same onset."""
    config = LivenessConfig(steps=("turn", "blink"), seed=3)
    calm = Person(config, reactions=[0.6, 0.7]).run()
    stepped = Person(config, reactions=[0.6, 0.7], wall_jumps={20: jump_s, 40: -jump_s / 2}).run()
    assert calm.status == stepped.status == "passed"
    assert codes(calm) == codes(stepped)
    assert calm.scores == stepped.scores
    # And a person who does nothing is turned away after the same time, jump or not.
    idle = Person(config, reactions=[]).run()
    idle_stepped = Person(config, reactions=[], wall_jumps={20: jump_s}).run()
    assert idle.status == idle_stepped.status == "failed"
    assert codes(idle) == codes(idle_stepped)


def test_a_session_timed_on_the_wall_clock_would_have_been_fooled():
    """The test above can fail: time the same session on the frames' wall stamps and the jump ends it."""
    person = Person(LivenessConfig(steps=("blink",), seed=1), reactions=[0.6], wall_jumps={12: 3600.0})
    person.session._clock = lambda: person.now + person.wall_offset  # what the session must never do
    result = person.run()
    assert result.status == "failed"
    assert "track.timeout" in codes(result)


def test_a_failed_step_is_asked_again_with_a_fresh_step_and_a_try_again_prompt():
    person = Person(LivenessConfig(steps=("blink",), seed=2), reactions=[5.0, 0.5])  # misses the first
    result = person.run()
    assert result.status == "passed", result.reasons
    assert result.scores["tries"] == 2
    assert codes(result)[:2] == ["liveness.no_blink", "liveness.retry"]
    retry = [p for p in person.prompts if p.state == "retry"]
    assert len(retry) == 1
    assert retry[0].code == "challenge.retry"
    assert retry[0].params == {"reason": "liveness.no_blink", "try": 2}


def test_retries_run_out():
    person = Person(LivenessConfig(steps=("blink",), seed=2, step_retries=1), reactions=[])
    result = person.run()
    assert result.status == "failed"
    assert codes(result) == ["liveness.no_blink", "liveness.retry", "liveness.no_blink"]
    assert person.prompts[-1].state == "failed" and person.prompts[-1].params == {
        "reason": "liveness.no_blink"
    }
    none = Person(LivenessConfig(steps=("blink",), seed=2, step_retries=0), reactions=[]).run()
    assert codes(none) == ["liveness.no_blink"]


def test_a_blink_sooner_than_anyone_could_react_is_no_answer():
    person = Person(LivenessConfig(steps=("blink",), seed=4, step_retries=0), reactions=[0.05])
    result = person.run()
    assert result.status == "failed"
    assert codes(result) == ["liveness.no_blink"]


def test_a_motion_that_begins_too_late_fails_the_step():
    config = LivenessConfig(steps=("blink",), seed=4, step_retries=0)
    result = Person(config, reactions=[config.onset_max_s + 0.5]).run()
    assert result.status == "failed"
    assert codes(result) == ["liveness.too_late"]


def test_a_head_already_turning_at_the_prompt_is_too_early():
    config = LivenessConfig(steps=("turn",), seed=0, step_retries=0)
    result = Person(config, reactions=[-0.3]).run()  # began 0.3 s before the prompt
    assert result.status == "failed"
    assert codes(result) == ["liveness.too_early"]
    assert Person(config, reactions=[0.5]).run().status == "passed"


class Settling(Person):
    """A head still drifting (12 deg/s, steady and frontal enough) for its first 1.5 s, then at rest."""

    def __init__(self, config: LivenessConfig, reactions) -> None:
        super().__init__(config, reactions)
        self.asked_at: list[float] = []

    def publish(self, prompt: Prompt) -> None:
        if prompt.state == "prompt":
            self.asked_at.append(self.now)
        super().publish(prompt)

    def _yaw(self) -> float:
        return min(self.now, 1.5) * 12.0 + super()._yaw()


def test_no_prompt_until_the_head_has_rested():
    """A head settling from a motion would answer a turn as it is asked (too early): the first prompt waits
    until the yaw has stayed within prompt_rest_max_yaw_deg over 0.6 s, i.e. ~0.18 s after the drift."""
    config = LivenessConfig(steps=("blink",), seed=0, step_retries=0, prompt_rest_max_yaw_deg=5.0)
    person = Settling(config, reactions=[0.5])
    assert person.run().status == "passed"
    assert person.asked_at and person.asked_at[0] >= 1.6  # the first frame whose last 0.6 s span <= 5 deg
    assert config.prompt_delay_max_s < 1.5  # without the rest rule it would have been asked mid-drift


def test_a_step_up_adds_one_step_and_never_rejects_on_an_uncalibrated_camera():
    config = LivenessConfig(steps=("blink",), seed=5, replay_risk_action="reject")
    person = Person(config, reactions=[0.5, 0.5], risk=0.9)
    result = person.run()
    assert result.status == "passed", result.reasons
    assert "liveness.step_up" in codes(result)
    assert [p.step for p in person.prompts if p.state == "prompt"].__len__() == 2


def test_a_calibrated_camera_may_reject_on_the_cue():
    config = LivenessConfig(steps=("blink",), seed=5, replay_risk_action="reject")
    result = Person(config, reactions=[0.5, 0.5], risk=0.9, calibrated=True).run()
    assert result.status == "failed"
    assert codes(result)[-1] == "liveness.replay_risk"
    low = Person(config, reactions=[0.5], risk=0.1, calibrated=True).run()
    assert low.status == "passed"


def test_a_photo_flicked_on_cue_is_no_blink():
    """The eyes 'close' only because the whole face squashes (a photo pitched towards the camera)."""
    config = LivenessConfig(steps=("blink",), seed=1, step_retries=0)
    assert Person(config, reactions=[0.6], flick=True).run().status == "failed"
    assert Person(config, reactions=[0.6]).run().status == "passed"


def test_a_failed_turn_is_asked_again_as_a_turn():
    """A retry is a fresh step of the same kind: a photo that cannot turn must not get a blink instead."""
    for seed in range(8):
        person = Person(LivenessConfig(steps=("turn", "blink"), seed=seed), reactions=[])
        person.run()
        asked = [p.step for p in person.prompts if p.state == "prompt"]
        kinds = ["blink" if s == "blink" else "turn" for s in asked]
        assert kinds[1] == kinds[0], asked  # the retry keeps the kind (only the direction is drawn afresh)
