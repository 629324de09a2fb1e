"""The door screen as the terminal runs it: a prompt and guide sink for the frame loop, a screen thread that
owns the state machine, the loopback page server and the optional voice.

The frame loop's only cost is one `put_nowait` per prompt and, per face and frame, a dictionary slot
holding its latest guide (no thread is woken for a guide: the screen thread collects them at guide_rate_hz);
the state machine, the JSON, the browsers and the speech all run on other threads. Display names
are looked up on the loop thread (the gallery is the loop's) and travel only on this local channel.
"""

from __future__ import annotations

import logging
import queue
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from device.config.screen import ScreenConfig
from device.contracts import FaceGuide, Prompt
from device.screen.catalogue import Catalogue
from device.screen.server import Hub, ScreenServer
from device.screen.state import DIRECTION_KEYS, ScreenState, View
from device.screen.words import words

log = logging.getLogger(__name__)

INBOX = 512
TICK_S = 0.1
GUIDE_DIGITS = 3  # 1/1000 of the frame: finer than any screen draws it
HINT_REPEAT_S = 5.0

Names = Callable[[str], str | None]
Keypad = Callable[[str, str], bool]  # (number, PIN) -> taken


@dataclass(frozen=True)
class _In:
    prompt: Prompt | None
    guide: FaceGuide | None
    name: str | None
    issued_ms: float
    key: str | None = None  # a keypad key pressed on the page
    door: dict[str, Any] | None = None  # how the door lets people in (set_door)
    door_set: bool = False


class ScreenSink:
    """The frame loop's side: a PromptSink that only enqueues, a GuideSink that only fills a slot."""

    def __init__(self, inbox: queue.Queue[_In], listening: Callable[[], bool]) -> None:
        self._inbox, self._listening = inbox, listening
        self._names: Names | None = None
        self._guides: dict[int, _In] = {}  # the latest guide of each face, until the screen thread takes it
        self._lock = threading.Lock()
        self.dropped = 0
        self.replaced = 0

    def set_names(self, names: Names | None) -> None:
        """Where display names come from (the identity component's gallery; None: no names)."""
        self._names = names

    def publish(self, prompt: Prompt) -> None:
        name = self._names(prompt.subject) if self._names is not None and prompt.subject else None
        self._put(_In(prompt, None, name, time.time() * 1000.0))

    def guide(self, guide: FaceGuide) -> None:
        item = _In(None, guide, None, time.time() * 1000.0)
        with self._lock:
            self.replaced += guide.track_id in self._guides
            self._guides[guide.track_id] = item

    def take_guides(self) -> list[_In]:
        """The latest guide of each face since the last call (the screen thread's side)."""
        with self._lock:
            items, self._guides = list(self._guides.values()), {}
        return items

    @property
    def guides_waiting(self) -> bool:
        return bool(self._guides)

    def _put(self, item: _In) -> None:
        try:
            self._inbox.put_nowait(item)
        except queue.Full:
            self.dropped += 1

    def listening(self) -> bool:
        return self._listening()


def guide_message(guide: FaceGuide, issued_ms: float) -> dict[str, Any]:
    def r(v: float) -> float:
        return round(float(v), GUIDE_DIGITS)

    return {
        "track": guide.track_id,
        "box": [r(v) for v in guide.box],
        "points": [[r(x), r(y)] for x, y in guide.points],
        "aspect": r(guide.aspect),
        "issued_ms": round(issued_ms, 1),
    }


