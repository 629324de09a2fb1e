"""The backend's source on a NATS cluster: the MQTT layer's replicated stream, read by one durable consumer.

NATS stores every QoS 1 message a terminal publishes in the JetStream stream `$MQTT_msgs` (replicated,
before the terminal gets its PUBACK), and has no MQTT shared subscriptions. So every instance of a backend
pulls from one durable consumer on that stream (`[nats] consumer`), filtered to face events and statuses:
JetStream hands each message to one instance and delivers it again if it is not acknowledged within
`ack_wait_s`. A message is acknowledged only after the service committed it to the database (or quarantined
it), exactly as on MQTT; a redelivery after a crash is a duplicate the store absorbs. Health (QoS 0, never
stored) comes through a core NATS queue subscription, which NATS splits between the instances the same way.

The stream keeps a message only while a consumer is interested in it, so the consumer must exist before
terminals go live: `start` creates it, or checks the one that is there, and raises StreamError (the backend
refuses to run) when it cannot: no cluster, no stream, or a consumer of that name that reads something
else. This module only moves bytes: faceonly_backend/ingest.py stays the one judge of every message.

nats-py is asyncio: the source runs its own event loop in one thread; the service's thread hands it acks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections import deque
from concurrent.futures import Future
from typing import Any

from device.transport.client import ClientOptions, connect_first
from device.transport.natsmqtt import (
    MQTT_STREAM,
    stored_subject,
    subject_to_topic,
    topic_of_stored,
    topic_to_subject,
)
from device.transport.topics import API_VERSION
from faceonly_backend.consumer import Incoming
from faceonly_backend.natsconfig import NatsSection

log = logging.getLogger(__name__)
STORED_KINDS = ("event/face", "status")  # QoS 1: in the stream, acknowledged after commit
LIVE_KINDS = ("health",)  # QoS 0: never stored, split by a queue group
INFO_EVERY_S = 2.0


class StreamError(RuntimeError):
    """The durable consumer cannot be had; `permanent` when retrying cannot help (a conflicting consumer)."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


def filter_subjects(prefix: str) -> list[str]:
    return [stored_subject(f"{prefix}/{API_VERSION}/dev/+/{kind}") for kind in STORED_KINDS]


def consumer_config(cfg: NatsSection, prefix: str) -> Any:
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    return ConsumerConfig(
        durable_name=cfg.consumer,
        description="faceonly backend: face events and statuses, acknowledged after the database commit",
        filter_subjects=filter_subjects(prefix),
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=cfg.ack_wait_s,
        max_deliver=-1,
        max_ack_pending=cfg.max_ack_pending,
    )


def conflict(found: Any, wanted: Any) -> str | None:
    """Why an existing consumer of our name is not ours to use (what it reads, how it acknowledges), or None."""
    have = sorted(found.filter_subjects or ([found.filter_subject] if found.filter_subject else []))
    if have != sorted(wanted.filter_subjects):
        return f"it reads {have or 'everything'}, this backend reads {sorted(wanted.filter_subjects)}"
    if found.ack_policy != wanted.ack_policy:
        return f"it acknowledges {found.ack_policy}, this backend needs explicit acknowledgement"
    if found.deliver_subject:
        return "it is a push consumer, this backend pulls"
    return None


