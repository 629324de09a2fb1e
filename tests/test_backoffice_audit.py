"""The audit log: each entry chained to the one before; the chain verifies end to end, and a modified,
deleted or inserted entry (or entries cut off the end, against a head recorded earlier) is found and named.
On SQLite and PostgreSQL, through the store and through `faceonly backend audit verify`."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from faceonly_backend.audit import Actor, AuditLog
from faceonly_backend.store import Store

ROOT = Path(__file__).resolve().parent.parent
ALICE = Actor("alice", "admin")


def _verify_cli(db: str, *extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "device", "backend", "audit", "verify", "--db", db, *extra]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)


def _filled(db: str, n: int = 6) -> tuple[Store, AuditLog]:
    store = Store(db)
    log = AuditLog(store)
    for i in range(n):
        log.append(ALICE, "subject.enrol", f"emp-{i:04d}", gallery_version=i + 1, score=0.5 + i / 10)
    return store, log


def test_an_untouched_chain_verifies_end_to_end(database: str) -> None:
    store, log = _filled(database)
    verdict = log.verify()
    assert verdict.ok and verdict.entries == 6 and verdict.head_seq == 6
    entries = log.entries(10)
    assert [e.seq for e in entries] == [6, 5, 4, 3, 2, 1]
    assert all(a.prev_hash == b.hash for a, b in itertools.pairwise(entries))
    assert entries[-1].prev_hash == "0" * 64
    result = _verify_cli(database)
    assert result.returncode == 0 and f"6 entries, head 6:{verdict.head_hash}" in result.stdout
    assert _verify_cli(database, "--expect", f"6:{verdict.head_hash}").returncode == 0
    store.close()


def test_a_modified_entry_is_named(database: str) -> None:
    store, log = _filled(database)
    store.write("UPDATE audit_log SET target = ? WHERE seq = 3", ("emp-9999",))
    verdict = log.verify()
    assert not verdict.ok and verdict.first_bad == 3 and "modified" in str(verdict.problem)
    assert verdict.entries == 2  # 1 and 2 still hold
    # Details changed (a number turned into another), even keeping the JSON valid: found.
    store.write("UPDATE audit_log SET target = ? WHERE seq = 3", ("emp-0002",))
    assert log.verify().ok
    details = json.loads(store.query("SELECT details FROM audit_log WHERE seq = 5")[0][0])
    details["gallery_version"] = 42
    store.write("UPDATE audit_log SET details = ? WHERE seq = 5", (json.dumps(details),))
    assert log.verify().first_bad == 5
    result = _verify_cli(database)
    assert result.returncode == 1 and "BROKEN at entry 5" in result.stderr and "modified" in result.stderr
    store.close()


def test_a_deleted_entry_is_named(database: str) -> None:
    store, log = _filled(database)
    store.write("DELETE FROM audit_log WHERE seq = 4")
    verdict = log.verify()
    assert not verdict.ok and verdict.first_bad == 5 and "entry 4 is missing" in str(verdict.problem)
    result = _verify_cli(database)
    assert result.returncode == 1 and "BROKEN at entry 5" in result.stderr
    store.close()


def test_a_rewritten_tail_is_caught_by_the_next_entry_and_a_cut_tail_by_a_recorded_head(
    database: str,
) -> None:
    store, log = _filled(database)
    head = log.verify()
    # Someone deletes entry 3 and renumbers 4.. down to close the gap: the hashes no longer chain.
    store.write("DELETE FROM audit_log WHERE seq = 3")
    for seq in (4, 5, 6):
        store.write("UPDATE audit_log SET seq = ? WHERE seq = ?", (seq - 1, seq))
    verdict = log.verify()
    assert not verdict.ok and verdict.first_bad == 3 and "previous-entry hash" in str(verdict.problem)
    store.close()
    # A fresh chain cut at its end still chains; the head recorded earlier says entries are gone.
    store = Store(database)
    log = AuditLog(store)
    store.write("DELETE FROM audit_log")
    for _ in range(6):
        log.append(ALICE, "export.attendance", "2026-03-01..2026-03-31", rows=12)
    head = log.verify()
    store.write("DELETE FROM audit_log WHERE seq >= 5")
    assert log.verify().ok  # a shorter chain holds on its own...
    cut = log.verify(expect=(head.head_seq, head.head_hash))
    assert not cut.ok and "cut off its end" in str(cut.problem)
    result = _verify_cli(database, "--expect", f"{head.head_seq}:{head.head_hash}")
    assert result.returncode == 1 and "cut off its end" in result.stderr
    store.close()


def test_appends_from_many_threads_and_two_connections_stay_one_chain(database: str) -> None:
    a, b = Store(database), Store(database)  # two connections: as two backend instances
    logs = [AuditLog(a), AuditLog(b)]

    def work(n: int) -> None:
        for i in range(10):
            logs[n % 2].append(Actor(f"worker-{n}", "hr"), "event.correct", f"e-{n}-{i}")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    verdict = logs[0].verify()
    assert verdict.ok and verdict.entries == 40, verdict
    a.close()
    b.close()


@pytest.mark.parametrize("details", [{}, {"reason": "twins: Anna and Hanna", "n": [1, 2.5, None]}])
def test_what_is_stored_is_what_was_hashed(tmp_path: Path, details: dict) -> None:
    store = Store(str(tmp_path / "a.sqlite"))
    log = AuditLog(store)
    entry = log.append("cli:root", "subject.enrol.override", "emp-0042", **details)
    assert log.entries(1)[0] == entry and log.verify().ok
    store.close()
