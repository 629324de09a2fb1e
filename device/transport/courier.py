"""Moves outbox records to the broker and retires them on PUBACK (at-least-once delivery).

At most `window` records are handed to paho at a time, oldest first. paho resends its unacked QoS 1
messages after a reconnect within this process; after a restart the outbox still holds them and
they are published again (consumers drop duplicates by payload id). A record the broker refuses
(MQTT 5 failure reason code, e.g. not authorized) stays in the outbox and is retried after the
next reconnect, where it ages out like any other if the refusal persists.

Every record in flight has a deadline (`ack_timeout_s` on the monotonic clock, restarted when a
connection comes up, since paho then resends it). An acknowledgement that never comes (lost by a
proxy, a broker bug) therefore cannot hold a slot of the window for good: past its deadline paho is
told to forget the message and the record is sent again as a new message. A record paho did not take
(Link.publish returned None) is simply tried again on the next turn.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from device.transport.envelope import Meta, encode
from device.transport.link import Acked, Connected, Disconnected, Link, LinkEvent
from device.transport.outbox import Outbox

log = logging.getLogger(__name__)


@dataclass
class _InFlight:
    record_id: str
    deadline: float  # monotonic


class Courier:
    def __init__(
        self,
        outbox: Outbox,
        link: Link,
        window: int,
        ack_timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.outbox = outbox
        self.link = link
        self.window = window
        self.ack_timeout_s = ack_timeout_s
        self._clock = clock
        self._inflight: dict[int, _InFlight] = {}  # paho mid -> record
        self._refused: set[str] = set()
        self.stats_counts = {
            "queued": 0,
            "published": 0,
            "refused": 0,
            "store_failed": 0,
            "reconnects": 0,
            "ack_timeouts": 0,
            "not_taken": 0,
        }

    def queue(self, topic: str, payload: dict[str, Any]) -> bool:
        """Store the event durably, then try to send it. False if it could not be stored."""
        data = encode(payload)
        try:
            self.outbox.put(payload["id"], topic, payload["type"], data, payload.get("expires_at"))
        except (OSError, ValueError) as exc:
            self.stats_counts["store_failed"] += 1
            log.error("event %s could not be stored in the outbox: %s", payload["id"], exc)
            return False
        self.stats_counts["queued"] += 1
        self.pump()
        return True

    def handle(self, event: LinkEvent) -> None:
        if isinstance(event, Acked):
            entry = self._inflight.pop(event.mid, None)
            if entry is None:
                return  # status, replies, health, or a message given up on: not (or no longer) a record
            if event.ok:
                if self.outbox.ack(entry.record_id):
                    self.stats_counts["published"] += 1
            else:
                self._refused.add(entry.record_id)
                self.stats_counts["refused"] += 1
                log.warning("broker refused event %s: %s", entry.record_id, event.reason)
            self.pump()
        elif isinstance(event, Connected):
            self._refused.clear()
            deadline = self._clock() + self.ack_timeout_s
            for entry in self._inflight.values():
                entry.deadline = deadline  # paho sends them again on this connection
            self.pump()
        elif isinstance(event, Disconnected):
            self.stats_counts["reconnects"] += 1

    def pump(self) -> None:
        if not self.link.connected:
            return  # no acknowledgement can come: deadlines wait for the next connection
        self._give_up_overdue()
        room = self.window - len(self._inflight)
        if room <= 0:
            return
        busy = {entry.record_id for entry in self._inflight.values()} | self._refused
        for rec in self.outbox.oldest(room, skip=busy):
            left = self.outbox.remaining_s(rec)
            if left <= 0:
                continue  # expired while queued; the next expire() counts it
            # MQTT's message expiry is an interval: the record's time left, restated from the wall clock now.
            meta = Meta(rec.kind, rec.id, time.time() + left)
            mid = self.link.publish(rec.topic, rec.payload, qos=1, meta=meta)
            if mid is None:
                self.stats_counts["not_taken"] += 1
                return  # paho did not take it (the link counted why): the next turn tries again
            self._inflight[mid] = _InFlight(rec.id, self._clock() + self.ack_timeout_s)

    def _give_up_overdue(self) -> None:
        now = self._clock()
        overdue = [mid for mid, entry in self._inflight.items() if entry.deadline <= now]
        if not overdue:
            return
        for mid in overdue:
            del self._inflight[mid]
            self.link.abandon(mid)
        self.stats_counts["ack_timeouts"] += len(overdue)
        log.warning(
            "no acknowledgement within %g s for %d events: sending them again (%d such in total)",
            self.ack_timeout_s,
            len(overdue),
            self.stats_counts["ack_timeouts"],
        )

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    def stats(self) -> dict[str, Any]:
        return {**self.outbox.stats(), "inflight": len(self._inflight), **self.stats_counts}
