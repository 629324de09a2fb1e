"""A database made by the backend before the back office keeps working: opened by today's backend, it is
migrated in place (new columns and tables), nothing it held is lost or changed, and the back office works on
it. On SQLite and PostgreSQL; two instances opening it at once migrate it once."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from faceonly_backend.audit import Actor
from faceonly_backend.db import Database
from faceonly_backend.migrations import LATEST, applied
from faceonly_backend.store import Store
from tests.office_parts import face_template, make_office

OLD = Path(__file__).with_name("data") / "backend-schema1.sql"
ALICE = Actor("alice", "hr")


def _make_old(db: str) -> None:
    """Run the old backend's dump into `db` (as that backend made it: no schema_migrations table)."""
    script = OLD.read_text(encoding="utf-8")
    if db.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(db, autocommit=True) as conn:
            conn.execute(script.replace(" BLOB ", " BYTEA ").encode())  # the old backend's blob type there
    else:
        import sqlite3

        with sqlite3.connect(db) as conn:
            conn.executescript(script)


def test_an_old_database_is_migrated_and_keeps_everything(database: str, tmp_path: Path) -> None:
    _make_old(database)
    store = Store(database)
    assert applied(store) == LATEST
    events = {r.event_id: r for r in store.events(10)}
    assert len(events) == 3
    first = events["11111111-1111-4111-8111-111111111111"]
    assert (first.subject, first.score, first.terminal, first.created_at) == (
        "emp-0001",
        0.97,
        "gate-01",
        1772611200.0,
    )
    assert first.reasons == ({"code": "liveness.passed", "text": "the challenge passed"},)
    assert first.liveness == {"blink": 0.4} and first.threshold is None and first.nearest is None
    assert store.quarantine() == {"forged": 1}
    (terminal,) = store.terminals()
    assert (terminal.id, terminal.state, terminal.gallery_version, terminal.gallery_authority) == (
        "gate-01",
        "online",
        3,
        None,
    )
    store.close()
    # The back office over it: the old subject is an active person (no consent on record: the page says so).
    office = make_office(tmp_path, database)
    (person,) = office.people.all()
    assert (person.id, person.display_name, person.status, person.source) == (
        "emp-0001",
        "Ana Silva",
        "active",
        "photos",
    )
    assert office.consents.active("emp-0001") is None
    days = office.attendance.report("2026-03-04", "2026-03-04")
    assert [(d["subject"], d["first_in"], d["last_out"], d["worked"]) for d in days] == [
        ("emp-0001", "08:00", "16:00", "8:00")
    ]
    office.corrections.correct(
        "33333333-3333-4333-8333-333333333333", "emp-0001", "she forgot to look up", ALICE
    )
    assert office.store.event("33333333-3333-4333-8333-333333333333").subject == "emp-0001"
    assert office.audit.verify().ok
    office.store.close()
    # Opening it again changes nothing more.
    again = Store(database)
    assert applied(again) == LATEST and len(again.events(10)) == 3
    again.close()


def test_two_instances_opening_an_old_database_at_once_migrate_it_once(database: str) -> None:
    _make_old(database)
    opened, errors = _open_at_once(database, 3)
    assert not errors, errors
    rows = opened[0].query("SELECT version FROM schema_migrations ORDER BY version")
    assert rows == [(v,) for v in range(1, LATEST + 1)]
    for db in opened:
        db.close()


def test_a_fresh_database_gets_the_whole_schema(database: str, tmp_path: Path) -> None:
    office = make_office(tmp_path, database, site={"profile": "none"})
    assert applied(office.store) == LATEST
    office.people.put("emp-1", "Bo", "photos")
    assert office.people.get("emp-1").status == "active"
    assert face_template().shape == (128,)
    office.store.close()


def _open_at_once(path: str, backends: int) -> tuple[list[Database], list[BaseException]]:
    """`backends` Stores opening `path` at the same moment, each on its own thread."""
    opened: list[Database] = []
    errors: list[BaseException] = []
    start = threading.Barrier(backends)

    def open_it() -> None:
        start.wait()
        try:
            opened.append(Store(path))
        except BaseException as exc:  # noqa: BLE001 - reported by the caller's assertion
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(backends)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return opened, errors


@pytest.mark.parametrize("kind", ["new", "old"])
def test_backends_opening_one_sqlite_file_at_once_all_open_it(kind: str, tmp_path: Path) -> None:
    """SQLite refuses the switch to WAL at once, without waiting, while another connection holds the file:
    every backend opening a new or pre-WAL file at the same moment must still open it, many times over."""
    for attempt in range(30):
        path = str(tmp_path / f"{kind}-{attempt}.sqlite")
        if kind == "old":
            _make_old(path)
        opened, errors = _open_at_once(path, 4)
        assert not errors, (attempt, errors)
        assert opened[0].query("PRAGMA journal_mode") == [("wal",)]
        assert applied(opened[0]) == LATEST
        for db in opened:
            db.close()
