"""Purge receipts: what a removal erased, where, and which terminals confirmed it when.

A purge is made when a subject's templates must go (deactivated, erased, consent withdrawn, retention
reached). It names every terminal registered at that moment; each is pending until its reply to the signed
`subject.purge` arrives (templates and queued events erased, with counts), and the receipt is complete when
all have confirmed. A terminal that is away is asked again when it comes back.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from faceonly_backend.db import Database


@dataclass(frozen=True)
class Purge:
    id: str
    subject: str
    reason: str
    requested_by: str
    requested_at: float
    gallery_version: int | None
    attendance: str  # what happened to the attendance records: kept | anonymised
    records: int  # attendance records concerned
    live_dropped: int  # live-view entries (thumbnails, raw bytes) dropped from memory


class PurgeBook:
    def __init__(self, db: Database) -> None:
        self.db = db

    def open(
        self,
        subject: str,
        reason: str,
        by: str,
        gallery_version: int | None,
        attendance: str,
        records: int,
        live_dropped: int,
    ) -> str:
        """A new purge awaiting every registered terminal's confirmation; its id."""
        purge_id, now = uuid.uuid4().hex, time.time()
        with self.db.lock, self.db.tx() as tx:
            tx.execute(
                "INSERT INTO purges (id, subject, reason, requested_by, requested_at, gallery_version, attendance, "
                "records, live_dropped) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (purge_id, subject, reason, by, now, gallery_version, attendance, records, live_dropped),
            )
            for (terminal,) in tx.execute("SELECT id FROM terminals").fetchall():
                tx.execute(
                    "INSERT INTO purge_terminals (purge_id, terminal) VALUES (?, ?)", (purge_id, terminal)
                )
        return purge_id

    def pending(self, terminal: str) -> list[tuple[str, str]]:
        """(purge id, subject) this terminal has not confirmed, oldest first."""
        rows = self.db.query(
            "SELECT p.id, p.subject FROM purges p JOIN purge_terminals t ON t.purge_id = p.id "
            "WHERE t.terminal = ? AND t.confirmed_at IS NULL ORDER BY p.requested_at",
            (terminal,),
        )
        return [(str(i), str(s)) for i, s in rows]

    def pending_terminals(self) -> set[str]:
        return {
            str(r[0])
            for r in self.db.query("SELECT terminal FROM purge_terminals WHERE confirmed_at IS NULL")
        }

    def confirm(self, purge_id: str, terminal: str, result: dict[str, Any]) -> None:
        def count(key: str) -> int | None:
            value = result.get(key)
            return value if isinstance(value, int) and not isinstance(value, bool) else None

        self.db.write(
            "UPDATE purge_terminals SET confirmed_at = ?, templates_erased = ?, events_erased = ?, last_error = NULL "
            "WHERE purge_id = ? AND terminal = ? AND confirmed_at IS NULL",
            (time.time(), count("templates_erased"), count("events_erased"), purge_id, terminal),
        )

    def failed(self, purge_id: str, terminal: str, error: str) -> None:
        self.db.write(
            "UPDATE purge_terminals SET last_error = ? WHERE purge_id = ? AND terminal = ?",
            (error[:300], purge_id, terminal),
        )

    def receipt(self, purge_id: str) -> dict[str, Any] | None:
        rows = self.db.query(
            "SELECT id, subject, reason, requested_by, requested_at, gallery_version, attendance, records, "
            "live_dropped FROM purges WHERE id = ?",
            (purge_id,),
        )
        if not rows:
            return None
        purge = Purge(*rows[0])
        terminals = [
            {
                "terminal": t,
                "confirmed_at": at,
                "templates_erased": templates,
                "events_erased": events,
                "last_error": error,
            }
            for t, at, templates, events, error in self.db.query(
                "SELECT terminal, confirmed_at, templates_erased, events_erased, last_error FROM purge_terminals "
                "WHERE purge_id = ? ORDER BY terminal",
                (purge_id,),
            )
        ]
        return {
            "purge_id": purge.id,
            "subject": purge.subject,
            "reason": purge.reason,
            "requested_by": purge.requested_by,
            "requested_at": purge.requested_at,
            "backend": {
                "templates_removed_in_gallery_version": purge.gallery_version,
                "live_view_entries_dropped": purge.live_dropped,
            },
            "attendance": {"records": purge.records, "policy": purge.attendance},
            "terminals": terminals,
            "complete": all(t["confirmed_at"] is not None for t in terminals),
        }

    def receipts(self, subject: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        where, params = ("WHERE subject = ? ", [subject]) if subject is not None else ("", [])
        rows = self.db.query(
            f"SELECT id FROM purges {where}ORDER BY requested_at DESC LIMIT ?", (*params, limit)
        )
        return [r for (purge_id,) in rows if (r := self.receipt(str(purge_id))) is not None]
