"""The door screen's state machine: prompts and face guides in, one view at a time out. Pure (injected clock).

Screens: idle -> positioning (a face is seen; a hint while it is not good enough) -> challenge (the step,
its countdown and progress; "Let's try again" on a retry) -> checking (the challenge passed) -> result
(held for result_hold_s), and enrolment at the door as a banner over all of them plus its own outcome.
The screen follows one face: the one the challenge runs for, else the largest one in view.

A view is what the page renders and the voice speaks: codes and parameters, plus the display name, which
only the local screen ever gets. A new screen kind is a new `screen` value here and one renderer in the page.

Under a door policy (device/access) every view also says how the door lets people in (its mode, the
credentials it takes, where the alternative is), and two more screens exist: `keypad` (the person types their
number, then their PIN; the state keeps the digits, a view only says how many PIN digits there are) and
`look` (a credential was accepted: now the face). While the keypad is open the face's challenge does not
take the screen over; an outcome does.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from device.contracts import FaceGuide, Prompt
from device.screen.hints import hint_for

ScreenKind = Literal["idle", "positioning", "challenge", "checking", "result", "enrol", "keypad", "look"]
KeypadStage = Literal["number", "pin"]

FACE_GONE_S = 1.0  # no guide for this long: the face has left
CHECKING_MAX_S = 5.0  # the result follows a passed challenge at once; never wait on it longer than this
HINT_FRAMES = 2  # a hint must hold for this many guides in a row before it replaces the one shown
SWITCH_AFTER_S = 0.3  # positioning follows another face once the followed one is gone this long
LOOK_MAX_S = (
    130.0  # "now look at the camera" ends with the face's outcome, or the claim's timeout, before this
)
KEYPAD_IDLE_S = 20.0  # an open keypad nobody touches for this long closes (and forgets what was typed)
MAX_NUMBER, MIN_PIN, MAX_PIN = 12, 4, 12
KEYS = frozenset({"open", "back", "ok", "cancel", *"0123456789"})
DIRECTION_KEYS = frozenset({"in", "out"})  # a `both` door: which way the person goes


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
    # the door (under a door policy): its mode, what it takes, the alternative door's label, keypad or not
    mode: str | None = None
    takes: tuple[str, ...] | None = None
    alternative_door: str | None = None
    keypad_ok: bool = False
    direction: str | None = None  # the door's: in, out or both (both: the screen offers In / Out)
    chosen: str | None = None  # at a `both` door, the way the person chose
    keypad: KeypadStage | None = None  # the keypad screen's stage
    typed: str | None = None  # the keypad number as typed (not a secret; the PIN never is in a view)
    masked: int = 0  # how many PIN digits are typed

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
    door: dict[str, Any] | None = None
    _number: str = ""
    _pin: str = ""
    _key_at: float = 0.0

    # ---- inputs ---------------------------------------------------------------------------------------
    def prompt(self, prompt: Prompt, name: str | None, issued_ms: float) -> View | None:
        """The view a prompt leads to (None: the screen does not change)."""
        if self.view.screen == "keypad" and prompt.state != "feedback":
            return None  # someone is typing: the face's challenge waits its turn
        if prompt.code.startswith("access."):
            return self._door_prompt(prompt, issued_ms)
        return self._face_prompt(prompt, name, issued_ms)

    def _face_prompt(self, prompt: Prompt, name: str | None, issued_ms: float) -> View | None:
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

    def _door_prompt(self, prompt: Prompt, issued_ms: float) -> View:
        """access.checking (a PIN is checked), access.look (now the face), access.claim_first."""
        if prompt.code == "access.checking":
            return self._show(View("checking", outcome=prompt.code), issued_ms)
        if prompt.code == "access.look":
            return self._show(View("look", subject=prompt.subject), issued_ms)
        return self._show(View("result", track=prompt.track_id, outcome=prompt.code), issued_ms)

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
        if self.view.screen in ("result", "enrol", "checking", "challenge", "keypad"):
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
        held = {"result": self.result_hold_s, "enrol": self.result_hold_s, "checking": CHECKING_MAX_S}
        held["look"] = LOOK_MAX_S
        if screen == "keypad":
            if now - self._key_at < KEYPAD_IDLE_S:
                return None
            self._clear_keypad()
        elif screen in held:
            if now - self._since < held[screen]:
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

    # ---- the door and its keypad ---------------------------------------------------------------------
    def set_door(self, door: dict[str, Any] | None) -> View:
        """How the door lets people in now (None: no door policy); the current view, stamped again."""
        self.door = door
        if self.view.screen == "keypad" and not self.keypad_ok:
            self._clear_keypad()
            return self._show(View("idle"))
        return self._show(self.view)

    @property
    def keypad_ok(self) -> bool:
        return bool(self.door and self.door.get("keypad"))

    def key(self, key: str, issued_ms: float) -> tuple[View | None, tuple[str, str] | None]:
        """A key pressed on the page: the view it leads to, and (number, PIN) when an entry is complete."""
        if key not in KEYS or not self.keypad_ok:
            return None, None
        self._key_at = self.clock()
        if key == "open":
            self._clear_keypad()
            return self._keypad(issued_ms), None
        if self.view.screen != "keypad":
            return None, None
        pin_stage = self.view.keypad == "pin"
        if key == "cancel":
            self._clear_keypad()
            return self._show(View("idle"), issued_ms), None
        if key == "back":
            if pin_stage:
                self._pin = self._pin[:-1]
            else:
                self._number = self._number[:-1]
        elif key == "ok":
            if not pin_stage:
                return (self._keypad(issued_ms, "pin") if self._number else None), None
            if len(self._pin) < MIN_PIN:
                return None, None
            entry = (self._number, self._pin)
            self._clear_keypad()
            return None, entry  # the terminal answers with access.checking
        elif pin_stage and len(self._pin) < MAX_PIN:
            self._pin += key
        elif not pin_stage and len(self._number) < MAX_NUMBER:
            self._number += key
        return self._keypad(issued_ms, "pin" if pin_stage else "number"), None

    def _keypad(self, issued_ms: float, stage: KeypadStage = "number") -> View:
        view = View("keypad", keypad=stage, typed=self._number, masked=len(self._pin))
        return self._show(view, issued_ms)

    def _clear_keypad(self) -> None:
        self._number = self._pin = ""

    # ---- output ---------------------------------------------------------------------------------------
    def _show(self, view: View, issued_ms: float | None = None) -> View:
        if view.screen in ("result", "idle") and view.track is not None:
            self._retried.discard(view.track)
        if view.screen != "keypad":
            self._clear_keypad()
        self._since = self.clock()
        stamped = view.issued_ms if issued_ms is None else issued_ms
        door = self.door or {}
        self.view = replace(
            view,
            seq=self.view.seq + 1,
            issued_ms=stamped,
            enrolment=self._enrolment,
            mode=door.get("mode"),
            takes=tuple(door.get("credentials") or ()) or None,
            alternative_door=door.get("alternative_door"),
            keypad_ok=self.keypad_ok,
            direction=door.get("direction"),
            chosen=door.get("chosen"),
        )
        return self.view

    @property
    def followed(self) -> int | None:
        """The track whose face guide the screen draws (None: draw none)."""
        return self._followed if self.view.screen in ("positioning", "challenge") else None


def _about_quality(reason: str | None) -> bool:
    return reason is not None and (reason.startswith("quality.") or reason == "track.never_good_enough")
