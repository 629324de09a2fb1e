"""Pushing a gallery update to a terminal over MQTT: gallery.sync with the signed manifest, then every chunk
the terminal says it is missing (so an interrupted push resumes where it stopped when run again).

Commands are request/response on the terminal's command plane (MQTT 5 ResponseTopic and
CorrelationData), each signed with the operator's command key (the terminal refuses unsigned state-changing
commands); each request gets exactly one reply. The update itself is signed by the gallery key, which the
terminal checks independently.
"""

from __future__ import annotations

import base64
import json
import logging
import queue
import time
import uuid
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from nacl.signing import SigningKey
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from device.identity.operator import UpdateFile
from device.transport.auth import sign_command
from device.transport.topics import Topics
from device.wire.bounded import PayloadError, loads_bounded

log = logging.getLogger(__name__)
MAX_REPLY_BYTES = 16 * 1024 * 1024  # a command reply (gallery.list of a large gallery included)


class PushError(RuntimeError):
    """The terminal refused the update or did not answer; the message says which and why."""


class Requester:
    def __init__(
        self, client: mqtt.Client, topics: Topics, timeout_s: float = 30.0, key: SigningKey | None = None
    ) -> None:
        self.client, self.topics, self.timeout_s, self.key = client, topics, timeout_s, key
        self.reply_topic = f"{topics.cmd_res}/push-{uuid.uuid4().hex[:12]}"
        self._replies: queue.Queue[bytes] = queue.Queue()
        subscribed: queue.Queue[bool] = queue.Queue()
        client.on_subscribe = lambda *a: subscribed.put(True)
        client.on_message = lambda c, u, msg: self._replies.put(bytes(msg.payload))
        client.subscribe(self.reply_topic, qos=1)
        client.loop_start()
        subscribed.get(timeout=timeout_s)

    def request(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        token = uuid.uuid4().hex
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = self.reply_topic
        props.CorrelationData = token.encode()
        now = time.time()
        body = {
            "schema": 1,
            "id": str(uuid.uuid4()),
            "type": "command.request",
            "sent_at": now,
            "expires_at": now + self.timeout_s,
            "args": args,
        }
        if self.key is not None:
            body.update(sign_command(self.key, self.topics.terminal_id, name, args, ttl_s=self.timeout_s))
        self.client.publish(self.topics.cmd_req(name), json.dumps(body), qos=1, properties=props)
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                raw = self._replies.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise PushError(f"no reply to {name} within {self.timeout_s:g} s") from None
            try:
                reply = loads_bounded(raw, MAX_REPLY_BYTES)
            except PayloadError as exc:
                log.warning("a reply to %s is not readable, skipped: %s", name, exc)
                continue
            if isinstance(reply, dict) and reply.get("correlation_id") in (token, None):
                return reply

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def push(requester: Requester, update: UpdateFile, progress: Callable[[str], None] = lambda m: None) -> dict:
    """Sync `update` to the terminal; returns the gallery summary it reports. PushError on a refusal."""

    def ok(reply: dict[str, Any], what: str) -> dict[str, Any]:
        if not reply.get("ok"):
            err = reply.get("error") or {}
            raise PushError(f"{what} refused: {err.get('code')}: {err.get('message')}")
        return reply["result"]

    started = ok(requester.request("gallery.sync", {"manifest": update.manifest}), "gallery.sync")
    transfer, missing = started["transfer"], list(started["missing"])
    size = update.manifest["body"]["chunk_size"]
    progress(f"transfer {transfer}: {len(missing)} of {started['chunks']} chunks to send")
    result: dict[str, Any] = {}
    for done, index in enumerate(missing, start=1):
        data = base64.b64encode(update.body[index * size : (index + 1) * size]).decode()
        result = ok(
            requester.request("gallery.chunk", {"transfer": transfer, "index": index, "data": data}),
            f"chunk {index}",
        )
        if done % 100 == 0:
            progress(f"  {done}/{len(missing)} chunks")
    if result.get("missing_count", 0):
        raise PushError(f"the terminal still misses {result['missing_count']} chunks; run the push again")
    return result.get("gallery", {})
