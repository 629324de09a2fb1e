"""Liveness for one track: the challenge state machine (challenge policy), soft replay cues, and the fused
decision with its reasons.

Challenge: once the face is good enough, the steps (a head turn in a random direction, a blink) are asked in
random order, each with its time limit. A turn passes when the yaw moved far enough in the asked direction
AND the rigid landmarks across the turn are not explained by one homography (not a plane). A blink passes
when the eye contour dips and reopens after the prompt. Any step that runs out of time fails the challenge.

Fail closed: a measure that is missing or not finite (yaw, landmarks, planarity, replay risk) never counts
towards a pass; a non-finite score fails the session, and no non-finite number leaves it.
"""

from __future__ import annotations

import math
import random
import secrets
from collections import deque
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


@dataclass(frozen=True)
class LiveFrame:
    """What liveness needs from one frame of a track (landmarks in frame pixels; no image)."""

    t: float
    index: int
    yaw: float
    mesh_xy: np.ndarray | None = None
    openness: float | None = None  # eye aspect ratio, both eyes averaged
    steady: bool = False
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
    started: float
    base_yaw: float = 0.0
    frames: list[LiveFrame] = field(default_factory=list)
    best_residual: float = float("nan")


def _measurable(f: LiveFrame) -> bool:
    """Landmarks and yaw present and finite: only then can the frame count towards a head turn."""
    return f.mesh_xy is not None and math.isfinite(f.yaw) and bool(np.isfinite(f.mesh_xy).all())


def _rng(seed: int | None, track_id: int) -> random.Random:
    return random.Random(seed * 1_000_003 + track_id) if seed is not None else secrets.SystemRandom()


