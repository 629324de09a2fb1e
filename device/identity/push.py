"""Pushing a gallery update to a terminal over MQTT: gallery.sync with the signed manifest, then every chunk
the terminal says it is missing, each with its Merkle inclusion proof (so an interrupted push resumes where
it stopped when run again).

Commands are request/response on the terminal's command plane (MQTT 5 ResponseTopic and CorrelationData;
on MQTT 3.1.1 the same as `reply_to` and `correlation_id` in the request),
each signed with the operator's command key (the terminal refuses unsigned state-changing commands); each
request gets exactly one reply. Up to `window` chunks are in flight at once, so the push is not one broker
round trip per chunk; a chunk the terminal answered `busy` is sent again. The update itself is signed by the
gallery key, which the terminal checks independently.
"""

from __future__ import annotations

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
from device.identity.transfer import chunk_count, chunk_proofs
from device.privacy.terminalseal import seal_for_terminal
from device.transport.auth import sign_command
from device.transport.client import subscribe_confirmed
from device.transport.topics import Topics
from device.wire.bounded import PayloadError, loads_bounded

log = logging.getLogger(__name__)
MAX_REPLY_BYTES = 16 * 1024 * 1024  # a command reply (gallery.list of a large gallery included)
# Chunks in flight: enough to keep the terminal's loop busy between round trips, well within its command
# queue (control.inbox_size 64, inbox_bytes 4 MiB: 8 chunk requests of ~45 KB).
DEFAULT_WINDOW = 8
BUSY_RETRY_S = 0.2


class PushError(RuntimeError):
    """The terminal refused the update or did not answer; the message says which and why."""


class Requester:
    def __init__(
        self,
        client: mqtt.Client,
        topics: Topics,
        timeout_s: float = 30.0,
        key: SigningKey | None = None,
        reply_qos: int = 1,
    ) -> None:
        """`reply_qos`: of the reply subscription (0 on a NATS cluster: no JetStream consumer for it)."""
        self.client, self.topics, self.timeout_s, self.key = client, topics, timeout_s, key
        self.v5 = client.protocol == mqtt.MQTTv5
        self.reply_topic = f"{topics.cmd_res}/push-{uuid.uuid4().hex[:12]}"
        self._replies: queue.Queue[bytes] = queue.Queue()
        self._early: dict[str, dict[str, Any]] = {}  # replies collected while waiting for another
        client.on_message = lambda c, u, msg: self._replies.put(bytes(msg.payload))
        client.loop_start()
        try:
            subscribe_confirmed(client, self.reply_topic, reply_qos, timeout_s)
        except ConnectionError:
            self.close()
            raise

    def send(self, name: str, args: dict[str, Any]) -> str:
        """Publish one request; returns its correlation token (wait for the reply with `reply`)."""
        token = uuid.uuid4().hex
        props = None
        if self.v5:
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
        if not self.v5:
            body.update(reply_to=self.reply_topic, correlation_id=token)
        if self.key is not None:
            body.update(sign_command(self.key, self.topics.terminal_id, name, args, ttl_s=self.timeout_s))
        self.client.publish(self.topics.cmd_req(name), json.dumps(body), qos=1, properties=props)
        return token

    def reply(self, token: str, what: str) -> dict[str, Any]:
        """The reply to request `token`; PushError when none came within the timeout."""
        deadline = time.monotonic() + self.timeout_s
        while token not in self._early:
            try:
                raw = self._replies.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise PushError(f"no reply to {what} within {self.timeout_s:g} s") from None
            try:
                reply = loads_bounded(raw, MAX_REPLY_BYTES)
            except PayloadError as exc:
                log.warning("a reply on %s is not readable, skipped: %s", self.reply_topic, exc)
                continue
            if isinstance(reply, dict) and isinstance(reply.get("correlation_id"), str):
                self._early[reply["correlation_id"]] = reply
        return self._early.pop(token)

    def request(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        return self.reply(self.send(name, args), name)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _ok(reply: dict[str, Any], what: str) -> dict[str, Any]:
    if not reply.get("ok"):
        err = reply.get("error") or {}
        raise PushError(f"{what} refused: {err.get('code')}: {err.get('message')}")
    return reply["result"]


def push(
    requester: Requester,
    update: UpdateFile,
    terminal_key: bytes,
    progress: Callable[[str], None] = lambda m: None,
    window: int = DEFAULT_WINDOW,
) -> dict:
    """Sync `update` to the terminal; returns the gallery summary it reports once the update is applied (the
    reply to the last chunk). PushError on a refusal."""
    started = _ok(requester.request("gallery.sync", {"manifest": update.manifest}), "gallery.sync")
    transfer, todo = started["transfer"], list(started["missing"])
    size, total = update.manifest["body"]["chunk_size"], chunk_count(update.manifest)
    if not todo:  # it holds every chunk (a restart came before it applied them): one sent again applies them
        todo = [total - 1]
    proofs = chunk_proofs(update.manifest, update.body)
    progress(f"transfer {transfer}: {len(todo)} of {total} chunks to send")
    todo.reverse()  # popped from the end: in index order
    in_flight: dict[str, int] = {}  # token -> chunk index, in the order sent
    done, summary, left = 0, None, len(todo)
    while todo or in_flight:
        while todo and len(in_flight) < window:
            index = todo.pop()
            # Sealed to this terminal: the body holds display names and templates (device.privacy.terminalseal).
            data = seal_for_terminal(terminal_key, update.body[index * size : (index + 1) * size])
            args = {"transfer": transfer, "index": index, "data": data, "proof": proofs[index]}
            in_flight[requester.send("gallery.chunk", args)] = index
        token, index = next(iter(in_flight.items()))
        reply = requester.reply(token, f"chunk {index}")
        del in_flight[token]
        if not reply.get("ok") and (reply.get("error") or {}).get("code") == "busy":
            todo.append(index)  # the terminal's command queue was full: send it again shortly
            time.sleep(BUSY_RETRY_S)
            continue
        result = _ok(reply, f"chunk {index}")
        left = min(left, result.get("missing_count", left))
        summary = result.get("gallery", summary)
        done += 1
        if done % 100 == 0:
            progress(f"  {done}/{total} chunks")
    if summary is None:
        raise PushError(f"the terminal still misses {left} chunks; run the push again")
    return summary
