"""The backend's store for what ingest writes and the page reads: terminals, attendance records, quarantine
counts and the latest signed gallery (faceonly_backend/db.py holds the connection and its dialects).

The event id is the attendance table's primary key, so recording is idempotent whatever the broker
redelivers and however many instances share the work: `INSERT ... ON CONFLICT DO NOTHING` tells a new event
from a duplicate. A batch (records, quarantine counts) is one transaction. The back office keeps its own
tables beside these (people, consent, audit, accounts, adjustments), each in its own module.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from faceonly_backend.db import DATABASE_ERRORS, Database, StoreError

__all__ = ["DATABASE_ERRORS", "Record", "StateUpdate", "Store", "StoreError", "Terminal"]

# Written by ingest, in this order.
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
    "threshold",
    "margin",
    "nearest",
    "nearest_score",
)
# Read back: what ingest wrote, and what a correction changed.
READ_COLUMNS = (*RECORD_COLUMNS, "original_subject")

ROWS_PER_INSERT = 60  # 840 bound values: within every SQLite build's limit


@dataclass(frozen=True)
class Record:
    """One attendance row: who (or unknown), where, when, what was decided and why, and how near it came."""

    event_id: str
    terminal: str
    created_at: float
    received_at: float
    decision: str
    subject: str | None
    score: float | None
    match_source: str  # "terminal" (its on-device match), "backend" (central gallery), "credential" or "none"
    reasons: tuple[dict[str, str], ...]
    liveness: dict[str, float]
    threshold: float | None = None  # the threshold in force for this decision
    margin: float | None = None  # best minus second-best subject score
    nearest: str | None = None  # the best-scoring subject, matched or not (central search, or the match)
    nearest_score: float | None = None
    original_subject: str | None = None  # set by a correction: who the record named before

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
            self.threshold,
            self.margin,
            self.nearest,
            self.nearest_score,
        )

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Record:
        values = dict(zip(READ_COLUMNS, row, strict=True))
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
            "threshold": self.threshold,
            "margin": self.margin,
            "nearest": self.nearest,
            "nearest_score": self.nearest_score,
            "original_subject": self.original_subject,
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
    gallery_sha256: str | None = None
    gallery_authority: str | None = None


class Store(Database):
    """`Store(target)`: a SQLite file path or a postgresql:// URL, opened and migrated."""

    # ---- terminals -----------------------------------------------------------------------------

    def add_terminal(self, terminal_id: str, public_key: str) -> bool:
        """Pin `public_key` for `terminal_id`; False if it was pinned already (a key is replaced explicitly)."""
        with self.lock, self.tx() as tx:
            cur = tx.execute(
                "INSERT INTO terminals (id, public_key, added_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                (terminal_id, public_key, time.time()),
            )
            return cur.rowcount == 1

    def add_terminals(self, rows: list[tuple[str, str]]) -> int:
        """Pin many (terminal id, public key) at once, in one transaction; how many were new."""
        added = 0
        with self.lock, self.tx() as tx:
            for terminal_id, public_key in rows:
                cur = tx.execute(
                    "INSERT INTO terminals (id, public_key, added_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                    (terminal_id, public_key, time.time()),
                )
                added += cur.rowcount == 1
        return added

    def terminal_keys(self) -> dict[str, str]:
        return {str(tid): str(key) for tid, key in self.query("SELECT id, public_key FROM terminals")}

    def terminals(self) -> list[Terminal]:
        rows = self.query(
            "SELECT id, public_key, added_at, state, status_at, health, health_at, gallery_version, "
            "gallery_sha256, gallery_authority FROM terminals ORDER BY id"
        )
        return [
            Terminal(r[0], r[1], r[2], r[3], r[4], _json_or_none(r[5]), r[6], r[7], r[8], r[9]) for r in rows
        ]

    def terminal_status(
        self,
        terminal_id: str,
        state: str,
        at: float,
        gallery_version: int | None,
        future_after: float,
        gallery_sha256: str | None = None,
        gallery_authority: str | None = None,
    ) -> str:
        """Apply a terminal's signed status if it is newer than the stored one: "applied", "same" (this
        very state again) or "stale". Newer is a later `at`; at the same `at`, offline over online (a
        terminal's last will is signed with the time of the connection whose birth it follows). A stored
        time beyond `future_after` (written before such state was refused) never blocks a newer one.
        The gallery's version, digest and authority are taken together when the status names a version."""
        with self.lock, self.tx() as tx:
            return _status_in(
                tx, terminal_id, state, at, gallery_version, future_after, gallery_sha256, gallery_authority
            )

    def terminal_health(
        self, terminal_id: str, health: dict[str, Any], at: float, future_after: float
    ) -> str:
        """Apply a terminal's signed health if newer than the stored one: "applied", "same" or "stale"."""
        with self.lock, self.tx() as tx:
            return _health_in(tx, terminal_id, health, at, future_after)

    def terminal_states(self, updates: list[StateUpdate], future_after: float) -> list[str]:
        """Many statuses and healths (as terminal_status and terminal_health each) in one transaction: a fleet
        sends thousands, and one transaction each would be most of the backend's time. Outcomes in order."""
        with self.lock, self.tx() as tx:
            return [
                _status_in(
                    tx,
                    u.terminal,
                    u.state,
                    u.at,
                    u.gallery_version,
                    future_after,
                    u.gallery_sha256,
                    u.gallery_authority,
                )
                if u.state is not None
                else _health_in(tx, u.terminal, u.health or {}, u.at, future_after)
                for u in updates
            ]

    def terminal_gallery(
        self, terminal_id: str, version: int, sha256: str | None, authority: str | None
    ) -> None:
        """The gallery a terminal confirmed in its reply to a push (its state stays as signed)."""
        with self.lock, self.tx() as tx:
            tx.execute(
                "UPDATE terminals SET gallery_version = ?, gallery_sha256 = ?, gallery_authority = ? WHERE id = ?",
                (version, sha256, authority, terminal_id),
            )

    # ---- attendance and quarantine ---------------------------------------------------------------

    def record(self, records: Iterable[Record], quarantined: Iterable[str] = ()) -> list[bool]:
        """Insert `records` and count `quarantined` reasons in one transaction. Returns, per record, True
        if it was new; a record whose event id is already stored changes nothing and counts as a duplicate."""
        rows = [rec.row() for rec in records]
        reasons = list(quarantined)
        with self.lock, self.tx() as tx:
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

    def events(
        self,
        limit: int = 100,
        since: float | None = None,
        until: float | None = None,
        terminal: str | None = None,
        subject: str | None = None,
    ) -> list[Record]:
        """Recorded events newest first, by the terminal's event time in [since, until)."""
        where: list[str] = []
        params: list[Any] = []
        for clause, value in (
            ("created_at >= ?", since),
            ("created_at < ?", until),
            ("terminal = ?", terminal),
            ("subject = ?", subject),
        ):
            if value is not None:
                where.append(clause)
                params.append(value)
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        rows = self.query(
            f"SELECT {', '.join(READ_COLUMNS)} FROM attendance {clause}"
            f"ORDER BY created_at DESC, event_id DESC LIMIT ?",
            (*params, limit),
        )
        return [Record.from_row(r) for r in rows]

    def event(self, event_id: str) -> Record | None:
        rows = self.query(f"SELECT {', '.join(READ_COLUMNS)} FROM attendance WHERE event_id = ?", (event_id,))
        return Record.from_row(rows[0]) if rows else None

    def event_ids(self) -> list[str]:
        return [r[0] for r in self.query("SELECT event_id FROM attendance")]

    def quarantine(self) -> dict[str, int]:
        return {str(k): int(v) for k, v in self.query("SELECT reason, count FROM quarantine")}

    def expire_attendance(self, before: float) -> int:
        with self.lock, self.tx() as tx:
            return tx.execute("DELETE FROM attendance WHERE created_at < ?", (before,)).rowcount

    # ---- the central gallery ---------------------------------------------------------------------

    def put_gallery(self, version: int, update_file: bytes) -> None:
        """Store the new version and drop the older ones: only the latest is ever needed (the next delta is
        made on it, a terminal that lacks its base gets its snapshot), and an older version would still hold
        the templates of a subject removed since."""
        with self.lock, self.tx() as tx:
            tx.execute("INSERT INTO galleries (version, update_file) VALUES (?, ?)", (version, update_file))
            tx.execute("DELETE FROM galleries WHERE version < ?", (version,))

    def latest_gallery_version(self) -> int | None:
        rows = self.query("SELECT MAX(version) FROM galleries")
        return None if rows[0][0] is None else int(rows[0][0])

    def latest_gallery(self) -> bytes | None:
        rows = self.query("SELECT update_file FROM galleries ORDER BY version DESC LIMIT 1")
        return bytes(rows[0][0]) if rows else None


