"""The backend's store: SQLite (WAL, one file) by default, PostgreSQL (psycopg 3) for a `postgresql://` URL.

One schema and one set of statements for both (written with `?`; PostgreSQL gets `%s`). The event id is
the attendance table's primary key, so recording is idempotent whatever the broker redelivers and however
many instances share the work: `INSERT ... ON CONFLICT DO NOTHING` tells a new event from a duplicate.
Every call takes the store's lock: the ingest worker writes and the web handlers read through one
connection, and a batch (records, quarantine counts) is one transaction.
"""

from __future__ import annotations

import calendar
import contextlib
import json
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def database_errors() -> tuple[type[Exception], ...]:
    """What the drivers raise for a database that fails (psycopg only where it is installed)."""
    try:
        import psycopg
    except ImportError:
        return (sqlite3.Error, OSError)
    return (sqlite3.Error, psycopg.Error, OSError)


DATABASE_ERRORS = database_errors()

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS terminals (
        id TEXT PRIMARY KEY, public_key TEXT NOT NULL, added_at DOUBLE PRECISION NOT NULL,
        state TEXT, status_at DOUBLE PRECISION, health TEXT, health_at DOUBLE PRECISION, gallery_version BIGINT)""",
    """CREATE TABLE IF NOT EXISTS attendance (
        event_id TEXT PRIMARY KEY, terminal TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL,
        received_at DOUBLE PRECISION NOT NULL, decision TEXT NOT NULL, subject TEXT, score DOUBLE PRECISION,
        match_source TEXT NOT NULL, reasons TEXT NOT NULL, liveness TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS attendance_created ON attendance (created_at)",
    "CREATE TABLE IF NOT EXISTS quarantine (reason TEXT PRIMARY KEY, count BIGINT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS subjects (
        id TEXT PRIMARY KEY, display_name TEXT, added_at DOUBLE PRECISION NOT NULL, source TEXT NOT NULL)""",
    "CREATE TABLE IF NOT EXISTS galleries (version BIGINT PRIMARY KEY, update_file {blob} NOT NULL)",
)
RECORD_COLUMNS = (
    "event_id",
    "terminal",
    "created_at",
    "received_at",
    "decision",
    "subject",
    "score",
    "match_source",
    "reasons",
    "liveness",
)


ROWS_PER_INSERT = 100  # 1,000 bound values: within every SQLite build's limit


class StoreError(RuntimeError):
    """The store cannot be opened or used (the message names it)."""


@dataclass(frozen=True)
class Record:
    """One attendance row: who (or unknown), where, when, what was decided and why."""

    event_id: str
    terminal: str
    created_at: float
    received_at: float
    decision: str
    subject: str | None
    score: float | None
    match_source: str  # "terminal" (its on-device match), "backend" (central gallery) or "none"
    reasons: tuple[dict[str, str], ...]
    liveness: dict[str, float]

    def row(self) -> tuple[Any, ...]:
        return (
            self.event_id,
            self.terminal,
            self.created_at,
            self.received_at,
            self.decision,
            self.subject,
            self.score,
            self.match_source,
            json.dumps(list(self.reasons)),
            json.dumps(self.liveness),
        )

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Record:
        values = dict(zip(RECORD_COLUMNS, row, strict=True))
        values["reasons"] = tuple(json.loads(values["reasons"]))
        values["liveness"] = json.loads(values["liveness"])
        return cls(**values)

    def as_json(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "terminal": self.terminal,
            "created_at": self.created_at,
            "received_at": self.received_at,
            "decision": self.decision,
            "subject": self.subject,
            "score": self.score,
            "match_source": self.match_source,
            "reasons": list(self.reasons),
            "liveness": self.liveness,
        }


@dataclass(frozen=True)
class Terminal:
    id: str
    public_key: str
    added_at: float
    state: str | None
    status_at: float | None
    health: dict[str, Any] | None
    health_at: float | None
    gallery_version: int | None


class Store:
    def __init__(self, target: str) -> None:
        """`target`: a SQLite file path, or a postgresql:// URL."""
        self.target = target
        self.postgres = target.startswith(("postgresql://", "postgres://"))
        self._lock = threading.Lock()
        try:
            self._conn = self._open_postgres(target) if self.postgres else self._open_sqlite(Path(target))
            blob = "BYTEA" if self.postgres else "BLOB"
            with self._lock, self._tx() as cur:
                for statement in SCHEMA:
                    cur.execute(statement.replace("{blob}", blob))
        except DATABASE_ERRORS as exc:
            raise StoreError(f"store {self.where}: {' '.join(str(exc).split())}") from None

    def reconnect(self) -> None:
        """A new connection after a failure (a restarted PostgreSQL drops every connection)."""
        with self._lock:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = (
                self._open_postgres(self.target) if self.postgres else self._open_sqlite(Path(self.target))
            )

    @property
    def where(self) -> str:
        """The target without a password (for messages and logs)."""
        if not self.postgres:
            return self.target
        from urllib.parse import urlsplit

        parts = urlsplit(self.target)
        host = parts.hostname or ""
        return f"{parts.scheme}://{parts.username + '@' if parts.username else ''}{host}:{parts.port}{parts.path}"

    @staticmethod
    def _open_sqlite(path: Path) -> sqlite3.Connection:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across a process crash
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    @staticmethod
    def _open_postgres(url: str):
        import psycopg

        return psycopg.connect(url, autocommit=True)

    def _sql(self, statement: str) -> str:
        return statement.replace("?", "%s") if self.postgres else statement

    class _Tx:
        def __init__(self, store: Store) -> None:
            self.store = store

        def __enter__(self):
            self.cur = self.store._conn.cursor()
            self.cur.execute("BEGIN")
            return self

        def execute(self, statement: str, params: Sequence[Any] = ()) -> Any:
            self.cur.execute(self.store._sql(statement), tuple(params))
            return self.cur

        def __exit__(self, kind, value, tb) -> None:
            self.cur.execute("COMMIT" if kind is None else "ROLLBACK")
            self.cur.close()

    def _tx(self) -> Store._Tx:
        return Store._Tx(self)

    def _query(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            cur = self._conn.cursor()
            try:
                cur.execute(self._sql(statement), tuple(params))
                return [tuple(r) for r in cur.fetchall()]
            finally:
                cur.close()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # ---- terminals -----------------------------------------------------------------------------

    def add_terminal(self, terminal_id: str, public_key: str) -> bool:
        """Pin `public_key` for `terminal_id`; False if it was pinned already (a key is replaced explicitly)."""
        with self._lock, self._tx() as tx:
            cur = tx.execute(
                "INSERT INTO terminals (id, public_key, added_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                (terminal_id, public_key, time.time()),
            )
            return cur.rowcount == 1

    def terminal_keys(self) -> dict[str, str]:
        return {str(tid): str(key) for tid, key in self._query("SELECT id, public_key FROM terminals")}

    def terminals(self) -> list[Terminal]:
        rows = self._query(
            "SELECT id, public_key, added_at, state, status_at, health, health_at, gallery_version "
            "FROM terminals ORDER BY id"
        )
        return [Terminal(r[0], r[1], r[2], r[3], r[4], _json_or_none(r[5]), r[6], r[7]) for r in rows]

    def terminal_status(
        self, terminal_id: str, state: str, at: float, gallery_version: int | None, future_after: float
    ) -> str:
        """Apply a terminal's signed status if it is newer than the stored one: "applied", "same" (this
        very state again) or "stale". Newer is a later `at`; at the same `at`, offline over online (a
        terminal's last will is signed with the time of the connection whose birth it follows). A stored
        time beyond `future_after` (written before such state was refused) never blocks a newer one."""
        with self._lock, self._tx() as tx:
            cur = tx.execute(
                "UPDATE terminals SET state = ?, status_at = ?, gallery_version = COALESCE(?, gallery_version) "
                "WHERE id = ? AND (status_at IS NULL OR status_at < ? OR status_at > ? "
                "OR (status_at = ? AND state = 'online' AND ? = 'offline'))",
                (state, at, gallery_version, terminal_id, at, future_after, at, state),
            )
            if cur.rowcount == 1:
                return "applied"
            held = tx.execute(
                "SELECT status_at, state FROM terminals WHERE id = ?", (terminal_id,)
            ).fetchall()
        return "same" if held and tuple(held[0]) == (at, state) else "stale"

    def terminal_health(
        self, terminal_id: str, health: dict[str, Any], at: float, future_after: float
    ) -> str:
        """Apply a terminal's signed health if newer than the stored one: "applied", "same" or "stale"."""
        with self._lock, self._tx() as tx:
            cur = tx.execute(
                "UPDATE terminals SET health = ?, health_at = ? "
                "WHERE id = ? AND (health_at IS NULL OR health_at < ? OR health_at > ?)",
                (json.dumps(health), at, terminal_id, at, future_after),
            )
            if cur.rowcount == 1:
                return "applied"
            held = tx.execute("SELECT health_at FROM terminals WHERE id = ?", (terminal_id,)).fetchall()
        return "same" if held and held[0][0] == at else "stale"

    def terminal_gallery(self, terminal_id: str, version: int) -> None:
        """The gallery version a terminal confirmed in its reply to a push (its state stays as signed)."""
        with self._lock, self._tx() as tx:
            tx.execute("UPDATE terminals SET gallery_version = ? WHERE id = ?", (version, terminal_id))

    # ---- attendance and quarantine ---------------------------------------------------------------

    def record(self, records: Iterable[Record], quarantined: Iterable[str] = ()) -> list[bool]:
        """Insert `records` and count `quarantined` reasons in one transaction. Returns, per record, True
        if it was new; a record whose event id is already stored changes nothing and counts as a duplicate."""
        rows = [rec.row() for rec in records]
        reasons = list(quarantined)
        with self._lock, self._tx() as tx:
            new_ids: set[str] = set()
            for at in range(0, len(rows), ROWS_PER_INSERT):
                chunk = rows[at : at + ROWS_PER_INSERT]
                # One statement per chunk (a round trip, not one per row, matters on PostgreSQL); a conflict,
                # with a stored row or an earlier one in the same statement, inserts nothing and returns nothing.
                cur = tx.execute(
                    f"INSERT INTO attendance ({', '.join(RECORD_COLUMNS)}) VALUES "
                    + ", ".join([f"({', '.join('?' * len(RECORD_COLUMNS))})"] * len(chunk))
                    + " ON CONFLICT DO NOTHING RETURNING event_id",
                    [v for row in chunk for v in row],
                )
                new_ids.update(r[0] for r in cur.fetchall())
            inserted = []
            for row in rows:
                new = row[0] in new_ids
                new_ids.discard(row[0])  # a second record with the same id in this batch is a duplicate
                inserted.append(new)
                if not new:
                    reasons.append("duplicate")
            for reason, count in Counter(reasons).items():
                tx.execute(
                    "INSERT INTO quarantine (reason, count) VALUES (?, ?) "
                    "ON CONFLICT (reason) DO UPDATE SET count = quarantine.count + excluded.count",
                    (reason, count),
                )
        return inserted

    def events(self, limit: int = 100, day: str | None = None, terminal: str | None = None) -> list[Record]:
        """Recorded events newest first; `day` (YYYY-MM-DD, UTC) filters by the terminal's event time."""
        where: list[str] = []
        params: list[Any] = []
        if day is not None:
            start = _utc_midnight(day)
            where.append("created_at >= ? AND created_at < ?")
            params += [start, start + 86400]
        if terminal is not None:
            where.append("terminal = ?")
            params.append(terminal)
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        rows = self._query(
            f"SELECT {', '.join(RECORD_COLUMNS)} FROM attendance {clause}"
            f"ORDER BY created_at DESC, event_id DESC LIMIT ?",
            (*params, limit),
        )
        return [Record.from_row(r) for r in rows]

    def event_ids(self) -> list[str]:
        return [r[0] for r in self._query("SELECT event_id FROM attendance")]

    def quarantine(self) -> dict[str, int]:
        return {str(k): int(v) for k, v in self._query("SELECT reason, count FROM quarantine")}

    def expire_attendance(self, before: float) -> int:
        with self._lock, self._tx() as tx:
            return tx.execute("DELETE FROM attendance WHERE created_at < ?", (before,)).rowcount

    # ---- subjects and galleries ------------------------------------------------------------------

    def put_subject(self, subject_id: str, display_name: str | None, source: str) -> None:
        with self._lock, self._tx() as tx:
            tx.execute(
                "INSERT INTO subjects (id, display_name, added_at, source) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET display_name = excluded.display_name, source = excluded.source",
                (subject_id, display_name, time.time(), source),
            )

    def subjects(self) -> list[tuple[str, str | None, float, str]]:
        rows = self._query("SELECT id, display_name, added_at, source FROM subjects ORDER BY id")
        return [(str(i), n, float(a), str(s)) for i, n, a, s in rows]

    def remove_subject(self, subject_id: str) -> list[str]:
        """Delete the subject and its attendance records (a purge); returns the deleted records' event ids."""
        with self._lock, self._tx() as tx:
            tx.execute("DELETE FROM subjects WHERE id = ?", (subject_id,))
            ids = [
                r[0]
                for r in tx.execute(
                    "SELECT event_id FROM attendance WHERE subject = ?", (subject_id,)
                ).fetchall()
            ]
            tx.execute("DELETE FROM attendance WHERE subject = ?", (subject_id,))
            return ids

    def put_gallery(self, version: int, update_file: bytes) -> None:
        """Store the new version and drop the older ones: only the latest is ever needed (the next delta is
        made on it, a terminal that lacks its base gets its snapshot), and an older version would still hold
        the templates of a subject removed since."""
        with self._lock, self._tx() as tx:
            tx.execute("INSERT INTO galleries (version, update_file) VALUES (?, ?)", (version, update_file))
            tx.execute("DELETE FROM galleries WHERE version < ?", (version,))

    def latest_gallery_version(self) -> int | None:
        rows = self._query("SELECT MAX(version) FROM galleries")
        return None if rows[0][0] is None else int(rows[0][0])

    def latest_gallery(self) -> bytes | None:
        rows = self._query("SELECT update_file FROM galleries ORDER BY version DESC LIMIT 1")
        return bytes(rows[0][0]) if rows else None


def _json_or_none(text: str | None) -> Any:
    """A stored JSON column, or None when it is empty or not JSON (the page shows whatever is stored)."""
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def _utc_midnight(day: str) -> float:
    """00:00 UTC of `day` (YYYY-MM-DD); ValueError for anything else."""
    return float(calendar.timegm(time.strptime(day, "%Y-%m-%d")))
