"""Badge readers: a USB HID reader (or a Wiegand reader behind a Wiegand-to-USB converter) types the card
number and Enter, like a keyboard; the terminal reads its key events through evdev, grabbed, so the
keystrokes reach nothing else (not the kiosk browser), and hands each code to `on_code`.

`BadgeReader` is the small interface the terminal uses; two implementations share the key decoding:
- `EvdevReader` (`[access] badge_reader = "evdev:/dev/input/by-id/...-event-kbd"`): python-evdev on the device;
- `FifoReader` (`"stand-in:/path/fifo"`): the same `struct input_event` records the kernel gives, read from a
  FIFO. It is the tests' stand-in for the reader: python-evdev's own test double (UInput) needs /dev/uinput,
  which this CI machine's kernel does not have; the records and the decoding are the kernel's and evdev's.

A code is the keys typed before Enter (digits and letters, at most MAX_CODE), typed as a reader types them:
a pause of more than KEY_GAP_S between keys starts over, so a person pressing keys on a keyboard that is not
a reader does not assemble a badge. Codes go nowhere but `on_code` (never a log line).
"""

from __future__ import annotations

import logging
import os
import select
import struct
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)

MAX_CODE = 32
KEY_GAP_S = 0.5
EVENT = struct.Struct("llHHi")  # struct input_event: timeval (sec, usec), type, code, value
EV_KEY = 1
KEY_DOWN = 1


def _keymap() -> dict[int, str]:
    from evdev import ecodes  # the `access` extra

    keys: dict[int, str] = {}
    for digit in "0123456789":
        keys[ecodes.ecodes[f"KEY_{digit}"]] = digit
        keys[ecodes.ecodes[f"KEY_KP{digit}"]] = digit
    for letter in "ABCDEFGHIJKLMNOPQRSTUVWXYZ":
        keys[ecodes.ecodes[f"KEY_{letter}"]] = letter
    return keys


def _enter_keys() -> set[int]:
    from evdev import ecodes

    return {ecodes.KEY_ENTER, ecodes.KEY_KPENTER}


class KeyDecoder:
    """Key events (seconds, type, code, value) in, a badge code out at Enter."""

    def __init__(self) -> None:
        self._keys, self._enter = _keymap(), _enter_keys()
        self._typed: list[str] = []
        self._last = 0.0
        self.too_long = 0

    def feed(self, seconds: float, type_: int, code: int, value: int) -> str | None:
        if type_ != EV_KEY or value != KEY_DOWN:
            return None
        if self._typed and seconds - self._last > KEY_GAP_S:
            self._typed = []
        self._last = seconds
        if code in self._enter:
            typed, self._typed = "".join(self._typed), []
            return typed or None
        char = self._keys.get(code)
        if char is None:
            return None  # shift and the like
        if len(self._typed) >= MAX_CODE:
            self.too_long += 1
            self._typed = []
            return None
        self._typed.append(char)
        return None


class BadgeReader(Protocol):
    def start(self, on_code: Callable[[str], None]) -> None: ...

    def stop(self) -> None: ...

    def stats(self) -> dict[str, Any]: ...


class _ThreadedReader(ABC):
    """A reader thread that decodes key events until `stop`; subclasses say where events come from."""

    name = "badge"

    def __init__(self) -> None:
        self.decoder = KeyDecoder()
        self._stop_r, self._stop_w = os.pipe()
        self._thread: threading.Thread | None = None
        self.codes = 0
        self.errors = 0

    def start(self, on_code: Callable[[str], None]) -> None:
        self._thread = threading.Thread(target=self._run, args=(on_code,), name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        os.write(self._stop_w, b"x")
        if self._thread is not None:
            self._thread.join(5)
        os.close(self._stop_r)
        os.close(self._stop_w)

    def _run(self, on_code: Callable[[str], None]) -> None:
        try:
            self._read(on_code)
        except OSError as exc:
            self.errors += 1
            log.error("badge reader stopped: %s", exc.strerror or exc)

    def _deliver(
        self, on_code: Callable[[str], None], seconds: float, type_: int, code: int, value: int
    ) -> None:
        found = self.decoder.feed(seconds, type_, code, value)
        if found is not None:
            self.codes += 1
            on_code(found)

    def _wait(self, fd: int) -> bool:
        """Whether `fd` is readable (False: stop was asked for)."""
        ready, _, _ = select.select([fd, self._stop_r], [], [])
        return self._stop_r not in ready

    @abstractmethod
    def _read(self, on_code: Callable[[str], None]) -> None:
        """Read key events until `_wait` says stop, handing each to `_deliver`."""

    def stats(self) -> dict[str, Any]:
        return {"codes": self.codes, "errors": self.errors, "too_long": self.decoder.too_long}


class EvdevReader(_ThreadedReader):
    name = "badge-evdev"

    def __init__(self, path: Path) -> None:
        super().__init__()
        from evdev import InputDevice

        self.device = InputDevice(str(path))
        self.device.grab()  # its keystrokes are the terminal's alone

    def _read(self, on_code: Callable[[str], None]) -> None:
        try:
            while self._wait(self.device.fd):
                for event in self.device.read():
                    self._deliver(on_code, event.timestamp(), event.type, event.code, event.value)
        finally:
            self.device.ungrab()
            self.device.close()


class FifoReader(_ThreadedReader):
    name = "badge-stand-in"

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = Path(path)
        if not self.path.exists():
            os.mkfifo(self.path, 0o600)

    def _read(self, on_code: Callable[[str], None]) -> None:
        # O_RDWR: the FIFO stays open (no EOF) while writers come and go.
        fd = os.open(self.path, os.O_RDWR | os.O_NONBLOCK)
        pending = b""
        try:
            while self._wait(fd):
                pending += os.read(fd, 4096)
                whole = len(pending) - len(pending) % EVENT.size
                for sec, usec, type_, code, value in EVENT.iter_unpack(pending[:whole]):
                    self._deliver(on_code, sec + usec / 1e6, type_, code, value)
                pending = pending[whole:]
        finally:
            os.close(fd)


def build_reader(spec: str) -> BadgeReader | None:
    """The reader `[access] badge_reader` names (None for "none"); OSError when the device cannot be used."""
    kind, _, path = spec.partition(":")
    if kind == "evdev":
        return EvdevReader(Path(path))
    if kind == "stand-in":
        return FifoReader(Path(path))
    return None
