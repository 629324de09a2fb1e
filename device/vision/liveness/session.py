"""Liveness for one track: the challenge state machine (challenge policy), soft replay cues, and the fused
decision with its reasons.

Challenge: once the face is good enough, and after a random pause, the steps (a head turn in a random
direction, a blink) are asked in random order, each with its time limit. A turn passes when the yaw moved far
enough in the asked direction AND the rigid landmarks across the turn are not explained by one homography
(not a plane). A blink passes when the eye contour dips and reopens. Either motion must BEGIN inside the
onset window after its prompt: sooner than a person can react is anticipation (or a video that happened to
move), much later is a hand looking for the motion in a recording. A failed step gets `step_retries` more
tries, each with a fresh random step after a random pause; then the challenge fails. A high replay risk
adds one step (step-up); it rejects on its own only on a terminal whose cue is calibrated.

Time: every duration (pauses, step limits, onset, the decision timeout) is read from the injected monotonic
`clock`, never from the frames' wall-clock stamps, which only date the prompts that leave: stepping the
wall clock (NTP after boot on a Pi without RTC) neither fails nor passes anyone.

Fail closed: a measure that is missing or not finite (yaw, landmarks, planarity, replay risk) never counts
towards a pass; a non-finite score fails the session, and no non-finite number leaves it.

Size (~410 lines): one state machine, kept whole so its security rules read in one place; the motion
measures are device.vision.liveness.{features,blink,planarity,cues}.
"""

from __future__ import annotations

import math
import random
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from device.config.vision import LivenessConfig
from device.contracts import STEP_CODES, Prompt, PromptSink, PromptState, Reason, Step
from device.contracts.prompts import Param
from device.vision.liveness.blink import BlinkDetector
from device.vision.liveness.planarity import planarity_score

HISTORY_S = 0.6  # frames kept from before a turn prompt: the frontal start of the turn
MAX_TURN_FRAMES = 90

Status = Literal["pending", "passed", "failed"]
Clock = Callable[[], float]


@dataclass(frozen=True)
class LiveFrame:
    """What liveness needs from one frame of a track (landmarks in frame pixels; no image).

    `t` is the frame's wall-clock stamp: it dates the prompts, it never measures a duration."""

    t: float
    index: int
    yaw: float
    mesh_xy: np.ndarray | None = None
    openness: float | None = None  # eye aspect ratio, both eyes averaged
    steady: bool = False
    face_aspect: float | None = None  # eye line to lips / eye distance (a blink must leave it alone)
    risk: float | None = None  # replay-risk cue of this frame
    good: bool = False  # passed the quality gate


@dataclass(frozen=True)
class LivenessResult:
    status: Status
    scores: dict[str, float]
    reasons: tuple[Reason, ...]


@dataclass
class _StepState:
    step: Step
    started: float  # clock time of the prompt
    base_yaw: float = 0.0
    frames: list[tuple[float, LiveFrame]] = field(default_factory=list)  # (clock time, frame)
    best_residual: float = float("nan")


def _measurable(f: LiveFrame) -> bool:
    """Landmarks and yaw present and finite: only then can the frame count towards a head turn."""
    return f.mesh_xy is not None and math.isfinite(f.yaw) and bool(np.isfinite(f.mesh_xy).all())


def _rng(seed: int | None, track_id: int) -> random.Random:
    return random.Random(seed * 1_000_003 + track_id) if seed is not None else secrets.SystemRandom()


def turn_onset(
    frames: list[tuple[float, LiveFrame]], base_yaw: float, sign: float, onset_deg: float
) -> float:
    """Clock time the head left its start pose for the turn that ends the list: the first frame after the
    last one still within `onset_deg` of `base_yaw` (-inf when no frame was: it was turning all along)."""
    for k in range(len(frames) - 1, -1, -1):
        if sign * (frames[k][1].yaw - base_yaw) < onset_deg:
            return frames[min(k + 1, len(frames) - 1)][0]
    return -math.inf


