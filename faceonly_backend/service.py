"""The backend service: one loop owns ingest and the store; MQTT and the web page run beside it.

The source enqueues (the MQTT shared subscription, consumer.py, or on a NATS cluster the durable JetStream
consumer, jetstream.py); this loop takes messages in batches, judges each (ingest.py),
writes the batch in one transaction, and only then acknowledges it to the broker. A store that
fails keeps its batch: the loop retries it with backoff and acknowledges nothing meanwhile, so an
accepted event is never lost and the service keeps running. One message is never more than itself:
whatever judging or storing it raises quarantines it alone (`internal`, one log line), and every
quarantined message is acknowledged like the rest, so a poison message never comes back.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from faceonly_backend.config import BackendConfig, parse_listen
from faceonly_backend.consumer import Consumer, Incoming, Source
from faceonly_backend.health import Health
from faceonly_backend.ingest import Accepted, Ingest, Passed, Quarantined, TerminalUpdate, Verdict
from faceonly_backend.jetstream import JetStreamSource
from faceonly_backend.keys import read_private_key
from faceonly_backend.live import LiveEntry, LiveView
from faceonly_backend.office import BackOffice
from faceonly_backend.passback import Passage, PassageLog
from faceonly_backend.store import DATABASE_ERRORS, StateUpdate, Store

if TYPE_CHECKING:
    from faceonly_backend.web import WebServer

log = logging.getLogger(__name__)
T = TypeVar("T")
BATCH = 500
RETRY_MAX_S = 5.0
HOUSEKEEPING_S = 5.0
KEYS_S = 1.0


def instance_id(state_dir: Path) -> str:
    """A client id made once per state dir: the broker keeps this instance's session across restarts."""
    path = state_dir / "instance-id"
    if not path.exists():
        path.write_text(f"backend-{uuid.uuid4().hex[:12]}\n", encoding="ascii")
    return path.read_text(encoding="ascii").strip()


