"""The alarms health states explicitly: camera stall, auth failure, disk, duplicate terminal id, stage failures.

Each alarm has the same shape in health, `{"active": bool, "reason": str | null, "since": unix s | null}`,
so a dashboard (or Home Assistant) reads them all the same way. The service loop owns one `Alarms`
and feeds it what it sees (frames, connection results, outbox stats, takeover evidence); `snapshot`
computes every alarm now, and each raise and each clear is logged once (one line per state change,
with structured fields for the journal), never once per health tick.

Rules (docs/operations.md, "Health", documents them):
- camera_stall: the source ended with an error, or no frame came for `stall_s` while it should run.
  A replay that reached its end is finished, not stalled.
- auth_failure: the broker refused our credentials or permissions at CONNECT, or refused a publish
  as not authorised, since the last successful connect.
- disk: the outbox reports a storage fault (events held in memory), or the state filesystem has less
  free space than the outbox may still need (its byte bound minus what it holds, plus the reserve).
- duplicate_id: another client used our terminal id within the last `duplicate_hold_s`.
- stage_failures: a processing stage (detector, mesh, liveness, embedder, matcher, protect) raised
  STAGE_FAILURES_ALARM times or more within the last minute (device.vision.faults); each such failure
  dropped a frame or a track and the service went on. It clears a minute after the last one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

NAMES = ("camera_stall", "auth_failure", "disk", "duplicate_id", "stage_failures")
DUPLICATE_HOLD_S = 300.0  # two terminals with one id kick each other off every few seconds: hold it
STAGE_FAILURES_ALARM = 3  # one failure can be a freak input; three within the recent window is a fault


@dataclass(frozen=True)
class Alarm:
    active: bool
    reason: str | None = None
    since: float | None = None  # wall-clock unix seconds when it became active

    def to_dict(self) -> dict[str, Any]:
        return {"active": self.active, "reason": self.reason, "since": self.since}


class Alarms:
    def __init__(
        self,
        stall_s: float,
        duplicate_hold_s: float = DUPLICATE_HOLD_S,
        *,
        clock=time.monotonic,
        wall=time.time,
    ) -> None:
        self.stall_s = stall_s
        self.duplicate_hold_s = duplicate_hold_s
        self.clock, self.wall = clock, wall
        self._last_frame = clock()  # the grace period starts with the service
        self._auth: str | None = None
        self._duplicate: tuple[float, str] | None = None  # (monotonic time, evidence)
        self._state: dict[str, Alarm] = {name: Alarm(False) for name in NAMES}

    # ---- what the loop saw ------------------------------------------------------------------

    def frame(self) -> None:
        self._last_frame = self.clock()

    def connected(self) -> None:
        self._auth = None

    def auth_refused(self, reason: str) -> None:
        self._auth = reason

    def taken_over(self, evidence: str) -> None:
        self._duplicate = (self.clock(), evidence)

    # ---- health -----------------------------------------------------------------------------

    def snapshot(
        self,
        source: Mapping[str, Any],
        outbox: Mapping[str, Any],
        faults: Mapping[str, Any] | None = None,
    ) -> dict[str, dict[str, Any]]:
        """Every alarm now (and a log line for each one that changed): the health `alarms` object.
        `faults`: StageFaults.snapshot() of every stage ({recent, last})."""
        now = self.clock()
        reasons = {
            "camera_stall": self._camera(source, now),
            "auth_failure": self._auth,
            "disk": _disk(outbox),
            "duplicate_id": self._duplicate_reason(now),
            "stage_failures": _stage_failures(faults or {}),
        }
        for name, reason in reasons.items():
            self._update(name, reason)
        return {name: alarm.to_dict() for name, alarm in self._state.items()}

    @property
    def active(self) -> list[str]:
        return [name for name, alarm in self._state.items() if alarm.active]

    def _camera(self, source: Mapping[str, Any], now: float) -> str | None:
        if source.get("error"):
            return f"the frame source stopped: {source['error']}"
        if source.get("ended"):
            return None  # a replay that reached its end
        idle = now - self._last_frame
        if idle >= self.stall_s:
            return f"no frame for {idle:.0f} s (limit {self.stall_s:g} s)"
        return None

    def _duplicate_reason(self, now: float) -> str | None:
        if self._duplicate is None or now - self._duplicate[0] > self.duplicate_hold_s:
            return None
        return f"another client uses this terminal's id: {self._duplicate[1]}"

    def _update(self, name: str, reason: str | None) -> None:
        old = self._state[name]
        if reason is None:
            if old.active:
                log.warning("alarm cleared: %s", name, extra=_fields(name, "cleared"))
                self._state[name] = Alarm(False)
            return
        if old.active:
            self._state[name] = Alarm(True, reason, old.since)  # the reason text may move (a count)
            return
        self._state[name] = Alarm(True, reason, round(self.wall(), 3))
        log.error("alarm raised: %s: %s", name, reason, extra=_fields(name, "raised"))


def _disk(outbox: Mapping[str, Any]) -> str | None:
    fault = outbox.get("storage_fault")
    if fault:
        return str(fault)
    free, reserve = int(outbox.get("free_bytes", 0)), int(outbox.get("reserve_bytes", 0))
    room = max(0, int(outbox.get("max_bytes", 0)) - int(outbox.get("bytes", 0)))
    if free < reserve + room:
        return (
            f"low space on the state filesystem: {_mb(free)} free, the outbox may need {_mb(room)} "
            f"more plus the {_mb(reserve)} reserve"
        )
    return None


def _stage_failures(faults: Mapping[str, Any]) -> str | None:
    recent = int(faults.get("recent", 0))
    if recent < STAGE_FAILURES_ALARM:
        return None
    return f"{recent} processing stage failures in the last minute (last: {faults.get('last')})"


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def _fields(name: str, change: str) -> dict[str, str]:
    """Journal fields (device.infra.logsetup sends upper-case extras as fields; plain logs ignore them)."""
    return {"FACEONLY_ALARM": name, "FACEONLY_CHANGE": change}
