"""The door screen's state machine: prompts and face guides in, one view at a time out. Pure (injected clock).

Screens: idle -> positioning (a face is seen; a hint while it is not good enough) -> challenge (the step,
its countdown and progress; "Let's try again" on a retry) -> checking (the challenge passed) -> result
(held for result_hold_s), and enrolment at the door as a banner over all of them plus its own outcome.
The screen follows one face: the one the challenge runs for, else the largest one in view.

A view is what the page renders and the voice speaks: codes and parameters, plus the display name, which
only the local screen ever gets. A new screen kind (a PIN keypad, say) is a new `screen` value here and
one renderer in the page.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from device.contracts import FaceGuide, Prompt
from device.screen.hints import hint_for

ScreenKind = Literal["idle", "positioning", "challenge", "checking", "result", "enrol"]

FACE_GONE_S = 1.0  # no guide for this long: the face has left
CHECKING_MAX_S = 5.0  # the result follows a passed challenge at once; never wait on it longer than this
HINT_FRAMES = 2  # a hint must hold for this many guides in a row before it replaces the one shown
SWITCH_AFTER_S = 0.3  # positioning follows another face once the followed one is gone this long


@dataclass(frozen=True)
class View:
    screen: ScreenKind
    seq: int = 0
    issued_ms: float = 0.0  # wall-clock time the prompt or guide behind this view was issued (latency)
    track: int | None = None
    hint: str | None = None  # a hint code (device/screen/hints.py)
    step: str | None = None
    step_index: int = 0
    steps: int = 0
    deadline_s: float = 0.0
    retry: bool = False
    outcome: str | None = None  # a prompt code: result.* or enrol.*
    reason: str | None = None  # a reason code
    subject: str | None = None
    name: str | None = None  # display name: this local screen only
    enrolment: str | None = None  # the name (or subject id) an enrolment at the door waits for

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class _Face:
    track: int
    seen: float
    area: float
    hint: str | None = None
    pending_hint: str | None = None
    pending_count: int = 0
    last_hint: str | None = None  # the latest hint of this face, shown with a quality rejection


@dataclass
class ScreenState:
    result_hold_s: float = 4.0
    clock: Callable[[], float] = time.monotonic
    view: View = field(default_factory=lambda: View("idle"))
    _faces: dict[int, _Face] = field(default_factory=dict)
    _followed: int | None = None
    _since: float = 0.0  # when the current view began (clock)
    _enrolment: str | None = None
    _retried: set[int] = field(default_factory=set)

    # ---- inputs ---------------------------------------------------------------------------------------
    def prompt(self, prompt: Prompt, name: str | None, issued_ms: float) -> View | None:
        """The view a prompt leads to (None: the screen does not change)."""
        code = prompt.code
        if code == "enrol.started":
            self._enrolment = name or prompt.subject
            return self._show(self.view, issued_ms)
        if code in ("enrol.done", "enrol.failed"):
            self._enrolment = None
            return self._show(
                View("enrol", outcome=code, reason=prompt.reason, subject=prompt.subject), issued_ms
            )
        if prompt.state == "hint":
            return self._hint(prompt, issued_ms)
        if code == "challenge.retry" or (prompt.step is not None and prompt.state == "prompt"):
            # A retry says "Let's try again" until its fresh step comes, and that step says it too.
            retry = code == "challenge.retry" or prompt.track_id in self._retried
            if code == "challenge.retry":
                self._retried.add(prompt.track_id)
            else:
                self._retried.discard(prompt.track_id)
            self._followed = prompt.track_id
            return self._show(
                View(
                    "challenge",
                    track=prompt.track_id,
                    step=prompt.step,
                    step_index=prompt.step_index,
                    steps=prompt.steps,
                    deadline_s=prompt.deadline_s,
                    retry=retry,
                ),
                issued_ms,
            )
        if code == "challenge.passed":
            return self._show(View("checking", track=prompt.track_id), issued_ms)
        if code in ("challenge.failed", "result.rejected"):
            return self._rejected(prompt, issued_ms)
        if code.startswith("result."):
            welcome = code == "result.welcome"  # the only outcome that names anyone
            view = View("result", track=prompt.track_id, outcome=code, subject=prompt.subject)
            return self._show(replace(view, name=name) if welcome else view, issued_ms)
        return None

    def _hint(self, prompt: Prompt, issued_ms: float) -> View | None:
        """A hint prompt (the challenge's own, from a quality reason that lasts): the face's hint now."""
        hint = hint_for([prompt.code])
        face = self._faces.get(prompt.track_id)
        if face is not None:
            face.hint, face.last_hint = hint, hint or face.last_hint
        if self.view.screen not in ("idle", "positioning") or self._followed not in (None, prompt.track_id):
            return None
        if self.view.screen == "positioning" and self.view.hint == hint:
            return None
        self._followed = prompt.track_id
        return self._show(View("positioning", track=prompt.track_id, hint=hint), issued_ms)

    def _rejected(self, prompt: Prompt, issued_ms: float) -> View | None:
        face = self._faces.get(prompt.track_id)
        reason = prompt.reason
        same_track = self.view.screen == "result" and self.view.track == prompt.track_id
        if same_track and (reason is None or reason == self.view.reason):
            return None  # the outcome repeats the challenge's verdict
        hint = face.last_hint if face is not None and _about_quality(reason) else None
        view = View("result", track=prompt.track_id, outcome="result.rejected", reason=reason, hint=hint)
        return self._show(view, issued_ms)

    def guide(self, guide: FaceGuide, issued_ms: float) -> View | None:
        """Record a face guide; the view it changes (positioning, a new hint), if any."""
        now = self.clock()
        x0, y0, x1, y1 = guide.box
        face = self._faces.get(guide.track_id)
        if face is None:
            face = self._faces[guide.track_id] = _Face(guide.track_id, now, (x1 - x0) * (y1 - y0))
        face.seen, face.area = now, (x1 - x0) * (y1 - y0)
        hint = hint_for(guide.reasons, guide.mesh_presence)
        face.last_hint = hint or face.last_hint
        if hint == face.pending_hint:
            face.pending_count += 1
        else:
            face.pending_hint, face.pending_count = hint, 1
        if face.pending_count >= HINT_FRAMES:
            face.hint = hint
        if self.view.screen in ("result", "enrol", "checking", "challenge"):
            return None
        followed = self._faces.get(self._followed) if self._followed is not None else None
        other_in_view = followed is not None and followed is not face and now - followed.seen < SWITCH_AFTER_S
        if other_in_view and followed is not None and followed.area >= face.area:
            return None
        self._followed = face.track
        shown = self.view.screen == "positioning" and self.view.track == face.track
        if shown and self.view.hint == face.hint:
            return None
        return self._show(View("positioning", track=face.track, hint=face.hint), issued_ms)

    def tick(self) -> View | None:
        """Time passing: outcomes end, faces leave. The view it changes to, if any."""
        now = self.clock()
        for track in [t for t, f in self._faces.items() if now - f.seen > FACE_GONE_S]:
            del self._faces[track]
        screen = self.view.screen
        if screen in ("result", "enrol"):
            if now - self._since < self.result_hold_s:
                return None
        elif screen == "checking":
            if now - self._since < CHECKING_MAX_S:
                return None
        elif screen == "challenge":
            return None  # the challenge ends with its own prompt (passed, failed, or the track given up)
        elif screen == "idle" or (screen == "positioning" and self.view.track in self._faces):
            return None
        if self._faces:
            face = max(self._faces.values(), key=lambda f: f.area)
            self._followed = face.track
            return self._show(View("positioning", track=face.track, hint=face.hint), 0.0)
        self._followed = None
        return self._show(View("idle"), 0.0)

    # ---- output ---------------------------------------------------------------------------------------
    def _show(self, view: View, issued_ms: float | None = None) -> View:
        if view.screen in ("result", "idle") and view.track is not None:
            self._retried.discard(view.track)
        self._since = self.clock()
        stamped = view.issued_ms if issued_ms is None else issued_ms
        self.view = replace(view, seq=self.view.seq + 1, issued_ms=stamped, enrolment=self._enrolment)
        return self.view

    @property
    def followed(self) -> int | None:
        """The track whose face guide the screen draws (None: draw none)."""
        return self._followed if self.view.screen in ("positioning", "challenge") else None


def _about_quality(reason: str | None) -> bool:
    return reason is not None and (reason.startswith("quality.") or reason == "track.never_good_enough")