class BackendService:
    def __init__(self, cfg: BackendConfig) -> None:
        self.cfg = cfg
        self.store = Store(cfg.db)
        self.passages = PassageLog(self.store)
        self.health = Health()
        self.live = LiveView(cfg.retention.live_view_events)
        mq = cfg.mqtt
        self.options = mq.client_options()
        self.office = BackOffice(cfg, self.store, self.options, self.live)
        self._keys: dict[str, str] = self.store.terminal_keys()
        self._keys_read = time.monotonic()
        self.ingest = Ingest(
            mq.topic_prefix,
            self._terminal_keys,
            read_private_key(cfg.identity.private_key_file),
            self.office.gallery.identify,
            cfg.ingest,
        )
        client_id = mq.client_id or instance_id(cfg.state_dir)
        self.consumer: Source
        if cfg.nats.servers:
            self.consumer = JetStreamSource(
                cfg.nats, mq.topic_prefix, client_id, cfg.ingest.max_payload_bytes, self.options
            )
        else:
            self.consumer = Consumer(
                self.options[0],
                client_id,
                mq.group,
                mq.topic_prefix,
                mq.session_expiry_s,
                mq.receive_maximum,
                cfg.ingest.max_payload_bytes,
            )
        self.stop_requested = threading.Event()
        self._next_housekeeping = 0.0
        self.notice: str | None = None  # shown on top of the page (the demo explains itself there)
        self._web: WebServer | None = None

    @property
    def page_url(self) -> str:
        host, port = parse_listen(self.cfg.http.listen)
        return f"http://{host}:{port}/"

    def start(self) -> None:
        from faceonly_backend.web import WebServer

        self.consumer.start()  # first: without its source (on NATS, the durable consumer) the backend does not run
        web = WebServer(self)
        self._web = web
        web.start()

    def loop(self) -> None:
        """Ingest until `stop_requested`."""
        while not self.stop_requested.is_set():
            self.step(0.2)

    def close(self) -> None:
        self.consumer.stop()
        if self._web is not None:
            self._web.stop()
        self.store.close()

    def step(self, wait_s: float) -> int:
        """Take one batch from the inbox, judge, store and acknowledge it; returns its size."""
        try:
            batch = [self.consumer.inbox.get(timeout=wait_s)]
        except queue.Empty:
            self._housekeeping(time.monotonic())
            return 0
        while len(batch) < BATCH:
            try:
                batch.append(self.consumer.inbox.get_nowait())
            except queue.Empty:
                break
        self.process(batch)
        return len(batch)

    def _terminal_keys(self) -> dict[str, str]:
        """The pinned keys, re-read at most every KEYS_S (a terminal registered meanwhile is seen within
        it); while the store cannot be read, the keys last read."""
        now = time.monotonic()
        if now - self._keys_read >= KEYS_S:
            self._keys_read = now
            try:
                self._keys = self.store.terminal_keys()
            except DATABASE_ERRORS as exc:
                log.warning(
                    "store %s: pinned keys not re-read: %s", self.store.where, " ".join(str(exc).split())
                )
        return self._keys

    def _housekeeping(self, now: float) -> None:
        """When idle, at most every HOUSEKEEPING_S: another instance's gallery, the retention timers,
        attendance retention."""
        if now < self._next_housekeeping:
            return
        self._next_housekeeping = now + HOUSEKEEPING_S
        try:
            self.office.tick(now)
            days = self.cfg.retention.attendance_days
            if days is not None:
                expired = self.store.expire_attendance(time.time() - days * 86400)
                if expired:
                    log.info("retention: %d attendance records older than %d days deleted", expired, days)
        except DATABASE_ERRORS as exc:  # ingest goes on, this is retried
            log.warning("housekeeping failed (retried): %s", exc)

    def process(self, batch: list[Incoming]) -> None:
        now = time.time()
        accepted: list[Accepted] = []
        reasons: list[str] = []
        updates: list[TerminalUpdate] = []
        passages: list[Passage] = []
        for message in batch:
            verdict = self._judge(message, now)
            if isinstance(verdict, Passed):
                passages += [verdict.passage] if verdict.passage is not None else []
                accepted += verdict.attendance  # a credential's pass: on the timesheet like a face's
            elif isinstance(verdict, Accepted):
                accepted.append(verdict)
            elif isinstance(verdict, Quarantined):
                reasons.append(verdict.reason)
                log.warning("quarantined (%s): %s", verdict.reason, verdict.detail)
            elif isinstance(verdict, TerminalUpdate):
                updates.append(verdict)
        applied = self._apply_state(updates, now, reasons)
        self._retry(partial(self.passages.record, passages))  # before the ack, like records
        inserted = self._commit(accepted, reasons)
        for item, new in zip(accepted, inserted, strict=True):
            if new:
                entry = LiveEntry(
                    item.thumbnail,
                    item.raw,
                    item.note,
                    item.embedding,
                    item.embedder_sha256,
                    item.record.subject,
                )
                self.live.add(item.record.event_id, entry)
            elif new is False:
                reasons.append("duplicate")
                log.info("quarantined (duplicate): event %s is recorded already", item.record.event_id)
        recorded = [a for a, new in zip(accepted, inserted, strict=True) if new]
        lag = max((a.record.received_at - a.record.created_at for a in recorded), default=None)
        self.health.batch(len(batch), len(recorded), reasons, lag, now)
        for message in batch:
            self.consumer.ack(message)
        for update in applied:
            if update.kind == "status" and update.state == "online":
                self.office.pusher.sync(update.terminal)

    def _judge(self, message: Incoming, now: float) -> Verdict:
        """One message's verdict; whatever judging it raises quarantines that message alone."""
        try:
            return self.ingest.handle(message.topic, message.payload, now)
        except Exception as exc:  # noqa: BLE001 - one message must never stop the stream: logged, quarantined, acked
            return Quarantined("internal", f"judging a message on {message.topic!r} raised {_where(exc)}")

    def _apply_state(
        self, updates: list[TerminalUpdate], now: float, reasons: list[str]
    ) -> list[TerminalUpdate]:
        """Store the terminals' signed state where it is newer than the stored one, each retried like
        records while the store fails (applying one twice changes nothing); an older one is quarantined as
        stale, one whose writing raises anything else as internal. Returns those applied."""
        future_after = now + self.cfg.ingest.max_clock_skew_s

        def apply(u: TerminalUpdate) -> str:
            if u.kind == "status":
                assert u.state is not None
                return self.store.terminal_status(
                    u.terminal,
                    u.state,
                    u.at,
                    u.gallery_version,
                    future_after,
                    u.gallery_sha256,
                    u.gallery_authority,
                )
            return self.store.terminal_health(u.terminal, u.health or {}, u.at, future_after)

        batch = [
            StateUpdate(
                u.terminal, u.at, u.state, u.gallery_version, u.health, u.gallery_sha256, u.gallery_authority
            )
            for u in updates
        ]
        outcomes: list[str] | None = None
        if batch:
            try:  # one transaction for all of them (a fleet sends thousands), retried while the store fails
                outcomes = self._retry(partial(self.store.terminal_states, batch, future_after))
            except DATABASE_ERRORS:
                raise
            except Exception as exc:  # noqa: BLE001 - one bad update must not cost the others: one by one below
                log.warning("terminal states not stored together (%s): storing them one by one", _where(exc))
        applied = []
        for n, update in enumerate(updates):
            try:
                outcome = outcomes[n] if outcomes is not None else self._retry(partial(apply, update))
            except DATABASE_ERRORS:
                raise
            except Exception as exc:  # noqa: BLE001 - one message must never stop the stream
                outcome = "internal"
                log.warning(
                    "quarantined (internal): %s from %r not stored: %s",
                    update.kind,
                    update.terminal,
                    _where(exc),
                )
            if outcome in ("stale", "internal"):
                reasons.append(outcome)
            if outcome == "stale":
                log.warning(
                    "quarantined (stale): %s from %r dated %.3f is older than the stored one",
                    update.kind,
                    update.terminal,
                    update.at,
                )
            elif outcome == "applied":
                applied.append(update)
        return applied

    def _commit(self, accepted: list[Accepted], reasons: list[str]) -> list[bool | None]:
        """Record the batch and its quarantine counts in one transaction, retried while the store fails.
        Per record: True new, False a duplicate, None not stored. Should writing the batch raise anything
        else (a record no database takes), each record is written alone: one that still fails is
        quarantined as internal, the others are kept."""
        try:
            return list(self._retry(lambda: self.store.record([a.record for a in accepted], reasons)))
        except DATABASE_ERRORS:
            raise
        except Exception as exc:  # noqa: BLE001 - a record that cannot be stored must not stop the stream
            log.error("store %s refused a batch (%s): recording it one by one", self.store.where, _where(exc))
        inserted: list[bool | None] = []
        for item in accepted:
            try:
                inserted += self._retry(partial(self.store.record, [item.record]))
            except DATABASE_ERRORS:
                raise
            except Exception as exc:  # noqa: BLE001 - as above: this record alone is quarantined
                log.warning(
                    "quarantined (internal): event %s not stored: %s", item.record.event_id, _where(exc)
                )
                reasons.append("internal")
                inserted.append(None)
        self._retry(lambda: self.store.record([], reasons))
        return inserted

    def _retry(self, write: Callable[[], T]) -> T:
        delay = 0.2
        while True:
            try:
                return write()
            except DATABASE_ERRORS as exc:  # a database that fails must not stop ingest: retried
                self.health.store_errors += 1
                log.error(
                    "store %s failed, retrying in %.1f s: %s",
                    self.store.where,
                    delay,
                    " ".join(str(exc).split()),
                )
                if self.stop_requested.wait(delay):
                    raise
                delay = min(delay * 2, RETRY_MAX_S)
                try:
                    self.store.reconnect()
                except DATABASE_ERRORS as again:  # still down: the next round tries again
                    log.warning(
                        "store %s: reconnect failed: %s", self.store.where, " ".join(str(again).split())
                    )


def _where(exc: BaseException) -> str:
    """An exception as one log line: its type, where it was raised, and its text cut short."""
    frame = exc.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    at = f" at {frame.tb_frame.f_code.co_filename.rsplit('/', 1)[-1]}:{frame.tb_lineno}" if frame else ""
    return f"{type(exc).__name__}{at}: {' '.join(str(exc).split())[:160]}"