class LivenessSession:
    def __init__(
        self,
        track_id: int,
        config: LivenessConfig,
        policy: str,
        sink: PromptSink | None,
        clock: Clock,
        decision_s: float | None = None,
        calibrated: bool = False,
    ) -> None:
        self.track_id = track_id
        self.config = config
        self.policy = policy
        self.calibrated = calibrated
        self._sink = sink
        self._clock = clock
        self._started = clock()
        self._decision_s = decision_s
        self._rng = _rng(config.seed, track_id)
        self._blink = BlinkDetector(config)
        self._history: deque[tuple[float, LiveFrame]] = deque()
        self._steps: list[Step] = [self._pick(s) for s in config.steps]
        self._rng.shuffle(self._steps)
        self._current: _StepState | None = None
        self._next_prompt_at: float | None = None
        self._done_steps: list[Step] = []
        self._retries_left = config.step_retries
        self._stepped_up = False
        self.status: Status = "pending"
        self.reasons: list[Reason] = []
        self.scores: dict[str, float] = {}
        self._risks: list[float] = []
        self._good_frames = 0

    def _pick(self, kind: str) -> Step:
        if kind == "blink":
            return "blink"
        return "turn_left" if self._rng.random() < 0.5 else "turn_right"

    def _pause(self) -> float:
        c = self.config
        return self._rng.uniform(c.prompt_delay_min_s, c.prompt_delay_max_s)

    @property
    def tries(self) -> int:
        """Steps asked so far that failed and were asked again, plus one."""
        return 1 + self.config.step_retries - self._retries_left

    @property
    def wants_eyes(self) -> bool:
        """True while the blink step runs or is the next to start: only then is the eye opening read.

        The iris model costs as much as the face mesh; the blink detector builds its baseline from the
        frames of the random pause before the prompt (at least 0.3 s).
        """
        if self.policy != "challenge" or self.status != "pending":
            return False
        if self._current is not None:
            return self._current.step == "blink"
        return len(self._done_steps) < len(self._steps) and self._steps[len(self._done_steps)] == "blink"

    @property
    def eyes_urgent(self) -> bool:
        """Every eye frame counts now: the blink detector has no baseline yet, or a dip is under way."""
        return not self._blink.ready or self._blink.dipping

    # ---- per frame -------------------------------------------------------------------------------------
    def update(self, f: LiveFrame) -> LivenessResult:
        now = self._clock()
        if f.risk is not None and f.good:
            self._risks.append(f.risk)
        self._good_frames += int(f.good)
        # Before the pending check: a non-finite measure arriving after a pass still fails the track.
        if self.status == "failed" or self._fail_non_finite(f.t) or self.status != "pending":
            return self.result()
        if self._decision_s is not None and now - self._started > self._decision_s:
            reason = Reason("track.timeout", f"no decision within {self._decision_s:g} s")
            self._finish("failed", reason, f.t)
        elif self.policy == "challenge":
            self._challenge(f, now)
        elif self._good_frames >= self.config.passive_min_frames:
            self._passive()
        return self.result()

    def _passive(self) -> None:
        if self.policy == "off":
            self._finish("passed", Reason("liveness.off", "liveness off: no check was made"))
            return
        if self._may_reject():
            self._finish(
                "failed",
                Reason(
                    "liveness.replay_risk",
                    f"replay risk {self._risk():.2f} >= {self.config.replay_risk_threshold:.2f}",
                ),
            )
            return
        self._finish(
            "passed", Reason("liveness.passive", "passive: no challenge was run, a photo or replay can pass")
        )

    def _challenge(self, f: LiveFrame, now: float) -> None:
        blink = None
        if f.openness is not None and f.face_aspect is not None:  # both, or the frame cannot show a blink
            blink = self._blink.update(now, f.index, f.openness, f.steady, f.face_aspect)
        if _measurable(f):
            self._history.append((now, f))
            while self._history and now - self._history[0][0] > HISTORY_S:
                self._history.popleft()
        if self._current is None:
            if not f.good:
                return  # wait for a face good enough to talk to
            if self._next_prompt_at is None:
                self._next_prompt_at = now + self._pause()
            if now < self._next_prompt_at or not f.steady or not self._at_rest(now):
                return  # the pause, then a frontal, still head: never prompt into a motion under way
            self._start_next(f, now)
        cur = self._current
        assert cur is not None
        c = self.config
        limit = c.blink_time_s if cur.step == "blink" else c.turn_time_s
        if cur.step == "blink":
            # A blink begun before the prompt could be seen is no answer (nor a failure): people blink.
            if blink is not None and blink.start_t >= cur.started + c.onset_min_s:
                self.scores["blink_depth"] = round(blink.depth, 3)
                self._answered(cur, blink.start_t, f, now)
                return
        elif _measurable(f) and self._turn_check(cur, f, now):
            sign = 1.0 if cur.step == "turn_left" else -1.0
            self._answered(cur, turn_onset(cur.frames, cur.base_yaw, sign, c.turn_onset_deg), f, now)
            return
        if now - cur.started > limit:
            self._step_failed(self._timeout_reason(cur, limit), f, now)

    def _answered(self, cur: _StepState, onset_at: float, f: LiveFrame, now: float) -> None:
        c = self.config
        onset = onset_at - cur.started
        if math.isfinite(onset):
            self.scores["onset_s"] = round(onset, 2)
        if onset < c.onset_min_s:
            reason = Reason(
                "liveness.too_early", f"the motion began before the prompt could be seen ({onset:.2f} s)"
            )
            self._step_failed(reason, f, now)
        elif onset > c.onset_max_s:
            reason = Reason(
                "liveness.too_late", f"the motion began {onset:.1f} s after the prompt (> {c.onset_max_s:g})"
            )
            self._step_failed(reason, f, now)
        else:
            self._step_passed(f, now)

    def _at_rest(self, now: float) -> bool:
        """The head has not turned over the last HISTORY_S (a frame that is still can follow a turn that is
        still settling, which would read as the next step answered too early)."""
        yaws = [h.yaw for t, h in self._history if now - t <= HISTORY_S]
        return not yaws or max(yaws) - min(yaws) <= self.config.prompt_rest_max_yaw_deg

    def _start_next(self, f: LiveFrame, now: float) -> None:
        step = self._steps[len(self._done_steps)]
        cur = _StepState(step=step, started=now)
        if step != "blink":
            recent = [h.yaw for _, h in self._history] or [f.yaw]
            cur.base_yaw = float(np.median(recent))
            cur.frames = list(self._history)
        self._current = cur
        self._next_prompt_at = None
        limit = self.config.blink_time_s if step == "blink" else self.config.turn_time_s
        self._publish("prompt", step, limit, f.t)

    def _turn_check(self, cur: _StepState, f: LiveFrame, now: float) -> bool:
        c = self.config
        if not cur.frames or cur.frames[-1][1] is not f:
            cur.frames.append((now, f))
            del cur.frames[:-MAX_TURN_FRAMES]
        sign = 1.0 if cur.step == "turn_left" else -1.0  # +yaw = towards the subject's left
        moved = sign * (f.yaw - cur.base_yaw)
        self.scores["turn_deg"] = round(max(self.scores.get("turn_deg", 0.0), moved), 1)
        if moved < c.turn_min_deg:
            return False
        measured = [fr for _, fr in cur.frames if fr.mesh_xy is not None]  # all are (_measurable)
        residual, pairs = planarity_score(
            [fr.mesh_xy for fr in measured if fr.mesh_xy is not None],
            [fr.yaw for fr in measured],
            c.pair_min_deg,
        )
        if pairs < c.min_planarity_pairs or not math.isfinite(residual):
            return False
        cur.best_residual = residual if np.isnan(cur.best_residual) else max(cur.best_residual, residual)
        self.scores["planarity"] = round(cur.best_residual, 4)
        return residual >= c.planarity_threshold

    def _timeout_reason(self, cur: _StepState, limit: float) -> Reason:
        if cur.step == "blink":
            return Reason("liveness.no_blink", f"no blink within {limit:g} s")
        side = "left" if cur.step == "turn_left" else "right"
        if not np.isnan(cur.best_residual):
            return Reason(
                "liveness.planar",
                f"head turn explained by a plane (residual {cur.best_residual:.3f} < "
                f"{self.config.planarity_threshold:.3f})",
            )
        return Reason("liveness.no_turn", f"no head turn to the {side} within {limit:g} s")

    def _step_failed(self, reason: Reason, f: LiveFrame, now: float) -> None:
        """One more try with a fresh random step after a pause, while retries last; else the challenge fails."""
        assert self._current is not None
        self.reasons.append(reason)
        if self._retries_left <= 0:
            self._current = None
            self._finish("failed", reason, f.t, record=False)
            return
        self._retries_left -= 1
        index = len(self._done_steps)
        # A fresh step of the SAME kind: a turn a photo cannot pass must not become a blink it can fake.
        self._steps[index] = self._pick("blink" if self._steps[index] == "blink" else "turn")
        self._current = None
        self._next_prompt_at = now + self._pause()
        self._blink.reset()
        self.reasons.append(Reason("liveness.retry", f"step failed ({reason.code}): try {self.tries}"))
        self._publish("retry", None, 0.0, f.t, {"reason": reason.code, "try": self.tries})

    def _step_passed(self, f: LiveFrame, now: float) -> None:
        assert self._current is not None
        self._done_steps.append(self._current.step)
        step = self._current.step
        self.reasons.append(Reason(f"liveness.{step}_passed", f"{step.replace('_', ' ')} passed"))
        self._current = None
        if not self._stepped_up and self._risk_high() and self.config.replay_risk_action != "flag":
            # Step-up: one more step, never a rejection by itself (the cue may be wrong on this camera).
            self._stepped_up = True
            self._steps.append(self._pick(self._rng.choice(self.config.steps)))
            self.reasons.append(
                Reason("liveness.step_up", f"replay risk {self._risk():.2f}: one more step asked")
            )
        if len(self._done_steps) < len(self._steps):
            self._next_prompt_at = now + self._pause()
            return
        if self._may_reject():
            reason = Reason(
                "liveness.replay_risk",
                f"replay risk {self._risk():.2f} >= {self.config.replay_risk_threshold:.2f} "
                "(calibrated on this camera)",
            )
            self._finish("failed", reason, f.t)
            return
        self._finish("passed", Reason("liveness.passed", "challenge passed"), f.t)

    # ---- decision -------------------------------------------------------------------------------------
    def _risk(self) -> float | None:
        return float(np.median(self._risks)) if self._risks else None

    def _risk_high(self) -> bool:
        risk = self._risk()
        return risk is not None and risk >= self.config.replay_risk_threshold

    def _may_reject(self) -> bool:
        """The cue rejects on its own only when asked to AND calibrated on this camera's live faces."""
        return self._risk_high() and self.config.replay_risk_action == "reject" and self.calibrated

    def _finish(self, status: Status, reason: Reason, t: float = 0.0, record: bool = True) -> None:
        self.status = status
        if record:
            self.reasons.append(reason)
        if self.policy == "challenge" and status != "pending":
            code = getattr(reason, "code", None)  # give_up may be handed plain text
            self._publish(status, None, 0.0, t, {"reason": code} if status == "failed" and code else {})
        flag = self.config.replay_risk_action == "flag" or self.policy == "passive"
        if status == "passed" and self._risk_high() and flag:
            self.reasons.append(Reason("liveness.replay_risk_flag", f"flag: replay risk {self._risk():.2f}"))

    def give_up(self, reason: Reason, t: float) -> LivenessResult:
        """The track ended or timed out before a decision."""
        if self.status == "pending" and not self._fail_non_finite(t):
            self._finish("failed", reason, t)
        return self.result()

    def _all_scores(self) -> dict[str, float]:
        scores = dict(self.scores)
        risk = self._risk()
        if risk is not None:
            scores["replay_risk"] = round(risk, 3)
        scores["steps_passed"] = float(len(self._done_steps))
        if self.policy == "challenge":
            scores["tries"] = float(self.tries)
        return scores

    def _fail_non_finite(self, t: float) -> bool:
        bad = {k for k, v in self._all_scores().items() if not math.isfinite(v)}
        if not all(math.isfinite(r) for r in self._risks):
            bad.add("replay_risk")  # one non-finite frame must fail, even where the median hides it
        if bad:
            names = ", ".join(sorted(bad))
            self._finish("failed", Reason("liveness.not_finite", f"liveness measure not finite: {names}"), t)
        return bool(bad)

    def result(self) -> LivenessResult:
        # Fail closed, and nothing non-finite travels on (a signature over canonical JSON cannot carry it).
        scores = {k: v for k, v in self._all_scores().items() if math.isfinite(v)}
        status: Status = self.status
        if status == "passed" and len(scores) != len(self._all_scores()):
            status = "failed"
        return LivenessResult(status, scores, tuple(self.reasons))

    def _publish(
        self,
        state: PromptState,
        step: Step | None,
        deadline: float,
        t: float,
        params: dict[str, Param] | None = None,
    ) -> None:
        if self._sink is None:
            return
        index = len(self._done_steps) + (1 if step else 0)
        code = STEP_CODES[step] if step else f"challenge.{state}"
        self._sink.publish(
            Prompt(self.track_id, state, step, index, len(self._steps), deadline, code, t, dict(params or {}))
        )
