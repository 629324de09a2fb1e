"""The back office's audit log: every enrolment, removal, correction, consent, role change and export, each
entry chained to the one before it.

An entry's hash is SHA-256 over the RFC 8785 (canonical JSON) form of {seq, at, actor, action, target,
details, prev_hash}, and `prev_hash` is the previous entry's hash (64 zeros for the first). Changing an
entry's content breaks its own hash; deleting or inserting one breaks the sequence or the next entry's
`prev_hash`; `verify` walks the whole chain and names the first entry that does not hold. Cutting entries off
the END leaves a shorter chain that still holds: every append logs its sequence number and hash (the
service log, journald), and `verify(expect=...)` checks the chain still holds a head recorded earlier.

Appends are serialised across instances: one transaction that holds the log (SQLite BEGIN IMMEDIATE, a
PostgreSQL advisory lock) reads the head and writes the next entry. Nothing biometric is ever written here:
ids, names of staff, reasons and counts only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import rfc8785

from faceonly_backend.db import Database

log = logging.getLogger(__name__)
GENESIS = "0" * 64


@dataclass(frozen=True)
class Actor:
    """Who did it: a staff member, an integration's API token, the command line, or the backend itself."""

    name: str  # e.g. "alice", "token:payroll", "cli:root", "system:retention", "lab"
    role: str  # admin | hr | viewer (what it was allowed)

    def __str__(self) -> str:
        return self.name


SYSTEM = Actor("system", "admin")


def command_line_actor() -> Actor:
    """Who runs `faceonly backend ...` on the backend's machine: the login name, with the admin role that
    access to the database (and the keys) gives anyway."""
    import getpass
    import os

    try:
        who = getpass.getuser()
    except (KeyError, OSError):
        who = str(os.getuid())
    return Actor(f"cli:{who}", "admin")


@dataclass(frozen=True)
class Entry:
    seq: int
    at: float
    actor: str
    action: str
    target: str
    details: dict[str, Any]
    prev_hash: str
    hash: str

    def as_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "at": self.at,
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "details": self.details,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


@dataclass(frozen=True)
class Verdict:
    ok: bool
    entries: int
    head_seq: int
    head_hash: str
    first_bad: int | None = None  # the sequence number of the first entry that does not hold
    problem: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "entries": self.entries,
            "head": {"seq": self.head_seq, "hash": self.head_hash},
            "first_bad": self.first_bad,
            "problem": self.problem,
        }


def entry_hash(seq: int, at: float, actor: str, action: str, target: str, details: Any, prev: str) -> str:
    content = {
        "seq": seq,
        "at": at,
        "actor": actor,
        "action": action,
        "target": target,
        "details": details,
        "prev_hash": prev,
    }
    return hashlib.sha256(rfc8785.dumps(content)).hexdigest()


class AuditLog:
    def __init__(self, db: Database) -> None:
        self.db = db

    def append(self, actor: Actor | str, action: str, target: str, **details: Any) -> Entry:
        """Chain one entry to the head and store it; the entry."""
        # Milliseconds: a float that survives both databases' DOUBLE PRECISION and JSON exactly.
        at = round(time.time(), 3)
        body = json.loads(json.dumps(details))  # what is stored is what was hashed (tuples -> lists)
        with self.db.lock, self.db.tx(immediate=True) as tx:
            tx.serialise("audit_log")
            head = tx.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchall()
            seq, prev = (int(head[0][0]) + 1, str(head[0][1])) if head else (1, GENESIS)
            digest = entry_hash(seq, at, str(actor), action, target, body, prev)
            tx.execute(
                "INSERT INTO audit_log (seq, at, actor, action, target, details, prev_hash, hash) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (seq, at, str(actor), action, target, json.dumps(body, sort_keys=True), prev, digest),
            )
        log.info("audit #%d %s %s by %s: %s", seq, action, target, actor, digest)
        return Entry(seq, at, str(actor), action, target, body, prev, digest)

    def entries(self, limit: int = 100, before: int | None = None, action: str | None = None) -> list[Entry]:
        """Newest first."""
        where: list[str] = []
        params: list[Any] = []
        if before is not None:
            where.append("seq < ?")
            params.append(before)
        if action is not None:
            where.append("action = ?")
            params.append(action)
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        rows = self.db.query(
            "SELECT seq, at, actor, action, target, details, prev_hash, hash FROM audit_log "
            f"{clause}ORDER BY seq DESC LIMIT ?",
            (*params, limit),
        )
        return [_entry(r) for r in rows]

    def verify(self, expect: tuple[int, str] | None = None, page: int = 5000) -> Verdict:
        """Walk the chain from the first entry; `expect` (seq, hash): a head recorded earlier that must
        still be in it."""
        prev, seq, count, expected_seen = GENESIS, 0, 0, expect is None
        while True:
            rows = self.db.query(
                "SELECT seq, at, actor, action, target, details, prev_hash, hash FROM audit_log "
                "WHERE seq > ? ORDER BY seq LIMIT ?",
                (seq, page),
            )
            if not rows:
                break
            for row in rows:
                problem, entry = _check(row, seq + 1, prev)
                at_seq = entry.seq if entry is not None else int(row[0])
                if problem is not None:
                    return Verdict(False, count, seq, prev, at_seq, problem)
                assert entry is not None
                if expect is not None and entry.seq == expect[0]:
                    if entry.hash != expect[1]:
                        return Verdict(
                            False, count, seq, prev, entry.seq, "not the entry recorded earlier at this place"
                        )
                    expected_seen = True
                prev, seq, count = entry.hash, entry.seq, count + 1
        if not expected_seen:
            assert expect is not None
            return Verdict(
                False,
                count,
                seq,
                prev,
                seq + 1,
                f"the log ends at entry {seq}, before the head recorded earlier (entry {expect[0]}): "
                "entries were cut off its end",
            )
        return Verdict(True, count, seq, prev)


def _entry(row: tuple[Any, ...]) -> Entry:
    seq, at, actor, action, target, details, prev, digest = row
    return Entry(int(seq), float(at), str(actor), str(action), str(target), json.loads(details), prev, digest)


def _check(row: tuple[Any, ...], want_seq: int, prev: str) -> tuple[str | None, Entry | None]:
    """(what is wrong with this row, or None; the entry when it reads)."""
    try:
        entry = _entry(row)
    except (TypeError, ValueError) as exc:
        return f"the entry does not read ({exc})", None
    if entry.seq != want_seq:
        return f"entry {want_seq} is missing (the next one is {entry.seq}): an entry was deleted", entry
    if entry.prev_hash != prev:
        return (
            "its previous-entry hash does not match the entry before it: an entry before it was changed, "
            "deleted or inserted"
        ), entry
    recomputed = entry_hash(
        entry.seq, entry.at, entry.actor, entry.action, entry.target, entry.details, entry.prev_hash
    )
    if recomputed != entry.hash:
        return "its content does not match its hash: the entry was modified", entry
    return None, entry
