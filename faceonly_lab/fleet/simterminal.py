"""One simulated terminal: a real MQTT client with the terminal's session, subscriptions, messages and commands.

What it shares with a real terminal (the same code where there is code to share):
- its id is its client id; a persistent session (3.1.1 clean session off, or MQTT 5 clean start off with a
  session expiry); the terminal's three subscriptions (`cmd/req/+`, `config/desired`, its own `status`) at the
  configured QoS; a signed birth and a signed last will made for each connection attempt
  (device.transport.availability);
- face events: a recorded protected body (faceonly_lab.fleet.recording) in a fresh envelope, signed with its own
  key, kept in its outbox until the broker's PUBACK; after a reconnect the unacknowledged ones are sent again
  (paho resends those it had in flight, the outbox the rest), as the courier does;
- commands through the real command plane (parse, reply address and namespace, signature, nonce, validity;
  device.transport.commands and auth): `status`, `config.set` of the health interval (the one key a simulated
  terminal has), and with a gallery key the real gallery commands (verified, stored; device.identity);
- signed health at QoS 0; the cluster's nodes tried in turn with the terminal's backoff and jitter
  (device.transport.failover).
What it leaves out: camera, models and the per-frame pipeline (events are recorded), and the durable outbox
file (its outbox lives in memory: the simulator measures the broker and the backend, not a terminal's disk).

All of it runs on the swarm's asyncio loop thread (faceonly_lab.fleet.swarm): paho callbacks included.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

import device
from device.privacy.signing import Signer
from device.transport.auth import Authenticator
from device.transport.availability import Availability
from device.transport.client import ClientOptions, new_client, parse_broker_url
from device.transport.commands import (
    INVALID_CONFIG,
    CommandError,
    CommandPlane,
    Reply,
    completed,
)
from device.transport.envelope import encode, envelope
from device.transport.failover import Backoff, BrokerRing, aim
from device.transport.nonces import ReplayCache
from device.transport.replies import ReplyPolicy, default_namespaces
from device.transport.topics import Topics
from faceonly_lab.fleet.simparts import MemoryNonces, sim_identity
from faceonly_lab.fleet.spec import SimSpec

log = logging.getLogger(__name__)
REPLY_TTL_S = 60.0
WINDOW_S = 300.0  # the control plane's defaults ([control] window_s, clock_skew_s)
SKEW_S = 30.0


class Results:
    """What one worker's terminals did (shared by them; the worker reports it)."""

    def __init__(self) -> None:
        self.acked: list[tuple[str, str, float, float]] = []  # event id, terminal, created_at, acked_at
        self.created = 0
        # (connection lost, next CONNACK, connection attempts it took), wall-clock times
        self.reconnects: list[tuple[float, float, int]] = []
        self.connect_failures = 0
        self.commands = 0
        self.replies = 0
        self.health = 0
        self.refused_subscriptions = 0


