"""The backend's schema, as numbered migrations applied in order when the database is opened.

`schema_migrations` records which are applied. Migration 1 is the schema the first backend made (every
statement `IF NOT EXISTS`, so a database that backend made, which has no `schema_migrations` table, passes
through it unchanged and then takes the later ones). A migration runs in one transaction holding the
database against other migrations (SQLite BEGIN IMMEDIATE, a PostgreSQL advisory lock), and re-reads what is
applied inside it, so two instances starting at once migrate once. Migrations are only ever appended:
an applied one is never edited.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from faceonly_backend.db import Database

# {blob} is BLOB (SQLite) or BYTEA (PostgreSQL).
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: terminals, attendance, quarantine counts, subjects, the latest signed gallery (the first backend).
    (
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
    ),
    # 2: the back office (issue 23): why-not-recognised, corrections, the subject's life cycle, consent,
    # purge receipts, attendance adjustments, staff accounts, API tokens and the chained audit log.
    (
        "ALTER TABLE terminals ADD COLUMN gallery_sha256 TEXT",
        "ALTER TABLE terminals ADD COLUMN gallery_authority TEXT",
        "ALTER TABLE attendance ADD COLUMN threshold DOUBLE PRECISION",
        "ALTER TABLE attendance ADD COLUMN margin DOUBLE PRECISION",
        "ALTER TABLE attendance ADD COLUMN nearest TEXT",
        "ALTER TABLE attendance ADD COLUMN nearest_score DOUBLE PRECISION",
        "ALTER TABLE attendance ADD COLUMN original_subject TEXT",
        "ALTER TABLE attendance ADD COLUMN anonymised_at DOUBLE PRECISION",
        "CREATE INDEX IF NOT EXISTS attendance_subject ON attendance (subject, created_at)",
        "ALTER TABLE subjects ADD COLUMN status TEXT NOT NULL DEFAULT 'active'",
        "ALTER TABLE subjects ADD COLUMN group_name TEXT",
        "ALTER TABLE subjects ADD COLUMN end_date TEXT",
        "ALTER TABLE subjects ADD COLUMN consent_id TEXT",
        "ALTER TABLE subjects ADD COLUMN status_at DOUBLE PRECISION",
        """CREATE TABLE consent_texts (
            version TEXT PRIMARY KEY, sha256 TEXT NOT NULL, text TEXT NOT NULL, added_at DOUBLE PRECISION NOT NULL)""",
        """CREATE TABLE consents (
            id TEXT PRIMARY KEY, subject TEXT NOT NULL, person_name TEXT NOT NULL, text_version TEXT NOT NULL,
            text_sha256 TEXT NOT NULL, method TEXT NOT NULL, given_at DOUBLE PRECISION NOT NULL,
            collected_by TEXT NOT NULL, recorded_at DOUBLE PRECISION NOT NULL, withdrawn_at DOUBLE PRECISION)""",
        "CREATE INDEX consents_subject ON consents (subject)",
        """CREATE TABLE purges (
            id TEXT PRIMARY KEY, subject TEXT NOT NULL, reason TEXT NOT NULL, requested_by TEXT NOT NULL,
            requested_at DOUBLE PRECISION NOT NULL, gallery_version BIGINT, attendance TEXT NOT NULL,
            records BIGINT NOT NULL, live_dropped BIGINT NOT NULL DEFAULT 0)""",
        """CREATE TABLE purge_terminals (
            purge_id TEXT NOT NULL, terminal TEXT NOT NULL, confirmed_at DOUBLE PRECISION,
            templates_erased BIGINT, events_erased BIGINT, last_error TEXT, PRIMARY KEY (purge_id, terminal))""",
        """CREATE TABLE corrections (
            id TEXT PRIMARY KEY, event_id TEXT NOT NULL, wrong_subject TEXT, right_subject TEXT,
            reason TEXT NOT NULL, made_by TEXT NOT NULL, made_at DOUBLE PRECISION NOT NULL)""",
        "CREATE INDEX corrections_event ON corrections (event_id)",
        """CREATE TABLE adjustments (
            id TEXT PRIMARY KEY, subject TEXT NOT NULL, kind TEXT NOT NULL, event_id TEXT,
            at DOUBLE PRECISION NOT NULL, direction TEXT, reason TEXT NOT NULL, made_by TEXT NOT NULL,
            made_at DOUBLE PRECISION NOT NULL)""",
        "CREATE INDEX adjustments_subject ON adjustments (subject, at)",
        """CREATE TABLE staff (
            username TEXT PRIMARY KEY, password_hash TEXT NOT NULL, role TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL, created_by TEXT NOT NULL, disabled_at DOUBLE PRECISION)""",
        """CREATE TABLE sessions (
            id_sha256 TEXT PRIMARY KEY, username TEXT NOT NULL, csrf TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL, expires_at DOUBLE PRECISION NOT NULL)""",
        """CREATE TABLE api_tokens (
            id TEXT PRIMARY KEY, name TEXT NOT NULL, secret_sha256 TEXT NOT NULL, role TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL, created_by TEXT NOT NULL, revoked_at DOUBLE PRECISION,
            last_used_at DOUBLE PRECISION)""",
        """CREATE TABLE audit_log (
            seq BIGINT PRIMARY KEY, at DOUBLE PRECISION NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
            target TEXT NOT NULL, details TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL)""",
    ),
    # 3: door modes' passages (faceonly_backend/passback.py): who went through which door which way, and when.
    (
        """CREATE TABLE passages (
            event_id TEXT PRIMARY KEY, terminal TEXT NOT NULL, door TEXT NOT NULL, direction TEXT NOT NULL,
            subject TEXT NOT NULL, decided_at DOUBLE PRECISION NOT NULL)""",
        "CREATE INDEX passages_subject ON passages (subject, decided_at)",
    ),
)
LATEST = len(MIGRATIONS)


def applied(db: Database) -> int:
    rows = db.query("SELECT MAX(version) FROM schema_migrations")
    return int(rows[0][0] or 0)


def migrate(db: Database) -> list[int]:
    """Apply every migration the database lacks; the versions applied now."""
    done: list[int] = []
    for version, statements in enumerate(MIGRATIONS, start=1):
        with db.lock, db.tx(immediate=True) as tx:
            tx.serialise("migrations")
            tx.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, "
                "applied_at DOUBLE PRECISION NOT NULL)"
            )
            held = tx.execute(
                "SELECT version FROM schema_migrations WHERE version = ?", (version,)
            ).fetchall()
            if held:
                continue
            for statement in statements:
                tx.execute(statement.replace("{blob}", db.blob))
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)", (version, time.time())
            )
            done.append(version)
    return done
