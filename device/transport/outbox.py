"""The durable outbox: every event is on disk before it is published, and leaves only on PUBACK.

One checksummed file per event (device.infra.atomicfile: temp file, fsync, rename, fsync dir; magic + length +
sha256 header), named by a monotonic sequence number so the directory order is the publish order.
A power cut or SIGKILL leaves either a whole record or a stray temp file; a record whose checksum
does not match is reported as torn, deleted and never loaded or published.

Bounds: count, bytes, age, and the free space actually left on the state filesystem (a reserve
stays free for the system). When a new event would exceed a bound, the oldest records expire first;
every expiry is counted by cause and the counters survive restarts (they are reported in health).

Time: a record's file keeps its wall-clock stamps (created, expires), the only clock a restart can carry
over; within a run its age and expiry run on the monotonic clock from when it was written or loaded, so
NTP stepping the clock of a Pi without RTC after boot (hours, or decades from 1970) expires nothing early.

Bad storage days: a write that fails (disk full beyond the reserve, a read-only remount, an I/O
error) keeps the event in memory, bounded by `max_held_events` (the oldest held expire first), and
raises the `fault` alarm; a record acknowledged while its file cannot be deleted is remembered and
deleted later, so it is not sent again. Every few seconds the outbox retries; when storage works
again the held events are written and the alarm clears. Only the service loop touches an Outbox
(one owner, no locks).

Size (~470 lines): the durability rules above (bounds, clocks, storage faults) act on the same records
and counters; split apart they would have to share them. The file format is device.infra.atomicfile.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from device.config.mqtt import OutboxConfig
from device.infra.atomicfile import (
    TornFileError,
    checksummed,
    read_checksummed,
    verified_payload,
    write_atomic,
)

log = logging.getLogger(__name__)

RECORD_FORMAT = 1
SUFFIX = ".evt"
COUNTERS = "counters.json"
RETRY_S = 2.0  # how often failing storage is tried again


class NoRoom(OSError):
    """Writing the event would eat into the reserve, and no stored record is left to expire."""


@dataclass(frozen=True)
class Record:
    seq: int
    id: str  # the payload's own id (consumers dedupe on it)
    topic: str
    kind: str
    created_at: float  # wall clock, as stored
    expires_at: float  # wall clock, as stored: min(payload expiry, created + max_age)
    born: float  # monotonic: when it was written, or its age restated on the monotonic clock at load
    deadline: float  # monotonic: when it expires in this run
    size: int  # bytes on disk
    payload: bytes = b""  # loaded only when the record is about to be published


@dataclass
class Counters:
    expired_age: int = 0
    expired_count: int = 0
    expired_bytes: int = 0
    expired_space: int = 0  # to keep the reserve free on the state filesystem
    expired_held: int = 0  # held in memory during a storage fault, beyond max_held_events
    torn: int = 0
    purged: int = 0
    acked: int = 0

    @property
    def expired(self) -> int:
        return (
            self.expired_age
            + self.expired_count
            + self.expired_bytes
            + self.expired_space
            + self.expired_held
        )


class Outbox:
    def __init__(
        self,
        directory: Path,
        config: OutboxConfig,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.config = config
        self.clock = clock
        self.monotonic = monotonic
        self._index: OrderedDict[int, Record] = OrderedDict()
        self._by_id: dict[str, int] = {}
        self._bytes = 0
        self._held: dict[int, bytes] = {}  # seq -> checksummed record that storage could not take
        self._undeleted: set[int] = set()  # gone from the index, file still on disk (delete failed)
        self.fault: str | None = None  # the storage alarm: why events are held in memory
        self.foreign = 0  # entries in the directory that are not outbox records (skipped, left alone)
        self._counters_dirty = False
        self._next_retry = 0.0
        self.counters = self._load_counters()
        self._next_seq = self._load() + 1

    # ---- queries ----------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._index)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def __contains__(self, record_id: str) -> bool:
        return record_id in self._by_id

    def oldest(self, n: int, skip: set[str] | frozenset[str] = frozenset()) -> list[Record]:
        """Up to `n` records in publish order, payload loaded, leaving out ids in `skip`.

        Records that turn out torn or already expired are dropped (and counted) on the way.
        """
        self.retry_storage()
        self.expire()
        out: list[Record] = []
        for rec in list(self._index.values()):
            if len(out) >= n:
                break
            if rec.id in skip:
                continue
            try:
                payload = self._payload(rec.seq)
            except (TornFileError, OSError, KeyError, ValueError) as exc:
                log.warning("outbox record %s is damaged and dropped: %s", rec.seq, exc)
                self._remove(rec.seq)
                self.counters.torn += 1
                self._save_counters()
                continue
            out.append(Record(**{**asdict(rec), "payload": payload}))
        return out

    def remaining_s(self, rec: Record) -> float:
        """Seconds until `rec` expires (monotonic), <= 0 once it has."""
        return rec.deadline - self.monotonic()

    def stats(self) -> dict[str, float | int | str | None]:
        now = self.monotonic()
        oldest = next(iter(self._index.values()), None)
        return {
            "depth": len(self._index),
            "bytes": self._bytes,
            "oldest_age_s": round(now - oldest.born, 1) if oldest else 0.0,
            "expired": self.counters.expired,
            "expired_age": self.counters.expired_age,
            "expired_count": self.counters.expired_count,
            "expired_bytes": self.counters.expired_bytes,
            "expired_space": self.counters.expired_space,
            "expired_held": self.counters.expired_held,
            "torn": self.counters.torn,
            "purged": self.counters.purged,
            "acked": self.counters.acked,
            "max_events": self.config.max_events,
            "max_bytes": self.config.max_bytes,
            "free_bytes": self._free_bytes(),
            "reserve_bytes": self.config.reserve_bytes,
            "held": len(self._held),
            "storage_fault": self.fault,
            "foreign_entries": self.foreign,
        }

    # ---- changes ----------------------------------------------------------------------------

    def put(self, record_id: str, topic: str, kind: str, payload: bytes, expires_at: float | None) -> Record:
        """Write the event durably (fsynced) and return its record; old records expire to make room."""
        now, mono = self.clock(), self.monotonic()
        limit = now + self.config.max_age_s
        expires = min(limit, expires_at) if expires_at is not None else limit
        body = json.dumps(
            {
                "format": RECORD_FORMAT,
                "id": record_id,
                "topic": topic,
                "kind": kind,
                "created_at": now,
                "expires_at": expires,
                "payload": payload.decode("utf-8"),
            },
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode("utf-8")
        blob = checksummed(body)
        size = len(blob)
        if size > self.config.max_bytes:
            raise ValueError(f"event of {size} bytes exceeds the outbox limit of {self.config.max_bytes}")
        self.retry_storage()
        self.expire(extra_count=1, extra_bytes=size)
        seq = self._next_seq
        self._next_seq += 1
        rec = Record(seq, record_id, topic, kind, now, expires, mono, mono + (expires - now), size)
        try:
            self._store(seq, blob)
        except OSError as exc:
            self._hold(seq, blob, exc)
        self._add(rec)
        self._bound_held()
        return rec

    def ack(self, record_id: str) -> bool:
        """The broker has the event: forget it. False if it was not (or no longer) here."""
        seq = self._by_id.get(record_id)
        if seq is None:
            return False
        self._remove(seq)
        self.counters.acked += 1
        return True

    def expire(self, extra_count: int = 0, extra_bytes: int = 0) -> int:
        """Drop records past their age, then the oldest until count and bytes (plus room asked) fit."""
        now = self.monotonic()
        dropped = 0
        # Expiry times are not monotonic in seq order (events carry their own expiry), so scan them all.
        for rec in [r for r in self._index.values() if r.deadline <= now]:
            self._remove(rec.seq)
            self.counters.expired_age += 1
            dropped += 1
        while self._index and len(self._index) + extra_count > self.config.max_events:
            self._remove(next(iter(self._index)))
            self.counters.expired_count += 1
            dropped += 1
        while self._index and self._bytes + extra_bytes > self.config.max_bytes:
            self._remove(next(iter(self._index)))
            self.counters.expired_bytes += 1
            dropped += 1
        if dropped:
            log.warning("outbox expired %d events (totals: %s)", dropped, asdict(self.counters))
            self._save_counters()
        return dropped

    def retry_storage(self, force: bool = False) -> None:
        """Every RETRY_S: notice a read-only state filesystem; while storage fails, delete what was
        left, write what is held, and clear the alarm once everything is stored."""
        now = self.monotonic()
        if now < self._next_retry and not force:
            return
        self._next_retry = now + RETRY_S
        if self._read_only():
            self._alarm(OSError(errno.EROFS, os.strerror(errno.EROFS)))
            return
        if not (self._held or self._undeleted or self._counters_dirty or self.fault):
            return
        try:
            for seq in sorted(self._undeleted):
                self._path(seq).unlink(missing_ok=True)
                self._undeleted.discard(seq)
            for seq in sorted(self._held):
                self._store(seq, self._held[seq])
                del self._held[seq]
        except OSError as exc:
            self._alarm(exc)
            return
        self._save_counters()
        if self.fault is not None and not self._counters_dirty:
            log.warning("outbox: state storage works again; held events are stored (alarm cleared)")
            self.fault = None

    def purge(self) -> int:
        """Delete every queued event (operator command or data-subject erase)."""
        n = len(self._index)
        for seq in list(self._index):
            self._remove(seq)
        self.counters.purged += n
        self._save_counters()
        return n

    def purge_where(self, picks: Callable[[bytes], bool]) -> int:
        """Delete the queued events whose payload `picks` (data-subject erase: events naming a subject)."""
        n = 0
        for rec in list(self._index.values()):
            try:
                payload = self._payload(rec.seq)  # events held in memory while storage fails count too
            except (TornFileError, OSError, KeyError, ValueError):
                continue  # damaged records are dropped by oldest() anyway
            if picks(payload):
                self._remove(rec.seq)
                n += 1
        self.counters.purged += n
        self._save_counters()
        return n

    def save(self) -> None:
        """Persist the counters (ack counts are saved lazily; expiry counts immediately)."""
        self._save_counters()

    # ---- disk -------------------------------------------------------------------------------

    def _path(self, seq: int) -> Path:
        return self.dir / f"{seq:012d}{SUFFIX}"

    def _read_only(self) -> bool:
        try:
            return bool(os.statvfs(self.dir).f_flag & os.ST_RDONLY)
        except OSError:
            return False

    def _free_bytes(self) -> int:
        try:
            st = os.statvfs(self.dir)
        except OSError:
            return 0
        return st.f_bavail * st.f_frsize

    def _store(self, seq: int, blob: bytes) -> None:
        """Write one record, expiring the oldest stored ones first so the reserve stays free."""
        reserve = self.config.reserve_bytes
        if self._free_bytes() - len(blob) >= reserve:
            write_atomic(self._path(seq), blob)
            return
        stored = [s for s in self._index if s not in self._held and s != seq]
        reclaimable = sum(self._index[s].size for s in stored)
        if self._free_bytes() + reclaimable - len(blob) < reserve:
            # Someone else filled the disk: expiring our backlog could not make room, so keep it.
            raise NoRoom(f"{self._free_bytes()} bytes free on the state filesystem, reserve {reserve}")
        dropped = 0
        while stored and self._free_bytes() - len(blob) < reserve:
            if not self._remove(stored.pop(0)):
                break
            self.counters.expired_space += 1
            dropped += 1
        if dropped:
            log.warning("outbox: %d oldest events expired to keep %d bytes free", dropped, reserve)
            self._save_counters()
        write_atomic(self._path(seq), blob)

    def _hold(self, seq: int, blob: bytes, exc: OSError) -> None:
        self._held[seq] = blob
        self._alarm(exc)

    def _bound_held(self) -> None:
        if len(self._held) <= self.config.max_held_events:
            return
        while len(self._held) > self.config.max_held_events:
            self._remove(min(self._held))
            self.counters.expired_held += 1
        log.warning("outbox: oldest held events expired (%d in total)", self.counters.expired_held)
        self._save_counters()

    def _alarm(self, exc: OSError) -> None:
        fault = f"state storage failing ({exc.strerror or exc}): events held in memory"
        if self.fault is None:
            log.error(
                "outbox: %s, at most %d, until it works again (retried every %.0f s)",
                fault,
                self.config.max_held_events,
                RETRY_S,
            )
        self.fault = fault

    def _payload(self, seq: int) -> bytes:
        """A record's payload: from memory while storage holds it back, else from its file."""
        held = self._held.get(seq)
        data = json.loads(verified_payload(held)) if held is not None else self._read(self._path(seq))
        return data["payload"].encode("utf-8")

    @staticmethod
    def _read(path: Path) -> dict:
        data = json.loads(read_checksummed(path))
        if not isinstance(data, dict) or data.get("format") != RECORD_FORMAT:
            raise ValueError(f"{path.name}: not an outbox record of format {RECORD_FORMAT}")
        return data

    def _load(self) -> int:
        """Index the records on disk; returns the highest sequence number in use."""
        for tmp in self.dir.glob(".*.tmp"):
            # A write that a crash interrupted before its rename: never a published or acked record.
            log.warning("outbox: removing interrupted write %s", tmp.name)
            self._unlink(tmp)
            self.counters.torn += 1
        top = 0
        wall, mono = self.clock(), self.monotonic()
        for path in sorted(self.dir.glob(f"*{SUFFIX}")):
            seq = int(path.stem) if path.stem.isdigit() else None
            top = max(top, seq or 0)  # a foreign entry's number must never be reused for a record
            if seq is None or path.is_symlink() or not path.is_file():
                # Not something this outbox wrote: reported, skipped and left alone for the operator.
                self.foreign += 1
                log.error("outbox: %s is not an outbox record; skipped and left in place", path.name)
                continue
            try:
                data = self._read(path)
                created, expires = float(data["created_at"]), float(data["expires_at"])
                age = min(max(0.0, wall - created), self.config.max_age_s)
                left = min(expires - wall, self.config.max_age_s - age)
                rec = Record(
                    seq,
                    str(data["id"]),
                    str(data["topic"]),
                    str(data["kind"]),
                    created,
                    expires,
                    mono - age,
                    mono + left,
                    path.stat().st_size,
                )
            except (TornFileError, OSError, KeyError, ValueError, TypeError) as exc:
                log.warning("outbox: torn record %s not loaded: %s", path.name, exc)
                self._unlink(path)
                self.counters.torn += 1
                continue
            self._add(rec)
        self._save_counters()
        self.expire()
        return top

    def _add(self, rec: Record) -> None:
        self._index[rec.seq] = rec
        self._by_id[rec.id] = rec.seq
        self._bytes += rec.size

    def _remove(self, seq: int) -> bool:
        """Forget a record and delete its file; False if the file stays for now (deleted on recovery)."""
        rec = self._index.pop(seq)
        self._by_id.pop(rec.id, None)
        self._bytes -= rec.size
        if self._held.pop(seq, None) is not None:
            return True
        # No directory fsync: if a power cut resurrects the file, the event is sent again (at least once).
        if self._unlink(self._path(seq)):
            return True
        self._undeleted.add(seq)
        return False

    def _unlink(self, path: Path) -> bool:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            self._alarm(exc)
            return False
        return True

    def _load_counters(self) -> Counters:
        path = self.dir / COUNTERS
        try:
            data = json.loads(path.read_text())
            return Counters(**{k: int(v) for k, v in data.items() if k in Counters.__dataclass_fields__})
        except FileNotFoundError:
            return Counters()
        except (OSError, ValueError, TypeError) as exc:
            log.warning("outbox counters unreadable, starting from zero: %s", exc)
            return Counters()

    def _save_counters(self) -> None:
        try:
            write_atomic(self.dir / COUNTERS, json.dumps(asdict(self.counters)).encode())
        except OSError as exc:
            # The counters live on in memory and in health; they are written when storage works again.
            self._counters_dirty = True
            self._alarm(exc)
            return
        self._counters_dirty = False
