"""Serving the command plane from the service loop: bounded work per turn, bounded replies in flight.

The loop calls `serve()` between frames; each call answers requests until `budget_s` of work is spent
(at least one request), so the budget is the cost of the work, not a count: a flood of cheap requests
and one of expensive ones delay a frame by the same bounded time, never stopping frames or events. Requests that found the command
queue full get a `busy` reply when they named an acceptable reply topic, and are counted otherwise.
Replies handed to the broker connection and not yet acknowledged are bounded (`reply_queue`):
while it is full no request is taken from the command queue, so paho's in-memory queue cannot grow
and the requests wait (bounded) where they can still be answered busy or counted.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from device.config import Config
from device.transport.auth import Authenticator
from device.transport.commands import BUSY, CommandPlane, Reply, correlation_text, name_or_none
from device.transport.envelope import Meta, encode, envelope
from device.transport.link import Inbound, Link, Overflow
from device.transport.nonces import NONCES_FILE, ReplayCache
from device.transport.replies import ReplyPolicy, default_namespaces
from device.transport.topics import Topics
from device.wire.command import error_body

REPLY_TTL_S = 300
# Command work per serve() call. A frame waits at most about this (plus the one request that crossed it)
# for commands; when no frame is waiting the loop calls serve() again at once, so commands still get
# all the idle time between frames.
SERVE_BUDGET_S = 0.004


def build_plane(cfg: Config, topics: Topics, command_key: bytes | None) -> CommandPlane:
    control = cfg.control
    cache = ReplayCache(Path(cfg.service.state_dir) / NONCES_FILE)
    auth = Authenticator(
        cfg.terminal_id,
        command_key,
        cache,
        window_s=control.window_s,
        clock_skew_s=control.clock_skew_s,
        allow_unsigned=control.allow_unsigned,
    )
    namespaces = control.reply_namespaces or default_namespaces(cfg.mqtt.topic_prefix)
    return CommandPlane(
        topics.cmd_res,
        cfg.mqtt.max_command_bytes,
        auth=auth,
        replies=ReplyPolicy(topics, namespaces),
        max_age_s=control.window_s + control.clock_skew_s,
    )


class CommandServer:
    def __init__(
        self,
        plane: CommandPlane,
        link: Link,
        terminal_id: str,
        reply_queue: int,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.plane = plane
        self.clock = clock
        self.link = link
        self.tid = terminal_id
        self.reply_queue = reply_queue
        self._unacked: dict[int, float] = {}  # mid -> when handed to paho
        # budget_spent: serve() calls that stopped with its budget used up (the next call goes on)
        self.counts = {"busy": 0, "unanswerable": 0, "budget_spent": 0}
        # Who answers deferred requests (enroll): it gets the reply address and publishes the reply later.
        self.on_deferred: Callable[[Reply], None] | None = None

    def serve(self, budget_s: float = SERVE_BUDGET_S) -> None:
        """Answer waiting requests until `budget_s` of work is spent (at least one, if any is waiting)."""
        self.link.woken()  # requests arriving from now on wake the loop again
        deadline = self.clock() + budget_s
        while self._room():
            # Backpressure: without room, requests wait in the (bounded) command queue until the broker
            # has acknowledged earlier replies; beyond that queue they are answered busy or counted.
            msg = self.link.take_command()
            if msg is None:
                return
            self._answer(msg)
            if self.clock() >= deadline:
                self.counts["budget_spent"] += 1
                return

    def _answer(self, msg: Inbound | Overflow) -> None:
        if isinstance(msg, Overflow):
            self._busy(msg)
            return
        name = self.link.topics.command_name(msg.topic) or ""
        reply = self.plane.handle(name, msg.payload, msg.response_topic, msg.correlation, msg.retain)
        if reply.deferred and self.on_deferred is not None:
            self.on_deferred(reply)  # answered later, exactly once, through publish()
            return
        self.publish(reply)

    @property
    def ready(self) -> bool:
        """Requests are waiting and may be answered now (not held back by unacknowledged replies)."""
        return self.link.commands_pending and self._room()

    def acked(self, mid: int) -> None:
        self._unacked.pop(mid, None)

    def reconnected(self) -> None:
        # paho resends what it still holds; acknowledgements of the old connection may never come.
        self._unacked.clear()

    def _busy(self, msg: Overflow) -> None:
        topic = msg.response_topic
        if topic is None or self.plane.reply_refusal(topic) is not None:
            self.counts["unanswerable"] += 1
            return
        self.counts["busy"] += 1
        name = self.link.topics.command_name(msg.topic) or ""
        body = error_body(name_or_none(name), None, BUSY, "the terminal is busy; retry later")
        self.publish(Reply(topic, body, msg.correlation, correlation_text(msg.correlation)))

    def _room(self) -> bool:
        if len(self._unacked) < self.reply_queue:
            return True
        now = time.monotonic()  # an acknowledgement that never comes must not block replies for good
        self._unacked = {m: t for m, t in self._unacked.items() if now - t < REPLY_TTL_S}
        return len(self._unacked) < self.reply_queue

    def publish(self, reply: Reply) -> None:
        now = time.monotonic()
        payload = envelope(
            "command.reply", self.tid, reply.body, ttl_s=REPLY_TTL_S, correlation_id=reply.correlation_id
        )
        mid = self.link.publish(reply.topic, encode(payload), qos=1, meta=Meta.of(payload, reply.correlation))
        if mid is not None:  # else paho did not take it: counted by the link (health: publish_failed)
            self._unacked[mid] = now

    def stats(self) -> dict[str, Any]:
        return {
            **self.plane.counts,
            **self.counts,
            "dropped": self.link.commands_dropped,
            "queued": self.link.commands.qsize(),
            "replies_unacked": len(self._unacked),
        }
