"""Anti-passback on the terminal: a second way `in` without a way `out` in between is refused for a while.

Each person's last passage here (direction and wall-clock time) is kept on disk (atomic, survives a restart).
At an `in` door an entry is refused when the person's last passage was an entry less than the door's
`anti_passback_s` ago; an `out` door always lets out and records it, so in / out / in passes and in / in does
not. The period forgives what one terminal cannot see (an exit through another terminal's door): the backend
sees every door and reports what crosses them (faceonly_backend/passback.py). Wall-clock times, because the rule
must outlive a restart; a clock stepped back only makes the refusal last longer, never shorter.
"""

from __future__ import annotations

import json
from pathlib import Path

from device.infra.atomicfile import write_atomic
from device.wire.bounded import PayloadError, loads_bounded

MAX_FILE = 64 * 1024 * 1024
KEEP_S = 7 * 86_400  # the longest anti_passback_s a policy may set


class Passages:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._last: dict[str, tuple[str, float]] = {}
        try:
            data = loads_bounded(self.path.read_bytes(), MAX_FILE)
            self._last = {str(k): (str(v[0]), float(v[1])) for k, v in data.items()}
        except FileNotFoundError:
            pass
        except (PayloadError, AttributeError, TypeError, ValueError, IndexError) as exc:
            raise ValueError(f"{self.path}: the record of passages is damaged ({exc})") from None

    def refuses(self, subject: str, direction: str, period_s: float, now: float) -> bool:
        """Whether an `in` now would be a second entry within `period_s` of the last one."""
        if direction != "in" or period_s <= 0:
            return False
        last = self._last.get(subject)
        return last is not None and last[0] == "in" and now - last[1] < period_s

    def record(self, subject: str, direction: str, now: float) -> None:
        """A passage that happened (before the gate opens: a crash can lose an opening, never the record)."""
        if direction not in ("in", "out"):
            return
        self._last = {k: v for k, v in self._last.items() if now - v[1] < KEEP_S}
        self._last[subject] = (direction, now)
        write_atomic(self.path, json.dumps({k: list(v) for k, v in self._last.items()}).encode())

    def __len__(self) -> int:
        return len(self._last)
