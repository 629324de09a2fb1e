"""The backend's database connection: SQLite (WAL, one file) by default, PostgreSQL (psycopg 3) for a
`postgresql://` URL, with one set of statements for both (written with `?`; PostgreSQL gets `%s`).

Every call takes the connection's lock: the ingest worker, the web handlers and the back-office jobs share
one connection per process, and a transaction is one `with db.tx():` block. The schema is migrated when the
database is opened (faceonly_backend/migrations.py), so a database made by an earlier version keeps working.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def database_errors() -> tuple[type[Exception], ...]:
    """What the drivers raise for a database that fails (psycopg only where it is installed)."""
    try:
        import psycopg
    except ImportError:
        return (sqlite3.Error, OSError)
    return (sqlite3.Error, psycopg.Error, OSError)


def integrity_errors() -> tuple[type[Exception], ...]:
    """A unique or primary key that is taken (two instances writing the same row at once)."""
    try:
        import psycopg
    except ImportError:
        return (sqlite3.IntegrityError,)
    return (sqlite3.IntegrityError, psycopg.errors.UniqueViolation)


DATABASE_ERRORS = database_errors()
INTEGRITY_ERRORS = integrity_errors()


class StoreError(RuntimeError):
    """The store cannot be opened or used (the message names it)."""


class Tx:
    """One transaction: `execute` statements written with `?`; committed on a clean exit, else rolled back."""

    def __init__(self, db: Database, immediate: bool) -> None:
        self.db, self.immediate = db, immediate

    def __enter__(self) -> Tx:
        self.cur = self.db._conn.cursor()
        # SQLite: take the write lock at BEGIN, so a read-then-write (the audit chain's head, a migration)
        # cannot be overtaken by another process between its read and its write.
        self.cur.execute("BEGIN IMMEDIATE" if self.immediate and not self.db.postgres else "BEGIN")
        return self

    def execute(self, statement: str, params: Sequence[Any] = ()) -> Any:
        self.cur.execute(self.db.sql(statement), tuple(params))
        return self.cur

    def serialise(self, name: str) -> None:
        """Until the end of this transaction, no other transaction serialising on `name` runs (PostgreSQL:
        an advisory lock, which needs no table to exist yet; SQLite's BEGIN IMMEDIATE already holds the
        whole database)."""
        if self.db.postgres:
            self.cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"faceonly.{name}",))

    def __exit__(self, kind, value, tb) -> None:
        try:
            self.cur.execute("COMMIT" if kind is None else "ROLLBACK")
        finally:
            self.cur.close()


class Database:
    def __init__(self, target: str) -> None:
        """`target`: a SQLite file path, or a postgresql:// URL. Opens and migrates (StoreError if it cannot)."""
        from faceonly_backend.migrations import migrate

        self.target = target
        self.postgres = target.startswith(("postgresql://", "postgres://"))
        self.lock = threading.RLock()
        try:
            self._conn = self._open()
            migrate(self)
        except DATABASE_ERRORS as exc:
            raise StoreError(f"store {self.where}: {' '.join(str(exc).split())}") from None

    def _open(self) -> Any:
        return _open_postgres(self.target) if self.postgres else _open_sqlite(Path(self.target))

    def reconnect(self) -> None:
        """A new connection after a failure (a restarted PostgreSQL drops every connection)."""
        with self.lock:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = self._open()

    @property
    def where(self) -> str:
        """The target without a password (for messages and logs)."""
        if not self.postgres:
            return self.target
        from urllib.parse import urlsplit

        parts = urlsplit(self.target)
        host = parts.hostname or ""
        return f"{parts.scheme}://{parts.username + '@' if parts.username else ''}{host}:{parts.port}{parts.path}"

    @property
    def blob(self) -> str:
        return "BYTEA" if self.postgres else "BLOB"

    def sql(self, statement: str) -> str:
        return statement.replace("?", "%s") if self.postgres else statement

    def tx(self, immediate: bool = False) -> Tx:
        """A transaction; the caller holds `self.lock` around it (`with db.lock, db.tx() as tx:`)."""
        return Tx(self, immediate)

    def query(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.lock:
            cur = self._conn.cursor()
            try:
                cur.execute(self.sql(statement), tuple(params))
                return [tuple(r) for r in cur.fetchall()]
            finally:
                cur.close()

    def write(self, statement: str, params: Sequence[Any] = ()) -> int:
        """One statement in its own transaction; the rows it changed."""
        with self.lock, self.tx() as tx:
            return int(tx.execute(statement, params).rowcount)

    def close(self) -> None:
        with self.lock:
            self._conn.close()


SQLITE_BUSY_WAIT_S = 30.0


def _open_sqlite(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=SQLITE_BUSY_WAIT_S)
    try:
        _use_wal(conn)
        conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across a process crash
    except BaseException:
        conn.close()
        raise
    return conn


def _use_wal(conn: sqlite3.Connection) -> None:
    """Switch the file to WAL, waiting for other connections as long as the busy timeout.

    SQLite answers this switch with "database is locked" at once, without calling its busy handler, while
    another connection holds the file: several backends opening a new or pre-WAL database at once race for
    it. Once the file is WAL the statement changes nothing and takes no lock. A file that cannot be WAL at all
    (SQLite then answers with its old mode) is refused at once."""
    deadline = time.monotonic() + SQLITE_BUSY_WAIT_S
    pause = 0.005
    while True:
        try:
            mode = str(conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]).lower()
            break
        except sqlite3.OperationalError as exc:
            busy = getattr(exc, "sqlite_errorcode", None) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
            if not busy or time.monotonic() >= deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.2)
    if mode != "wal":
        raise sqlite3.OperationalError(f"cannot switch the database to WAL: it stays in {mode} mode")


def _open_postgres(url: str) -> Any:
    import psycopg

    return psycopg.connect(url, autocommit=True)