class DoorScreen:
    """Built from [screen]; `start()` returns the page URL. `sink` goes into the terminal's prompt channel."""

    def __init__(
        self, cfg: ScreenConfig, voice: Any = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.cfg = cfg
        self.catalogue = Catalogue(cfg.language)
        self.state = ScreenState(cfg.result_hold_s, clock)
        self.hub = Hub()
        self._inbox: queue.Queue[_In] = queue.Queue(INBOX)
        self.voice = voice
        self.sink = ScreenSink(self._inbox, self._listening)
        self._guide_period = 1.0 / cfg.guide_rate_hz
        self._taking = False
        # Where a complete keypad entry and In / Out go (the door policy's component).
        self.on_keypad: Keypad | None = None
        self.on_direction: Callable[[str], bool] | None = None
        self.keypad_token = secrets.token_urlsafe(24)
        settings = {
            "language": cfg.language,
            "site_name": cfg.site_name,
            "alternative": cfg.alternative,
            "keypad_token": self.keypad_token,
            "texts": self.catalogue.table(),
        }
        self.server = ScreenServer(cfg.host, cfg.port, self.hub, settings, self.key)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="door-screen", daemon=True)
        self.views = 0
        self._said, self._said_at = "", 0.0
        self._publish(self.state.view)

    def _listening(self) -> bool:
        return self.hub.clients > 0 or self.voice is not None

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> str:
        if self.voice is not None:
            self.voice.start()
        self._thread.start()
        url = self.server.start()
        log.info("door screen at %s (%s)", url, self.cfg.language)
        return url

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self.server.stop()
        if self.voice is not None:
            self.voice.stop()

    def settle(self, timeout: float) -> bool:
        """Whether everything handed over so far has been handled within `timeout` (tests, benchmarks)."""
        deadline = time.monotonic() + timeout
        while self._inbox.unfinished_tasks or self.sink.guides_waiting or self._taking:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.002)
        return True

    def set_door(self, door: dict[str, Any] | None) -> None:
        """How the door lets people in (any thread; None: no door policy): the idle words, the keypad, the
        alternative the screen points at."""
        self.sink._put(_In(None, None, None, time.time() * 1000.0, door=door, door_set=True))

    def key(self, key: str) -> bool:
        """A key pressed on the page (the server's threads); False when the screen cannot take it now."""
        if key in DIRECTION_KEYS:
            door = self.state.door or {}
            return (
                door.get("direction") == "both" and self.on_direction is not None and self.on_direction(key)
            )
        if self.on_keypad is None or not self.state.keypad_ok:
            return False
        before = self.sink.dropped
        self.sink._put(_In(None, None, None, time.time() * 1000.0, key=key))
        return self.sink.dropped == before

    def describe(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "pages": self.hub.clients,
            "views": self.views,
            "dropped": self.sink.dropped,
            "voice": self.voice is not None,
        }

    # ---- the screen thread ----------------------------------------------------------------------------
    def _run(self) -> None:
        next_guides = next_tick = time.monotonic()
        while not self._stop.is_set():
            wake = min(next_guides, next_tick)
            try:
                item = self._inbox.get(timeout=max(0.0, wake - time.monotonic()))
            except queue.Empty:
                item = None
            if item is not None:
                self._handle(item)
                self._inbox.task_done()
            now = time.monotonic()
            if now >= next_guides:  # at most guide_rate_hz guides per face reach the pages
                next_guides = now + self._guide_period
                self._taking = True
                for guide in self.sink.take_guides():
                    self._handle(guide)
                self._taking = False
            if now >= next_tick:
                next_tick = now + TICK_S
                view = self.state.tick()
                if view is not None:
                    self._publish(view)

    def _handle(self, item: _In) -> None:
        if item.door_set:
            self._publish(self.state.set_door(item.door))
            return
        if item.key is not None:
            view, entry = self.state.key(item.key, item.issued_ms)
            if view is not None:
                self._publish(view)
            if entry is not None and self.on_keypad is not None:
                self.on_keypad(*entry)  # the PIN goes on to the terminal's loop, nowhere else
            return
        if item.prompt is not None:
            view = self.state.prompt(item.prompt, item.name, item.issued_ms)
        elif item.guide is not None:
            view = self.state.guide(item.guide, item.issued_ms)
            if view is not None:
                self._publish(view)
            if self.state.followed == item.guide.track_id:
                self.hub.publish("guide", guide_message(item.guide, item.issued_ms))
            return
        else:
            return
        if view is not None:
            self._publish(view)

    def _publish(self, view: View) -> None:
        self.views += 1
        self.hub.publish("view", view.to_dict(), current=True)
        if self.voice is not None:
            self._speak(view)

    def _speak(self, view: View) -> None:
        """Every new instruction and outcome; a hint once it changes, or again after HINT_REPEAT_S."""
        if view.screen == "idle" or (view.screen == "positioning" and view.hint is None):
            return
        text = words(view, self.catalogue, self.cfg.alternative).spoken()
        now = time.monotonic()
        if view.screen == "positioning" and text == self._said and now - self._said_at < HINT_REPEAT_S:
            return
        if view.screen == "keypad" and text == self._said:
            return  # each key makes a view; the instruction is said once per stage
        self._said, self._said_at = text, now
        assert self.voice is not None
        self.voice.say(text)
