"""The replay cache: nonces of accepted signed commands, kept (on disk) until their window has passed.

A nonce is recorded, and the file replaced atomically, before its command runs: a crash after the
command cannot make the same signed request acceptable again. Only requests whose signature
verified are recorded, so the cache can be filled only by the holder of the command key; it is
bounded all the same, and when full of live nonces new commands are refused (busy), not forgotten.

A nonce is kept until its window has passed by the wall clock (the file's only clock, across restarts)
AND by the monotonic clock (from when it was added or loaded): NTP stepping the terminal's clock back
after a boot cannot make a request seen before the step acceptable again.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

from device.infra.atomicfile import write_atomic

log = logging.getLogger(__name__)

NONCES_FILE = "command-nonces.json"


class CacheFull(Exception):
    """Every slot holds a nonce that is still within its window."""


class ReplayCache:
    def __init__(
        self,
        path: Path,
        capacity: int = 10_000,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path)
        self.capacity = capacity
        self.clock = clock
        self.monotonic = monotonic
        self._until: dict[str, float] = {}  # wall clock, as stored
        self._hold: dict[str, float] = {}  # the same moment on the monotonic clock of this run
        self._load()

    def _load(self) -> None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            # Fail closed would mean refusing every command forever; instead nothing is remembered,
            # and the window bounds what could be replayed. Said loudly.
            log.error("replay cache %s unreadable (%s); starting empty", self.path, exc)
            return
        if isinstance(data, dict):
            self._until = {
                str(k): float(v)
                for k, v in data.items()
                if isinstance(v, int | float) and not isinstance(v, bool)
            }
        now, mono = self.clock(), self.monotonic()
        self._hold = {n: mono + (t - now) for n, t in self._until.items()}
        self._prune()

    def _live(self, nonce: str, now: float, mono: float) -> bool:
        return self._until[nonce] > now or self._hold[nonce] > mono

    def _prune(self) -> None:
        now, mono = self.clock(), self.monotonic()
        self._until = {n: t for n, t in self._until.items() if self._live(n, now, mono)}
        self._hold = {n: self._hold[n] for n in self._until}

    def seen(self, nonce: str) -> bool:
        return nonce in self._until and self._live(nonce, self.clock(), self.monotonic())

    def add(self, nonce: str, until: float) -> None:
        """Remember `nonce` until `until` (unix seconds), durably. Raises CacheFull or OSError."""
        self._prune()
        if len(self._until) >= self.capacity:
            raise CacheFull(f"{len(self._until)} live nonces")
        updated = {**self._until, nonce: until}
        write_atomic(self.path, json.dumps(updated, separators=(",", ":")).encode("utf-8"))
        self._until = updated
        self._hold[nonce] = self.monotonic() + (until - self.clock())

    def __len__(self) -> int:
        return len(self._until)
