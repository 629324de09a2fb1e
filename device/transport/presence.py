"""Is another client using this terminal's id? Two signals, because brokers differ.

- An MQTT 5 DISCONNECT with reason "Session taken over" (0x8E), which brokers that send it use when
  a second client connects with our client id (see link.TAKEN_OVER).
- Brokers that just close the old connection (mosquitto 2.0.11 does) leave a trace on our own status
  topic instead: the terminal subscribes to it, and an `online` status published after this process
  started, by a process with another start time, is a second terminal running with our id. A
  retained status from before we started (our own earlier run) does not count.
"""

from __future__ import annotations

from device.wire.bounded import PayloadError, loads_bounded

MAX_STATUS_BYTES = 64 * 1024  # a status is a few KB; anything larger on our topic is not one


def foreign_birth(raw: bytes, own_started_at: float) -> str | None:
    """A description of the other instance if `raw` (a message on our status topic) is its birth; else None."""
    try:
        status = loads_bounded(raw, MAX_STATUS_BYTES)
    except PayloadError:
        return None
    if not isinstance(status, dict) or status.get("state") != "online":
        return None
    started, created = status.get("started_at"), status.get("created_at")
    if not isinstance(started, int | float) or not isinstance(created, int | float):
        return None
    if started == own_started_at or created < own_started_at:
        return None  # ours, or a retained leftover of an earlier run
    return f"an instance started at {started:.3f} published online status at {created:.3f}"
