"""The durable outbox: every event is on disk before it is published, and leaves only on PUBACK.

One sealed file per event (device.atomicfile: temp file, fsync, rename, fsync dir; magic + length +
sha256 header), named by a monotonic sequence number so the directory order is the publish order.
A power cut or SIGKILL leaves either a whole record or a stray temp file; a record whose checksum
does not match is reported as torn, deleted and never loaded or published.

Bounds: count, bytes and age. When a new event would exceed a bound, the oldest records expire
first; every expiry is counted by cause and the counters survive restarts (they are reported in
health). Only the service loop touches an Outbox (one owner, no locks).
"""

from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from device.atomicfile import TornFileError, read_sealed, seal, write_atomic
from device.config.mqtt import OutboxConfig

log = logging.getLogger(__name__)

RECORD_FORMAT = 1
SUFFIX = ".evt"
COUNTERS = "counters.json"


@dataclass(frozen=True)
class Record:
    seq: int
    id: str  # the payload's own id (consumers dedupe on it)
    topic: str
    kind: str
    created_at: float
    expires_at: float  # min(payload expiry, created + max_age)
    size: int  # bytes on disk
    payload: bytes = b""  # loaded only when the record is about to be published


@dataclass
class Counters:
    expired_age: int = 0
    expired_count: int = 0
    expired_bytes: int = 0
    torn: int = 0
    purged: int = 0
    acked: int = 0

    @property
    def expired(self) -> int:
        return self.expired_age + self.expired_count + self.expired_bytes


class Outbox:
    def __init__(self, directory: Path, config: OutboxConfig, clock: Callable[[], float] = time.time) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.config = config
        self.clock = clock
        self._index: OrderedDict[int, Record] = OrderedDict()
        self._by_id: dict[str, int] = {}
        self._bytes = 0
        self.counters = self._load_counters()
        self._load()
        self._next_seq = (next(reversed(self._index)) + 1) if self._index else 1

    # ---- queries ----------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._index)

    @property
    def bytes(self) -> int:
        return self._bytes

    def __contains__(self, record_id: str) -> bool:
        return record_id in self._by_id

    def oldest(self, n: int, skip: set[str] | frozenset[str] = frozenset()) -> list[Record]:
        """Up to `n` records in publish order, payload loaded, leaving out ids in `skip`.

        Records that turn out torn or already expired are dropped (and counted) on the way.
        """
        self.expire()
        out: list[Record] = []
        for rec in list(self._index.values()):
            if len(out) >= n:
                break
            if rec.id in skip:
                continue
            try:
                payload = self._read(self._path(rec.seq))["payload"].encode("utf-8")
            except (TornFileError, OSError, KeyError, ValueError) as exc:
                log.warning("outbox record %s is damaged and dropped: %s", rec.seq, exc)
                self._remove(rec.seq)
                self.counters.torn += 1
                self._save_counters()
                continue
            out.append(Record(**{**asdict(rec), "payload": payload}))
        return out

    def stats(self) -> dict[str, float | int]:
        now = self.clock()
        oldest = next(iter(self._index.values()), None)
        return {
            "depth": len(self._index),
            "bytes": self._bytes,
            "oldest_age_s": round(now - oldest.created_at, 1) if oldest else 0.0,
            "expired": self.counters.expired,
            "expired_age": self.counters.expired_age,
            "expired_count": self.counters.expired_count,
            "expired_bytes": self.counters.expired_bytes,
            "torn": self.counters.torn,
            "purged": self.counters.purged,
            "acked": self.counters.acked,
            "max_events": self.config.max_events,
            "max_bytes": self.config.max_bytes,
        }

    # ---- changes ----------------------------------------------------------------------------

    def put(self, record_id: str, topic: str, kind: str, payload: bytes, expires_at: float | None) -> Record:
        """Write the event durably (fsynced) and return its record; old records expire to make room."""
        now = self.clock()
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
        blob = seal(body)
        size = len(blob)
        if size > self.config.max_bytes:
            raise ValueError(f"event of {size} bytes exceeds the outbox limit of {self.config.max_bytes}")
        self.expire(extra_count=1, extra_bytes=size)
        seq = self._next_seq
        self._next_seq += 1
        write_atomic(self._path(seq), blob)
        rec = Record(seq, record_id, topic, kind, now, expires, size)
        self._add(rec)
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
        now = self.clock()
        dropped = 0
        # Expiry times are not monotonic in seq order (events carry their own expiry), so scan them all.
        for rec in [r for r in self._index.values() if r.expires_at <= now]:
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
                payload = self._read(self._path(rec.seq))["payload"].encode("utf-8")
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

    @staticmethod
    def _read(path: Path) -> dict:
        data = json.loads(read_sealed(path))
        if not isinstance(data, dict) or data.get("format") != RECORD_FORMAT:
            raise ValueError(f"{path.name}: not an outbox record of format {RECORD_FORMAT}")
        return data

    def _load(self) -> None:
        for tmp in self.dir.glob(".*.tmp"):
            # A write that a crash interrupted before its rename: never a published or acked record.
            log.warning("outbox: removing interrupted write %s", tmp.name)
            tmp.unlink(missing_ok=True)
            self.counters.torn += 1
        for path in sorted(self.dir.glob(f"*{SUFFIX}")):
            try:
                seq = int(path.stem)
                data = self._read(path)
                rec = Record(
                    seq,
                    str(data["id"]),
                    str(data["topic"]),
                    str(data["kind"]),
                    float(data["created_at"]),
                    float(data["expires_at"]),
                    path.stat().st_size,
                )
            except (TornFileError, OSError, KeyError, ValueError, TypeError) as exc:
                log.warning("outbox: torn record %s not loaded: %s", path.name, exc)
                path.unlink(missing_ok=True)
                self.counters.torn += 1
                continue
            self._add(rec)
        self._save_counters()
        self.expire()

    def _add(self, rec: Record) -> None:
        self._index[rec.seq] = rec
        self._by_id[rec.id] = rec.seq
        self._bytes += rec.size

    def _remove(self, seq: int) -> None:
        rec = self._index.pop(seq)
        self._by_id.pop(rec.id, None)
        self._bytes -= rec.size
        # No directory fsync: if a power cut resurrects the file, the event is sent again (at least once).
        self._path(seq).unlink(missing_ok=True)

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
        write_atomic(self.dir / COUNTERS, json.dumps(asdict(self.counters)).encode())
