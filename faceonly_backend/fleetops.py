"""Fleet operations: one signed command to a group of terminals, and a gallery rolled out in batches.

One MQTT connection (a cluster's nodes tried in turn) carries every request. Each terminal replies on its own
`<prefix>/v1/dev/<id>/cmd/res/fleet-<token>` (inside the namespace a terminal may reply to), and one wildcard
subscription `<prefix>/v1/dev/+/cmd/res/fleet-<token>` hears them all; a reply is matched to its request by
its correlation id. The reply address is the MQTT 5 ResponseTopic or, on 3.1.1, `reply_to` in the request.
At most `window` requests are outstanding at a time; a terminal that does not answer within `timeout_s` is
reported as timed out, never waited for longer. Every request is signed for its own terminal (the signature
binds the terminal, the command, its arguments and a validity window of `timeout_s`).

A gallery rollout sends `gallery.sync` with the signed manifest, then every chunk each terminal says it is
missing with its Merkle inclusion proof, sealed to that terminal's own key (the body holds names and
templates: device.privacy.terminalseal), batch by batch, reporting progress after each batch; a terminal
that failed is named, and running the rollout again resumes it where it stopped (the terminal keeps the
chunks it has). The last chunk's reply comes once the terminal applied the update; a terminal busy applying
another answers `busy` and is asked again.
"""

from __future__ import annotations

import json
import queue
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from nacl.signing import SigningKey
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from device.identity.operator import UpdateFile
from device.identity.transfer import chunk_count, chunk_proofs
from device.privacy.terminalseal import seal_for_terminal
from device.transport.auth import sign_command
from device.transport.client import ClientOptions, connect_first, subscribe_confirmed
from device.transport.topics import API_VERSION, Topics
from device.wire.bounded import PayloadError, loads_bounded

MAX_REPLY_BYTES = 16 * 1024 * 1024
BUSY_RETRY_S = 0.2
SUBSCRIBE_TIMEOUT_S = 30.0


@dataclass
class Outcome:
    terminal: str
    ok: bool | None = None  # None: no reply within the timeout
    result: Any = None
    error: dict[str, Any] | None = None
    elapsed_s: float | None = None

    @property
    def status(self) -> str:
        return (
            "timeout" if self.ok is None else "ok" if self.ok else f"error:{(self.error or {}).get('code')}"
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "terminal": self.terminal,
            "status": self.status,
            "elapsed_s": None if self.elapsed_s is None else round(self.elapsed_s, 3),
            **({"result": self.result} if self.ok else {}),
            **({"error": self.error} if self.ok is False else {}),
        }


@dataclass
class _Pending:
    terminal: str
    sent: float
    deadline: float
    outcome: Outcome = field(init=False)

    def __post_init__(self) -> None:
        self.outcome = Outcome(self.terminal)


class FleetRequester:
    def __init__(
        self,
        options: Sequence[ClientOptions],
        prefix: str,
        key: SigningKey | None,
        *,
        reply_qos: int = 1,
        client_id: str | None = None,
    ) -> None:
        self.prefix, self.key = prefix, key
        self.token = uuid.uuid4().hex[:12]
        self.v5 = options[0].v5
        self._replies: queue.Queue[bytes] = queue.Queue()
        self.client = connect_first(options, client_id or f"fleet-{self.token}")
        self.client.on_message = lambda c, u, msg: self._replies.put(bytes(msg.payload))
        self.client.loop_start()
        topic = f"{prefix}/{API_VERSION}/dev/+/cmd/res/fleet-{self.token}"
        try:
            subscribe_confirmed(self.client, topic, reply_qos, SUBSCRIBE_TIMEOUT_S)
        except ConnectionError:
            self.close()
            raise

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _send(self, terminal: str, name: str, args: dict[str, Any], correlation: str, ttl_s: float) -> None:
        topics = Topics(self.prefix, terminal)
        reply_topic = f"{topics.cmd_res}/fleet-{self.token}"
        now = time.time()
        body: dict[str, Any] = {
            "schema": 1,
            "id": str(uuid.uuid4()),
            "type": "command.request",
            "sent_at": now,
            "expires_at": now + ttl_s,
            "args": args,
        }
        props = None
        if self.v5:
            props = Properties(PacketTypes.PUBLISH)
            props.ResponseTopic = reply_topic
            props.CorrelationData = correlation.encode()
        else:
            body.update(reply_to=reply_topic, correlation_id=correlation)
        if self.key is not None:
            body.update(sign_command(self.key, terminal, name, args, ttl_s=ttl_s))
        self.client.publish(topics.cmd_req(name), json.dumps(body), qos=1, properties=props)

    def request_many(
        self,
        terminals: Sequence[str],
        name: str,
        args: dict[str, Any] | Callable[[str], dict[str, Any]],
        *,
        timeout_s: float = 30.0,
        window: int = 500,
    ) -> dict[str, Outcome]:
        """One request to each terminal (args the same, or made per terminal); every outcome, in order."""
        todo = list(terminals)
        pending: dict[str, _Pending] = {}
        done: dict[str, Outcome] = {}
        while todo or pending:
            while todo and len(pending) < window:
                terminal = todo.pop(0)
                correlation = uuid.uuid4().hex
                now = time.monotonic()
                pending[correlation] = _Pending(terminal, now, now + timeout_s)
                self._send(terminal, name, args(terminal) if callable(args) else args, correlation, timeout_s)
            soonest = min(p.deadline for p in pending.values())
            self._collect(pending, done, max(0.0, min(soonest - time.monotonic(), 0.5)))
            now = time.monotonic()
            for correlation in [c for c, p in pending.items() if p.deadline <= now]:
                late = pending.pop(correlation)
                done[late.terminal] = late.outcome
        return {t: done[t] for t in terminals}

    def _collect(self, pending: dict[str, _Pending], done: dict[str, Outcome], wait_s: float) -> None:
        try:
            raw = self._replies.get(timeout=wait_s)
        except queue.Empty:
            return
        while True:
            self._match(raw, pending, done)
            try:
                raw = self._replies.get_nowait()
            except queue.Empty:
                return

    @staticmethod
    def _match(raw: bytes, pending: dict[str, _Pending], done: dict[str, Outcome]) -> None:
        try:
            reply = loads_bounded(raw, MAX_REPLY_BYTES)
        except PayloadError:
            return
        if not isinstance(reply, dict):
            return
        waiting = pending.pop(str(reply.get("correlation_id")), None)
        if waiting is None:
            return  # late (already timed out), or not ours
        out = waiting.outcome
        out.ok = bool(reply.get("ok"))
        out.result = reply.get("result")
        out.error = reply.get("error") if not out.ok else None
        out.elapsed_s = time.monotonic() - waiting.sent
        done[waiting.terminal] = out