class LivenessSession:
    def __init__(self, track_id: int, config: LivenessConfig, policy: str, sink: PromptSink | None) -> None:
        self.track_id = track_id
        self.config = config
        self.policy = policy
        self._sink = sink
        self._rng = _rng(config.seed, track_id)
        self._blink = BlinkDetector(config)
        self._history: deque[LiveFrame] = deque()
        self._steps: list[Step] = [self._pick(s) for s in config.steps]
        self._rng.shuffle(self._steps)
        self._current: _StepState | None = None
        self._done_steps: list[Step] = []
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

    @property
    def wants_eyes(self) -> bool:
        """True while the blink step runs or is the next to start: only then is the eye opening read.

        The iris model costs as much as the face mesh; the blink detector builds its baseline from the
        frames after the prompt (3 frames, 0.2 s at 15 fps: sooner than people react to a prompt).
        """
        if self.policy != "challenge" or self.status != "pending":
            return False
        if self._current is not None:
            return self._current.step == "blink"
        return len(self._done_steps) < len(self._steps) and self._steps[len(self._done_steps)] == "blink"

    # ---- per frame -------------------------------------------------------------------------------------
    def update(self, f: LiveFrame) -> LivenessResult:
        if f.risk is not None and f.good:
            self._risks.append(f.risk)
        self._good_frames += int(f.good)
        # Before the pending check: a non-finite measure arriving after a pass still fails the track.
        if self.status == "failed" or self._fail_non_finite(f.t) or self.status != "pending":
            return self.result()
        if self.policy == "challenge":
            self._challenge(f)
        elif self._good_frames >= self.config.passive_min_frames:
            self._passive()
        return self.result()

    def _passive(self) -> None:
        if self.policy == "off":
            self._finish("passed", Reason("liveness.off", "liveness off: no check was made"))
            return
        risk = self._risk()
        if (
            risk is not None
            and risk >= self.config.replay_risk_threshold
            and self.config.replay_risk_action == "reject"
        ):
            self._finish(
                "failed",
                Reason(
                    "liveness.replay_risk",
                    f"replay risk {risk:.2f} >= {self.config.replay_risk_threshold:.2f}",
                ),
            )
            return
        self._finish(
            "passed", Reason("liveness.passive", "passive: no challenge was run, a photo or replay can pass")
        )

    def _challenge(self, f: LiveFrame) -> None:
        blink = None
        if f.openness is not None:
            blink = self._blink.update(f.t, f.index, f.openness, f.steady)
        if _measurable(f):
            self._history.append(f)
            while self._history and f.t - self._history[0].t > HISTORY_S:
                self._history.popleft()
        if self._current is None:
            if not f.good:
                return  # wait for a face good enough to talk to
            self._start_next(f)
        cur = self._current
        assert cur is not None
        limit = self.config.blink_time_s if cur.step == "blink" else self.config.turn_time_s
        if cur.step == "blink":
            if blink is not None and blink.start_t >= cur.started:
                self.scores["blink_depth"] = round(blink.depth, 3)
                self._step_passed(f)
                return
        elif _measurable(f) and self._turn_check(cur, f):
            self._step_passed(f)
            return
        if f.t - cur.started > limit:
            self._finish("failed", self._timeout_reason(cur, limit), f.t)

    def _start_next(self, f: LiveFrame) -> None:
        step = self._steps[len(self._done_steps)]
        cur = _StepState(step=step, started=f.t)
        if step != "blink":
            recent = [h.yaw for h in self._history] or [f.yaw]
            cur.base_yaw = float(np.median(recent))
            cur.frames = list(self._history)
        self._current = cur
        limit = self.config.blink_time_s if step == "blink" else self.config.turn_time_s
        self._publish("prompt", step, limit, f.t)

    def _turn_check(self, cur: _StepState, f: LiveFrame) -> bool:
        c = self.config
        if not cur.frames or cur.frames[-1] is not f:
            cur.frames.append(f)
            del cur.frames[:-MAX_TURN_FRAMES]
        sign = 1.0 if cur.step == "turn_left" else -1.0  # +yaw = towards the subject's left
        moved = sign * (f.yaw - cur.base_yaw)
        self.scores["turn_deg"] = round(max(self.scores.get("turn_deg", 0.0), moved), 1)
        if moved < c.turn_min_deg:
            return False
        measured = [fr for fr in cur.frames if fr.mesh_xy is not None]  # all are (_measurable)
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

    def _step_passed(self, f: LiveFrame) -> None:
        assert self._current is not None
        self._done_steps.append(self._current.step)
        step = self._current.step
        self.reasons.append(Reason(f"liveness.{step}_passed", f"{step.replace('_', ' ')} passed"))
        self._current = None
        if not self._stepped_up and self._risk_high() and self.config.replay_risk_action == "step_up":
            self._stepped_up = True
            extra = self._pick("turn" if self._rng.random() < 0.5 else "blink")
            self._steps.append(extra)
            self.reasons.append(
                Reason("liveness.step_up", f"replay risk {self._risk():.2f}: one more step asked")
            )
        if len(self._done_steps) == len(self._steps):
            self._finish("passed", Reason("liveness.passed", "challenge passed"), f.t)
        else:
            self._start_next(f)

    # ---- decision -------------------------------------------------------------------------------------
    def _risk(self) -> float | None:
        return float(np.median(self._risks)) if self._risks else None

    def _risk_high(self) -> bool:
        risk = self._risk()
        return risk is not None and risk >= self.config.replay_risk_threshold

    def _finish(self, status: Status, reason: Reason, t: float = 0.0) -> None:
        self.status = status
        self.reasons.append(reason)
        if self.policy == "challenge" and status != "pending":
            self._publish(status, None, 0.0, t, reason.code if status == "failed" else None)
        if status == "passed" and self._risk_high() and self.config.replay_risk_action == "flag":
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
        self, state: PromptState, step: Step | None, deadline: float, t: float, reason: str | None = None
    ) -> None:
        if self._sink is None:
            return
        index = len(self._done_steps) + (1 if step else 0)
        code = STEP_CODES[step] if step else f"challenge.{state}"
        params: dict[str, Param] = {"reason": reason} if reason is not None else {}
        self._sink.publish(
            Prompt(self.track_id, state, step, index, len(self._steps), deadline, code, t, params)
        )
