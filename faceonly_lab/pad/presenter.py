"""Who stands in front of the simulated terminal: a recorded person who answers prompts, a recording that
just plays, or a photo held up and tilted on cue.

A recording cannot react to a random prompt, so the bona fide presenter is simulated the only honest way we
found: the person WAITS on the clip's own neutral frames (no annotated motion nearby, played back and forth;
of the stretches at least MIN_NEUTRAL_S long, the one where the head is stillest, as a person waiting for a
prompt holds still; an attacker's recording waits on the longest stretch),
and when the terminal shows a prompt, the presenter reacts after a human reaction time (drawn from the seed)
by playing one of the clip's own annotated segments of exactly that motion, starting a short lead-in before
the annotated onset, then waits again. What the presenter uses is what a person has: the prompt it saw and
its own ability (the annotations). What it never touches is the decision: the terminal sees only pixels, and
whether the motion is detected, fast enough, 3D, or inside the onset window is measured on those pixels.
A prompt the clip has no motion for is not answered, and the run is reported as "cannot answer".

Attackers: a replayed video either just PLAYS (from a random point, ignoring prompts) or is SCRUBBED by a hand
to a matching motion (a slower reaction: find it, press play); a photo or a screen still is held up, sways,
is tilted about its vertical axis on a turn prompt and flicked forward on a blink prompt.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from device.contracts import Prompt
from faceonly_lab.pad.manifest import Motion

# A person's reaction to a prompt shown on a screen (choice reaction, then start moving): lognormal, median
# 0.55 s, bounded to 0.25-1.6 s. An assumption from the literature on choice reaction times, NOT measured here.
REACTION_MEDIAN_S, REACTION_SIGMA, REACTION_RANGE_S = 0.55, 0.35, (0.25, 1.6)
# A hand scrubbing a recording to the right motion: find it, press play. Assumed 1.2-4 s.
SCRUB_RANGE_S = (1.2, 4.0)
LEAD_IN_S = 0.25  # a segment starts this long before its annotated onset (the person still at rest)
GUARD_S = 0.4  # neutral frames keep this far from any annotated motion
MIN_NEUTRAL_S = 1.0  # a stretch of neutral frames at least this long (else the longest there is)
REST_WINDOW_S = 0.6  # how still a stretch is: the median yaw range over windows this long (the rest rule's)


def reaction_time(rng: random.Random) -> float:
    r = REACTION_MEDIAN_S * math.exp(rng.gauss(0.0, REACTION_SIGMA))
    return float(np.clip(r, *REACTION_RANGE_S))


@dataclass
class _Plan:
    start_t: float  # virtual time the segment starts playing
    first: int
    last: int


class ClipPresenter:
    """Frames of a recorded clip, either answering prompts (`mode` "answer" or "scrub") or just playing."""

    def __init__(
        self,
        n_frames: int,
        fps: float,
        motions: Sequence[Motion],
        rng: random.Random,
        mode: str = "answer",
        step: int = 1,
        yaw: Sequence[float] | None = None,
    ) -> None:
        """`yaw`: the clip's head yaw per frame (NaN: no face), to wait where the head is stillest (else on
        the longest stretch)."""
        self.fps, self.step, self.mode = fps, step, mode
        self.dt = step / fps
        self.n = n_frames
        self.motions = list(motions)
        self.rng = rng
        self.cannot_answer: list[str] = []
        self.asked: list[str] = []
        guard = round(GUARD_S * fps)
        busy = np.zeros(n_frames, bool)
        for m in self.motions:
            busy[max(0, m.onset - guard) : min(n_frames, m.end + guard + 1)] = True
        free = [i for i in range(0, n_frames) if not busy[i]]
        self.neutral = self._stillest_run(free, yaw) or list(range(n_frames))
        self._pos = self.rng.randrange(len(self.neutral))
        self._dir = 1
        self._plan: _Plan | None = None
        self._playing: int | None = None
        self._linear = self.rng.randrange(n_frames) if mode == "play" else 0

    def _stillest_run(self, free: list[int], yaw: Sequence[float] | None) -> list[int]:
        runs: list[list[int]] = []
        for i in free:
            if runs and i == runs[-1][-1] + 1:
                runs[-1].append(i)
            else:
                runs.append([i])
        if not runs:
            return []
        longest = max(runs, key=len)
        if yaw is None:
            return longest
        candidates = [r for r in runs if len(r) >= round(MIN_NEUTRAL_S * self.fps)] or [longest]
        return min(candidates, key=lambda r: self._restlessness(r, yaw))

    def _restlessness(self, run: list[int], yaw: Sequence[float]) -> float:
        """The median yaw range (deg) over REST_WINDOW_S windows of `run` (inf: no face in it)."""
        values = np.asarray([yaw[i] for i in run], np.float64)
        width = max(2, round(REST_WINDOW_S * self.fps))
        ranges = [
            float(np.nanmax(w) - np.nanmin(w))
            for k in range(0, max(1, len(values) - width + 1))
            if np.isfinite(w := values[k : k + width]).sum() >= 2
        ]
        return float(np.median(ranges)) if ranges else math.inf

    def prompt(self, prompt: Prompt, t: float) -> None:
        if self.mode == "play" or prompt.state != "prompt" or prompt.step is None:
            return
        self.asked.append(prompt.step)
        segments = [m for m in self.motions if m.kind == prompt.step]
        if not segments:
            self.cannot_answer.append(prompt.step)
            return
        m = self.rng.choice(segments)
        delay = reaction_time(self.rng) if self.mode == "answer" else self.rng.uniform(*SCRUB_RANGE_S)
        lead = round(LEAD_IN_S * self.fps)
        self._plan = _Plan(t + delay - LEAD_IN_S, max(0, m.onset - lead), min(self.n - 1, m.end))

    def frame(self, t: float) -> int:
        """The source frame shown at virtual time `t` (called once per frame, in time order)."""
        if self.mode == "play":
            index = self._linear
            self._linear = (self._linear + self.step) % self.n
            return index
        if self._plan is not None and t >= self._plan.start_t:
            self._playing, plan = self._plan.first, self._plan
            self._plan = None
            self._segment_end = plan.last
        if self._playing is not None:
            index = self._playing
            self._playing += self.step
            if self._playing > self._segment_end:
                self._playing = None
            return index
        return self._neutral()

    def _neutral(self) -> int:
        index = self.neutral[self._pos]
        if len(self.neutral) > 1:
            nxt = self._pos + self._dir * self.step
            if not 0 <= nxt < len(self.neutral):
                self._dir = -self._dir
                nxt = min(max(self._pos + self._dir * self.step, 0), len(self.neutral) - 1)
            self._pos = nxt
        return index


class PhotoPresenter:
    """A still (print, photo, screen showing a photo) held up to the camera by a responsive attacker."""

    SIZE = (640, 480)

    def __init__(self, still_bgr: np.ndarray, rng: random.Random, fps: float = 15.0) -> None:
        self.still, self.rng, self.fps = still_bgr, rng, fps
        self.dt = 1.0 / fps
        self.cannot_answer: list[str] = []
        self.asked: list[str] = []
        self._np = np.random.default_rng(rng.randrange(1 << 30))
        self._phase = self._np.uniform(0, 2 * math.pi, 4)
        self._background = np.full((self.SIZE[1], self.SIZE[0], 3), self._np.integers(60, 200, 3), np.uint8)
        self._move: tuple[float, str] | None = None  # (start time, kind)
        # Shown ~3/4 of the frame tall: pre-scale the still to about that (warping a 4000 px photo per frame
        # costs more than the models), and draw the sensor noise from a few fixed fields.
        h = still_bgr.shape[0]
        target = self.SIZE[1] * 0.75
        if h > 1.5 * target:
            f = 1.5 * target / h
            self.still = cv2.resize(still_bgr, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
        self._height = float(np.clip(target, 0.3 * h, 3.0 * h))
        shape = (self.SIZE[1], self.SIZE[0], 3)
        self._noise = [self._np.normal(0, 3, shape).astype(np.int16) for _ in range(4)]
        self._frames = 0

    def prompt(self, prompt: Prompt, t: float) -> None:
        if prompt.state == "prompt" and prompt.step is not None:
            self.asked.append(prompt.step)
            self._move = (t + reaction_time(self.rng), prompt.step)

    def _pose(self, t: float) -> tuple[float, float, float]:
        p = self._phase
        yaw = math.radians(4) * math.sin(1.1 * t + p[0])
        pitch = math.radians(3) * math.sin(0.9 * t + p[1])
        roll = math.radians(3) * math.sin(0.7 * t + p[2])
        if self._move is not None and t >= self._move[0]:
            u = t - self._move[0]
            kind = self._move[1]
            if kind == "blink":  # flick the photo forward and back: the eyes foreshorten for ~0.2 s
                pitch += math.radians(35) * max(0.0, math.sin(math.pi * min(u / 0.25, 1.0)))
            else:  # tilt about the vertical axis to 40 deg in the asked direction, hold, come back
                sign = 1.0 if kind == "turn_left" else -1.0
                ramp = min(u / 0.7, 1.0) if u < 1.0 else max(0.0, 1.0 - (u - 1.0) / 0.7)
                yaw += sign * math.radians(40) * ramp
            if u > 2.0:
                self._move = None
        return yaw, pitch, roll

    def render(self, t: float) -> np.ndarray:
        from faceonly_lab.pad.photo import plane_homography

        yaw, pitch, roll = self._pose(t)
        centre = (self.SIZE[0] / 2 + 15 * math.sin(0.5 * t + self._phase[3]), self.SIZE[1] / 2)
        h, w = self.still.shape[:2]
        matrix = plane_homography((w, h), self._height, centre, yaw, pitch, roll)
        frame = cv2.warpPerspective(
            self.still, matrix, self.SIZE, dst=self._background.copy(), borderMode=cv2.BORDER_TRANSPARENT
        )
        self._frames += 1
        noise = self._noise[self._frames % len(self._noise)]
        frame = np.clip(frame.astype(np.int16) + noise, 0, 255).astype(np.uint8)
        ok, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, int(self._np.integers(60, 95))])
        decoded = cv2.imdecode(jpeg, cv2.IMREAD_COLOR) if ok else None
        return frame if decoded is None else np.asarray(decoded, np.uint8)