class JetStreamSource:
    def __init__(
        self,
        cfg: NatsSection,
        prefix: str,
        client_name: str,
        max_payload_bytes: int,
        mqtt_options: list[ClientOptions] | None = None,
    ) -> None:
        """`mqtt_options`: brokers of the cluster's MQTT layer, to have it make its stream when it has none yet."""
        self.cfg, self.prefix, self.name = cfg, prefix, client_name
        self.mqtt_options = mqtt_options
        self.keep_bytes = max_payload_bytes + 1
        # Bounded by max_ack_pending (what the cluster lets all instances hold) plus one batch of health.
        self.inbox: queue.Queue[Incoming] = queue.Queue(maxsize=cfg.max_ack_pending + cfg.fetch_batch)
        self.connected = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="jetstream", daemon=True)
        self._running = False
        self._fetcher: asyncio.Task[None] | None = None
        self._acker: asyncio.Task[None] | None = None
        self._acks: deque[Any] = deque()
        self._ack_ready = asyncio.Event()
        self._nc: Any = None
        self._sub: Any = None
        self._info: dict[str, Any] = {}
        self.fetched = self.acked = self.redelivered = self.health_dropped = self.fetch_errors = 0

    # ---- the service's side ---------------------------------------------------------------------

    def start(self) -> None:
        """Connect, create or check the durable consumer, start pulling; StreamError when it cannot."""
        self._thread.start()
        future: Future[None] = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        try:
            future.result(self.cfg.start_timeout_s + 15)
        except StreamError:
            self.stop()
            raise
        except Exception as exc:  # noqa: BLE001 - whatever nats-py raises at start-up, one line, and we stop
            self.stop()
            raise StreamError(f"NATS {', '.join(self.cfg.servers)}: {type(exc).__name__}: {exc}") from None

    def ack(self, message: Incoming) -> None:
        if message.token is not None and self._running:
            self._loop.call_soon_threadsafe(self._ack, message.token)

    def stop(self) -> None:
        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def stats(self) -> dict[str, Any]:
        """What the health shows: the consumer as the cluster sees it, and this instance's own counts."""
        return {
            "kind": "nats-jetstream",
            "consumer": self.cfg.consumer,
            "connected_url": self._connected_url(),
            "fetched": self.fetched,
            "acked": self.acked,
            "redelivered": self.redelivered,
            "fetch_errors": self.fetch_errors,
            "health_dropped": self.health_dropped,
            **self._info,
        }

    def _connected_url(self) -> str | None:
        url = getattr(self._nc, "connected_url", None)
        return None if url is None else f"{url.scheme}://{url.hostname}:{url.port}"

    # ---- the event loop's side ------------------------------------------------------------------

    async def _start(self) -> None:
        import nats

        password = None
        if self.cfg.password_file is not None:
            password = self.cfg.password_file.read_text(encoding="utf-8").rstrip("\r\n")
        tls = None
        if self.cfg.tls_ca is not None:
            import ssl

            tls = ssl.create_default_context(cafile=str(self.cfg.tls_ca))
        connect = nats.connect(
            servers=self.cfg.servers,
            name=self.name,
            user=self.cfg.username,
            password=password,
            tls=tls,
            connect_timeout=2,
            max_reconnect_attempts=-1,  # once connected, never give up (nodes come and go)
            reconnect_time_wait=0.5,
            allow_reconnect=True,
            disconnected_cb=self._disconnected,
            reconnected_cb=self._reconnected,
            error_cb=self._error,
        )
        try:
            # nats-py retries a first connection like a reconnection (forever here): bounded by the start timeout.
            self._nc = await asyncio.wait_for(connect, self.cfg.start_timeout_s)
        except (TimeoutError, OSError, nats.errors.NoServersError) as exc:
            why = " ".join(str(exc).split()) or "no server answered"
            raise StreamError(
                f"cannot connect to NATS {', '.join(self.cfg.servers)} within {self.cfg.start_timeout_s:g} s: {why}"
            ) from None
        self.connected.set()
        js = self._nc.jetstream()
        await self._wait_stream(js)
        await self._ensure_consumer(js)
        self._sub = await js.pull_subscribe_bind(durable=self.cfg.consumer, stream=MQTT_STREAM)
        for kind in LIVE_KINDS:
            subject = topic_to_subject(f"{self.prefix}/{API_VERSION}/dev/+/{kind}")
            await self._nc.subscribe(subject, queue=self.cfg.consumer, cb=self._live)
        self._running = True
        self._fetcher = asyncio.ensure_future(self._fetch_loop())
        self._acker = asyncio.ensure_future(self._ack_loop())
        log.info(
            "reading %s through durable consumer %s (%s)",
            MQTT_STREAM,
            self.cfg.consumer,
            ", ".join(filter_subjects(self.prefix)),
        )

    async def _wait_stream(self, js: Any) -> None:
        """The MQTT layer makes its streams when the first MQTT client of the account connects: if there are
        none yet, connect once ourselves, then wait for the stream (up to start_timeout_s)."""
        from nats.js.errors import NotFoundError

        deadline = time.monotonic() + self.cfg.start_timeout_s
        poked = False
        while True:
            try:
                info = await js.stream_info(MQTT_STREAM)
                log.info("stream %s: %d replicas", MQTT_STREAM, info.config.num_replicas or 1)
                return
            except NotFoundError:
                pass
            except (TimeoutError, OSError) as exc:
                log.warning("stream %s not answering yet: %s", MQTT_STREAM, exc)
            if not poked and self.mqtt_options:
                poked = True
                await asyncio.get_running_loop().run_in_executor(None, self._poke_mqtt)
            if time.monotonic() > deadline:
                raise StreamError(
                    f"no stream {MQTT_STREAM} on NATS {', '.join(self.cfg.servers)} within "
                    f"{self.cfg.start_timeout_s:g} s: is MQTT enabled on the cluster (an mqtt block) with JetStream?"
                )
            await asyncio.sleep(0.5)

    def _poke_mqtt(self) -> None:
        assert self.mqtt_options is not None
        try:
            client = connect_first(self.mqtt_options, f"{self.name}-init"[:64])
            client.loop(1.0)
            client.disconnect()
        except OSError as exc:
            log.warning("the cluster's MQTT layer did not answer: %s", exc)

    async def _ensure_consumer(self, js: Any) -> None:
        from nats.js.errors import APIError, NotFoundError

        wanted = consumer_config(self.cfg, self.prefix)
        try:
            found = (await js.consumer_info(MQTT_STREAM, self.cfg.consumer)).config
        except NotFoundError:
            found = None
        if found is not None:
            why = conflict(found, wanted)
            if why is not None:
                raise StreamError(
                    f"consumer {self.cfg.consumer} on {MQTT_STREAM} is not this backend's: {why}; name another "
                    "([nats] consumer) or delete it",
                    permanent=True,
                )
        try:
            info = await js.add_consumer(MQTT_STREAM, wanted)  # creates it, or updates its tunables
        except APIError as exc:
            raise StreamError(
                f"cannot {'update' if found else 'create'} consumer {self.cfg.consumer}: {exc}"
            ) from None
        log.info(
            "%s durable consumer %s (%d waiting, %d unacknowledged)",
            "checked" if found else "created",
            self.cfg.consumer,
            info.num_pending,
            info.num_ack_pending,
        )

    async def _fetch_loop(self) -> None:
        from nats.errors import ConnectionClosedError
        from nats.errors import TimeoutError as NatsTimeout

        next_info = 0.0
        while self._running:
            if time.monotonic() >= next_info:
                next_info = time.monotonic() + INFO_EVERY_S
                await self._refresh_info()
            room = self.inbox.maxsize - self.inbox.qsize()
            if room < 1:
                await asyncio.sleep(0.05)
                continue
            try:
                messages = await self._sub.fetch(batch=min(room, self.cfg.fetch_batch), timeout=1.0)
            except NatsTimeout:
                continue
            except ConnectionClosedError:
                return
            except Exception as exc:  # noqa: BLE001 - a node going away shows up in many ways: retried
                self.fetch_errors += 1
                log.debug("fetch failed (retrying): %s: %s", type(exc).__name__, exc)
                await asyncio.sleep(0.2)
                continue
            for msg in messages:
                self._take(msg)

    def _take(self, msg: Any) -> None:
        topic = topic_of_stored(msg.subject) or ""  # not ours: ingest passes it over, the service acks it
        delivered = msg.metadata.num_delivered if msg.metadata is not None else 1
        self.fetched += 1
        if delivered > 1:
            self.redelivered += 1
        self.inbox.put_nowait(Incoming(topic, bytes(msg.data[: self.keep_bytes]), 0, 1, 0, token=msg))

    async def _live(self, msg: Any) -> None:
        try:
            topic = subject_to_topic(msg.subject)
        except ValueError:
            return  # not a topic of ours (the subscription's subjects all are)
        try:
            self.inbox.put_nowait(Incoming(topic, bytes(msg.data[: self.keep_bytes]), 0, 0, 0))
        except queue.Full:
            self.health_dropped += 1  # QoS 0 state that the terminal sends again: dropped, counted

    def _ack(self, msg: Any) -> None:
        self._acks.append(msg)
        self._ack_ready.set()

    async def _ack_loop(self) -> None:
        """Sends the acks the service handed over, in order (one task, so none is dropped unawaited)."""
        while self._running or self._acks:
            await self._ack_ready.wait()
            self._ack_ready.clear()
            while self._acks:
                msg = self._acks.popleft()
                try:
                    await msg.ack()
                    self.acked += 1
                except Exception as exc:  # noqa: BLE001 - an ack not sent: the message comes again, a duplicate
                    log.debug("ack failed (the message will be delivered again): %s", exc)

    async def _refresh_info(self) -> None:
        try:
            info = await self._sub.consumer_info()
        except Exception as exc:  # noqa: BLE001 - shown in health as unknown until the cluster answers again
            self._info = {"info_error": f"{type(exc).__name__}: {exc}"[:200]}
            return
        self._info = {
            "lag": info.num_pending,  # stored for this consumer and not yet delivered to any instance
            "ack_pending": info.num_ack_pending,  # delivered, not yet acknowledged
            "redelivered_pending": info.num_redelivered,  # among those, delivered more than once
            "info_at": round(time.time(), 3),
        }

    async def _close(self) -> None:
        self._running = False
        if self._fetcher is not None:
            self._fetcher.cancel()
        if self._acker is not None:
            self._ack_ready.set()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._acker, 5)
        if self._nc is not None and not self._nc.is_closed:
            with contextlib.suppress(Exception):
                await self._nc.flush(timeout=2)  # the acks already handed over
                await self._nc.close()
        self.connected.clear()

    async def _disconnected(self) -> None:
        self.connected.clear()
        if self._running:
            log.warning("connection to NATS lost; reconnecting")

    async def _reconnected(self) -> None:
        self.connected.set()
        log.info("reconnected to NATS at %s", self._connected_url())

    async def _error(self, exc: Exception) -> None:
        log.debug("NATS: %s: %s", type(exc).__name__, exc)