@dataclass
class RolloutProgress:
    batch: int
    batches: int
    terminals_done: int
    terminals: int
    at_version: int
    failed: dict[str, str]  # terminal -> why (this batch)


def rollout(
    requester: FleetRequester,
    terminals: Sequence[str],
    update: UpdateFile,
    keys: dict[str, bytes],
    *,
    batch_size: int = 100,
    timeout_s: float = 30.0,
    progress: Callable[[RolloutProgress], None] = lambda p: None,
) -> dict[str, Outcome]:
    """Push `update` to every terminal, `batch_size` at a time; per terminal the last reply (ok when it holds
    the update's version at the end, else why not). `keys`: each terminal's Ed25519 public key (raw)."""
    missing_keys = [t for t in terminals if t not in keys]
    if missing_keys:
        raise ValueError(f"no public key for {len(missing_keys)} terminals (e.g. {missing_keys[0]})")
    version = update.manifest["version"]
    proofs = chunk_proofs(update.manifest, update.body)
    out: dict[str, Outcome] = {}
    batches = [terminals[i : i + batch_size] for i in range(0, len(terminals), batch_size)]
    at_version = 0
    for number, batch in enumerate(batches, start=1):
        out.update(_push_batch(requester, batch, _Chunks(update, proofs, keys), timeout_s))
        failed = {}
        for terminal in batch:
            outcome = out[terminal]
            held = _version_held(outcome)
            if held == version:  # applied now, or held already (its sync was refused as not newer)
                at_version += 1
                outcome.ok = True
                continue
            failed[terminal] = outcome.status if not outcome.ok else f"holds version {held}"
            if outcome.ok:
                outcome.ok, outcome.error = False, {"code": "not_applied", "message": failed[terminal]}
        done = sum(len(b) for b in batches[:number])
        progress(RolloutProgress(number, len(batches), done, len(terminals), at_version, failed))
    return out


@dataclass
class _Chunks:
    update: UpdateFile
    proofs: list[list[str]]
    keys: dict[str, bytes]
    missing: dict[str, list[int]] = field(default_factory=dict)
    transfer: dict[str, str] = field(default_factory=dict)

    def args(self, terminal: str) -> dict[str, Any]:
        """The next chunk for `terminal`: sealed to its key, with its inclusion proof."""
        size = self.update.manifest["body"]["chunk_size"]
        index = self.missing[terminal][0]
        data = seal_for_terminal(self.keys[terminal], self.update.body[index * size : (index + 1) * size])
        return {
            "transfer": self.transfer[terminal],
            "index": index,
            "data": data,
            "proof": self.proofs[index],
        }


def _push_batch(
    requester: FleetRequester, batch: Sequence[str], chunks: _Chunks, timeout_s: float
) -> dict[str, Outcome]:
    """gallery.sync to each terminal of the batch, then each one's missing chunks, one per round."""
    out: dict[str, Outcome] = {}
    manifest = chunks.update.manifest
    started = requester.request_many(batch, "gallery.sync", {"manifest": manifest}, timeout_s=timeout_s)
    for terminal, outcome in started.items():
        out[terminal] = outcome
        if outcome.ok:
            # All chunks already there (an interrupted earlier run): one sent again applies the update.
            chunks.missing[terminal] = list(outcome.result["missing"]) or [chunk_count(manifest) - 1]
            chunks.transfer[terminal] = outcome.result["transfer"]
    while chunks.missing:
        replies = requester.request_many(
            list(chunks.missing), "gallery.chunk", chunks.args, timeout_s=timeout_s
        )
        busy = False
        for terminal, outcome in replies.items():
            out[terminal] = outcome
            if outcome.ok is False and (outcome.error or {}).get("code") == "busy":
                busy = True  # its command queue was full, or it is applying: the same chunk again
                continue
            left = list(outcome.result.get("missing", [])) if outcome.ok else []
            if left:
                chunks.missing[terminal] = left
            else:
                chunks.missing.pop(terminal)
        if busy:
            time.sleep(BUSY_RETRY_S)
    return out


def _version_held(outcome: Outcome) -> int | None:
    """The gallery version a reply says the terminal holds (an ok chunk's, or a refusal's details)."""
    result = outcome.result if isinstance(outcome.result, dict) else {}
    if (
        outcome.ok is False
        and isinstance(outcome.error, dict)
        and isinstance(outcome.error.get("details"), dict)
    ):
        result = outcome.error["details"]
    gallery = result.get("gallery") if isinstance(result.get("gallery"), dict) else result
    version = gallery.get("version") if isinstance(gallery, dict) else None
    return version if isinstance(version, int) else None
