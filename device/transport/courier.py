"""Moves outbox records to the broker and retires them on PUBACK (at-least-once delivery).

At most `window` records are handed to paho at a time, oldest first. paho resends its unacked QoS 1
messages after a reconnect within this process; after a restart the outbox still holds them and
they are published again (consumers drop duplicates by payload id). A record the broker refuses
(MQTT 5 failure reason code, e.g. not authorized) stays in the outbox and is retried after the
next reconnect, where it ages out like any other if the refusal persists.
"""

from __future__ import annotations

import logging
from typing import Any

from device.transport.envelope import Meta, encode
from device.transport.link import Acked, Connected, Disconnected, Link, LinkEvent
from device.transport.outbox import Outbox

log = logging.getLogger(__name__)


class Courier:
    def __init__(self, outbox: Outbox, link: Link, window: int) -> None:
        self.outbox = outbox
        self.link = link
        self.window = window
        self._inflight: dict[int, str] = {}  # paho mid -> record id
        self._refused: set[str] = set()
        self.stats_counts = {"queued": 0, "published": 0, "refused": 0, "store_failed": 0, "reconnects": 0}

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
            record_id = self._inflight.pop(event.mid, None)
            if record_id is None:
                return  # status, replies, health: not outbox records
            if event.ok:
                if self.outbox.ack(record_id):
                    self.stats_counts["published"] += 1
            else:
                self._refused.add(record_id)
                self.stats_counts["refused"] += 1
                log.warning("broker refused event %s: %s", record_id, event.reason)
            self.pump()
        elif isinstance(event, Connected):
            self._refused.clear()
            self.pump()
        elif isinstance(event, Disconnected):
            self.stats_counts["reconnects"] += 1

    def pump(self) -> None:
        if not self.link.connected:
            return
        room = self.window - len(self._inflight)
        if room <= 0:
            return
        busy = set(self._inflight.values()) | self._refused
        for rec in self.outbox.oldest(room, skip=busy):
            meta = Meta(rec.kind, rec.id, rec.expires_at)
            if meta.remaining_s() == 0:
                continue  # expired while queued; the next expire() counts it
            mid = self.link.publish(rec.topic, rec.payload, qos=1, meta=meta)
            self._inflight[mid] = rec.id

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    def stats(self) -> dict[str, Any]:
        return {**self.outbox.stats(), "inflight": len(self._inflight), **self.stats_counts}