def _json_or_none(text: str | None) -> Any:
    """A stored JSON column, or None when it is empty or not JSON (the page shows whatever is stored)."""
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


@dataclass(frozen=True)
class StateUpdate:
    """A checked status (`state` set) or health (`health` set) of one terminal, dated by the terminal."""

    terminal: str
    at: float
    state: str | None = None
    gallery_version: int | None = None
    health: dict[str, Any] | None = None
    gallery_sha256: str | None = None
    gallery_authority: str | None = None


def _status_in(  # noqa: PLR0913 - a status's fields, as the terminal signed them
    tx: Any,
    terminal_id: str,
    state: str,
    at: float,
    gallery_version: int | None,
    future_after: float,
    gallery_sha256: str | None,
    gallery_authority: str | None,
) -> str:
    gallery, values = "", [state, at]
    if gallery_version is not None:
        gallery = ", gallery_version = ?, gallery_sha256 = ?, gallery_authority = ?"
        values += [gallery_version, gallery_sha256, gallery_authority]
    cur = tx.execute(
        f"UPDATE terminals SET state = ?, status_at = ?{gallery} "
        "WHERE id = ? AND (status_at IS NULL OR status_at < ? OR status_at > ? "
        "OR (status_at = ? AND state = 'online' AND ? = 'offline'))",
        (*values, terminal_id, at, future_after, at, state),
    )
    if cur.rowcount == 1:
        return "applied"
    held = tx.execute("SELECT status_at, state FROM terminals WHERE id = ?", (terminal_id,)).fetchall()
    return "same" if held and tuple(held[0]) == (at, state) else "stale"


def _health_in(tx: Any, terminal_id: str, health: dict[str, Any], at: float, future_after: float) -> str:
    cur = tx.execute(
        "UPDATE terminals SET health = ?, health_at = ? "
        "WHERE id = ? AND (health_at IS NULL OR health_at < ? OR health_at > ?)",
        (json.dumps(health), at, terminal_id, at, future_after),
    )
    if cur.rowcount == 1:
        return "applied"
    held = tx.execute("SELECT health_at FROM terminals WHERE id = ?", (terminal_id,)).fetchall()
    return "same" if held and held[0][0] == at else "stale"