class SimTerminal:
    def __init__(
        self,
        tid: str,
        signer: Signer,
        spec: SimSpec,
        results: Results,
        schedule: Callable[[float, Callable[[], None]], None],
        command_key: bytes | None,
        gallery_key: Path | None = None,
    ) -> None:
        """`gallery_key`: the gallery public key; given, the terminal takes the real gallery commands (and keeps
        its gallery under spec.state_root)."""
        self.tid, self.signer, self.spec, self.results = tid, signer, spec, results
        self.schedule = schedule
        self.topics = Topics(spec.prefix, tid)
        urls = [parse_broker_url(u) for u in spec.brokers]
        self.ring = BrokerRing(urls, tid)
        self.backoff = Backoff(spec.reconnect_min_s, spec.reconnect_max_s)
        self.v5 = spec.protocol == "5"
        self.started = time.time()
        self.health_interval_s = spec.health_interval_s
        self.outbox: OrderedDict[str, tuple[bytes, float]] = (
            OrderedDict()
        )  # event id -> (payload, created_at)
        self.inflight: dict[int, str] = {}  # paho mid -> event id
        self.connected = False
        self.ever_connected = False
        self.lost_at: float | None = None
        self.attempts = 0  # connection attempts since the last CONNACK
        self.stopping = False
        state = Path(spec.state_root) / tid if spec.state_root else None
        self.identity = (
            sim_identity(gallery_key, state, signer, self._deferred_reply) if gallery_key else None
        )
        self.availability = Availability(tid, signer.sign, self._status_body())
        self.plane = self._plane(command_key, state)
        client = new_client(
            ClientOptions(urls[0], spec.protocol), tid, clean_session=None if self.v5 else False
        )
        client.max_inflight_messages_set(spec.inflight_window + 20)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        props = None
        if self.v5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = spec.session_expiry_s
        client.connect_async(
            self.ring.current.host,
            self.ring.current.port,
            keepalive=spec.keepalive_s,
            clean_start=False if self.v5 else mqtt.MQTT_CLEAN_START_FIRST_ONLY,
            properties=props,
        )
        self.client = client

    # ---- the command plane ----------------------------------------------------------------------

    def _plane(self, command_key: bytes | None, state: Path | None) -> CommandPlane:
        if state is not None:
            state.mkdir(parents=True, exist_ok=True, mode=0o700)
        cache = ReplayCache(state / "command-nonces.json") if state is not None else MemoryNonces()
        auth = Authenticator(self.tid, command_key, cache, window_s=WINDOW_S, clock_skew_s=SKEW_S)
        policy = ReplyPolicy(self.topics, default_namespaces(self.spec.prefix))
        plane = CommandPlane(
            self.topics.cmd_res, 64 * 1024, auth=auth, replies=policy, max_age_s=WINDOW_S + SKEW_S
        )
        plane.register("status", lambda args: self.status(), read_only=True)
        plane.register("config.set", self._config_set)
        if self.identity is not None:
            self.identity.register(plane)
        return plane

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "state": "online",
            "simulated": True,
            "software": device.__version__,
            "uptime_s": round(time.time() - self.started, 1),
            "connected": self.connected,
            "broker": str(self.ring.current),
            "outbox": {"depth": len(self.outbox), "inflight": len(self.inflight)},
            "health_interval_s": self.health_interval_s,
        }
        if self.identity is not None:
            out["gallery"] = self.identity.identity.summary()
        return out

    def _config_set(self, args: dict[str, Any]) -> dict[str, Any]:
        config = args.get("config")
        interval = (
            (config or {}).get("service", {}).get("health_interval_s") if isinstance(config, dict) else None
        )
        keys = {f"{s}.{k}" for s, v in (config or {}).items() if isinstance(v, dict) for k in v}
        if (
            keys != {"service.health_interval_s"}
            or not isinstance(interval, int | float)
            or not 1 <= interval <= 3600
        ):
            raise CommandError(
                INVALID_CONFIG, "a simulated terminal takes only service.health_interval_s (1-3600)"
            )
        self.health_interval_s = float(interval)
        return {"applied": {"service": {"health_interval_s": self.health_interval_s}}, "restart_needed": []}

    def _status_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "software": device.__version__,
            "started_at": round(self.started, 3),
            "models": {},
        }
        if self.identity is not None:
            body["gallery"] = self.identity.identity.summary()
        return body

    # ---- connection -----------------------------------------------------------------------------

    def connect(self) -> None:
        """One connection attempt to the ring's current node (a refused TCP connection retries later)."""
        if self.stopping:
            return
        aim(self.client, self.ring.current)
        self.attempts += 1
        at = time.time()
        self.availability.refresh(self._status_body())
        self.birth = self.availability.birth(at)
        will_props = None
        if self.v5:
            will_props = Properties(PacketTypes.WILLMESSAGE)
            will_props.WillDelayInterval = self.spec.will_delay_s
        self.client.will_set(
            self.topics.status, self.availability.will(at), qos=1, retain=True, properties=will_props
        )
        try:
            self.client.reconnect()
        except OSError:
            self.results.connect_failures += 1
            self._retry_later()

    def _retry_later(self) -> None:
        self.ring.advance()
        self.schedule(self.backoff.next_delay(), self.connect)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.results.connect_failures += 1
            return  # paho closes the connection: _on_disconnect retries
        now = time.time()
        if self.lost_at is not None:
            self.results.reconnects.append((self.lost_at, now, self.attempts))
            self.lost_at = None
        self.connected = self.ever_connected = True
        self.attempts = 0
        self.backoff.reset()
        qos = self.spec.subscription_qos
        client.subscribe(
            [(self.topics.cmd_req_filter, qos), (self.topics.config_desired, qos), (self.topics.status, qos)]
        )
        client.publish(self.topics.status, self.birth, qos=1, retain=True)
        self.pump()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        if any(rc.is_failure for rc in reason_codes):
            self.results.refused_subscriptions += 1

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if self.connected:
            self.lost_at = time.time()
        self.connected = False
        if not self.stopping:
            self._retry_later()

    def stop(self) -> None:
        """A clean stop: the explicit offline status, then DISCONNECT (the broker drops the will)."""
        self.stopping = True
        if self.identity is not None:
            self.identity.close()  # an update still applying finishes (and is answered) first
        if self.connected:
            offline = self.availability.status("offline", "stopped", time.time())
            self.client.publish(self.topics.status, offline, qos=1, retain=True)
            self.client.disconnect()

    # ---- events ---------------------------------------------------------------------------------

    def emit(self, body: dict[str, Any], now: float) -> None:
        """A recorded event as this terminal's: a fresh envelope, signed, into the outbox, then sent."""
        payload = envelope("event.face", self.tid, body, ttl_s=self.spec.event_ttl_s, now=now)
        payload["id"] = str(uuid.uuid4())
        self.outbox[payload["id"]] = (encode(self.signer.sign(payload)), now)
        self.results.created += 1
        self.pump()

    def pump(self) -> None:
        """Hand the oldest unsent events to paho, at most `inflight_window` at a time (the courier's rule)."""
        if not self.connected:
            return
        room = self.spec.inflight_window - len(self.inflight)
        if room <= 0:
            return
        busy = set(self.inflight.values())
        for event_id, (data, _) in self.outbox.items():
            if room <= 0:
                break
            if event_id in busy:
                continue
            info = self.client.publish(self.topics.event_face, data, qos=1)
            self.inflight[info.mid] = event_id
            room -= 1

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        event_id = self.inflight.pop(mid, None)
        if event_id is None:
            return  # status, replies
        failed = getattr(reason_code, "is_failure", False)
        if failed:
            return  # stays in the outbox: sent again after the next reconnect
        entry = self.outbox.pop(event_id, None)
        if entry is not None:
            self.results.acked.append((event_id, self.tid, entry[1], time.time()))
        self.pump()

    def send_health(self) -> None:
        if not self.connected:
            return
        body = {
            "uptime_s": round(time.time() - self.started, 1),
            "outbox": {"depth": len(self.outbox)},
            "connected": True,
            "simulated": True,
        }
        payload = self.signer.sign(envelope("health", self.tid, body, ttl_s=self.health_interval_s * 3))
        self.client.publish(self.topics.health, encode(payload), qos=0)
        self.results.health += 1

    # ---- commands -------------------------------------------------------------------------------

    def _on_message(self, client, userdata, message: mqtt.MQTTMessage) -> None:
        name = self.topics.command_name(message.topic)
        if name is None:
            return  # desired config, our own status: nothing a simulated terminal acts on
        props = message.properties
        response_topic = getattr(props, "ResponseTopic", None) if props is not None else None
        correlation = getattr(props, "CorrelationData", None) if props is not None else None
        self.results.commands += 1
        reply = self.plane.handle(name, bytes(message.payload), response_topic, correlation, message.retain)
        if reply.deferred and self.identity is not None:
            self.identity.attach_reply(reply)  # the last gallery chunk: answered once the update is applied
        else:
            self._publish_reply(reply)

    def _deferred_reply(self, handle: Reply | None, outcome: dict[str, Any] | CommandError) -> None:
        if handle is not None:
            self._publish_reply(completed(handle, outcome))

    def tick(self) -> None:
        """A gallery update applying on its worker thread: its reply once it is done."""
        if self.identity is not None:
            self.identity.tick()

    def _publish_reply(self, reply: Reply) -> None:
        payload = envelope(
            "command.reply", self.tid, reply.body, ttl_s=REPLY_TTL_S, correlation_id=reply.correlation_id
        )
        props = None
        if self.v5 and reply.correlation is not None:
            props = Properties(PacketTypes.PUBLISH)
            props.CorrelationData = reply.correlation
        self.client.publish(reply.topic, encode(payload), qos=1, properties=props)
        self.results.replies += 1
