"""The replay cache: nonces of accepted signed commands, kept (on disk) until their window has passed.

A nonce is recorded, and the file replaced atomically, before its command runs: a crash after the
command cannot make the same signed request acceptable again. Only requests whose signature
verified are recorded, so the cache can be filled only by the holder of the command key; it is
bounded all the same, and when full of live nonces new commands are refused (busy), not forgotten.
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
    def __init__(self, path: Path, capacity: int = 10_000, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.capacity = capacity
        self.clock = clock
        self._until: dict[str, float] = {}
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
        self._prune()

    def _prune(self) -> None:
        now = self.clock()
        self._until = {n: t for n, t in self._until.items() if t > now}

    def seen(self, nonce: str) -> bool:
        until = self._until.get(nonce)
        return until is not None and until > self.clock()

    def add(self, nonce: str, until: float) -> None:
        """Remember `nonce` until `until` (unix seconds), durably. Raises CacheFull or OSError."""
        self._prune()
        if len(self._until) >= self.capacity:
            raise CacheFull(f"{len(self._until)} live nonces")
        updated = {**self._until, nonce: until}
        write_atomic(self.path, json.dumps(updated, separators=(",", ":")).encode("utf-8"))
        self._until = updated

    def __len__(self) -> int:
        return len(self._until)
