"""The service's path from a finished observation to the broker's PUBACK, timed stage by stage.

It is the same sequence as Service._emit (protect -> envelope -> sign -> outbox, fsynced -> publish) over
the same parts (the configured protector, Outbox, Courier, Link built by the one client factory), in a
throwaway state dir; without a broker it stops after signing. The bench's terminal id and keys are its
own, so a real terminal's session and state are never touched.
"""

from __future__ import annotations

import queue
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from device.config import Config
from device.privacy.protector import build_protector
from device.transport.availability import Availability
from device.transport.courier import Courier
from device.transport.envelope import encode, envelope
from device.transport.link import Acked, Connected, ConnectFailed, Link, LinkEvent
from device.transport.outbox import Outbox
from device.transport.topics import Topics

CONNECT_TIMEOUT_S = 10.0
ACK_TIMEOUT_S = 10.0


class PublishPath:
    """protect + sign always; outbox + publish + wait for the broker's ack when `broker` is given."""

    def __init__(self, broker: str | None, protocol: str, terminal_id: str = "faceonly-bench") -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="faceonly-bench-"))
        mqtt: dict[str, Any] = {"protocol": protocol}
        if broker is not None:
            mqtt["broker"] = broker
        self.config = Config.model_validate(
            {"terminal_id": terminal_id, "mqtt": mqtt, "service": {"state_dir": str(self._dir)}}
        )
        self.protector = build_protector(self.config, self._dir)
        self.topics = Topics(self.config.mqtt.topic_prefix, terminal_id)
        self.link: Link | None = None
        self.courier: Courier | None = None
        self._inbox: queue.Queue[LinkEvent] = queue.Queue(1000)
        if broker is not None:
            self._connect()

    def _connect(self) -> None:
        availability = Availability(self.config.terminal_id, self.protector.sign, {})
        self.link = Link(self.config.mqtt, self.config.terminal_id, self.topics, self._inbox)
        self.courier = Courier(
            Outbox(self._dir / "outbox", self.config.outbox),
            self.link,
            self.config.mqtt.inflight_window,
            self.config.mqtt.ack_timeout_s,
        )
        self.link.start(availability.birth, availability.will)
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                event = self._inbox.get(timeout=0.1)
            except queue.Empty:
                continue
            if isinstance(event, Connected):
                self.courier.handle(event)
                return
            if isinstance(event, ConnectFailed):
                self.close()
                raise ConnectionError(f"broker {self.config.mqtt.broker}: {event.reason}")
        self.close()
        raise ConnectionError(
            f"broker {self.config.mqtt.broker}: no connection within {CONNECT_TIMEOUT_S:g} s"
        )

    def send(self, observation: Any, match: Any, stage) -> bool:
        """One observation through the path; `stage(name, ms)` gets protect and publish. True once acked."""
        t0 = time.perf_counter()
        body = self.protector.protect(observation, match)
        payload = envelope("event.face", self.config.terminal_id, body, ttl_s=self.config.mqtt.event_expiry_s)
        payload = self.protector.sign(payload)
        t1 = time.perf_counter()
        stage("protect", (t1 - t0) * 1000.0)
        if self.courier is None:
            return False
        if not self.courier.queue(self.topics.event_face, payload):
            return False
        acked = self._wait_ack()
        stage("publish", (time.perf_counter() - t1) * 1000.0)
        return acked

    def _wait_ack(self) -> bool:
        assert self.courier is not None
        deadline = time.monotonic() + ACK_TIMEOUT_S
        while len(self.courier.outbox) and time.monotonic() < deadline:
            try:
                event = self._inbox.get(timeout=deadline - time.monotonic())
            except queue.Empty:
                break
            self.courier.handle(event)
            if isinstance(event, Acked) and not len(self.courier.outbox):
                return True
        return not len(self.courier.outbox)

    def close(self) -> None:
        if self.link is not None:
            offline = encode(envelope("status", self.config.terminal_id, {"state": "offline"}))
            self.link.stop(offline, 2.0)
            self.link = None
        shutil.rmtree(self._dir, ignore_errors=True)
