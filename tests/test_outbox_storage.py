"""The outbox on bad storage days, on a real tmpfs: full, filled by others, read-only, odd entries."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from device.config.mqtt import OutboxConfig
from device.transport.outbox import Outbox
from tests.tmpfs import Tmpfs, require_mount, tmpfs

TOPIC = "faceonly/v1/dev/t/event/face"
PAD = 3000  # about one tmpfs page per record


def _put(box: Outbox, i: int, size: int = PAD):
    payload = json.dumps({"id": f"e{i}", "pad": "x" * size}).encode()
    return box.put(f"e{i}", TOPIC, "event.face", payload, None)


def _ids(box: Outbox) -> list[str]:
    return [r.id for r in box.oldest(100_000)]


@pytest.fixture
def fs(tmp_path: Path) -> Iterator[Tmpfs]:
    with tmpfs(tmp_path / "state", "256k") as mounted:
        yield mounted


def test_a_full_disk_expires_the_oldest_events_and_keeps_the_reserve(fs: Tmpfs) -> None:
    cfg = OutboxConfig(reserve_bytes=64 * 1024)
    box = Outbox(fs.path / "outbox", cfg)
    for i in range(200):  # about 800 KB into 256 KB
        _put(box, i)
        assert fs.free_bytes() >= cfg.reserve_bytes - 8192  # never eats far into the reserve
    ids = _ids(box)
    assert ids == [f"e{i}" for i in range(200 - len(ids), 200)], "not the newest events that were kept"
    stats = box.stats()
    assert stats["expired_space"] == 200 - len(ids) > 0 and stats["storage_fault"] is None
    assert stats["held"] == 0
    assert _ids(Outbox(fs.path / "outbox", cfg)) == ids  # all of them really on disk


def test_a_disk_filled_by_others_holds_events_in_memory_and_writes_them_when_space_returns(fs: Tmpfs) -> None:
    cfg = OutboxConfig(reserve_bytes=16 * 1024, max_held_events=5)
    box = Outbox(fs.path / "outbox", cfg)
    for i in range(3):
        _put(box, i)
    fs.fill(leave_bytes=8 * 1024)  # below the reserve: expiring our 3 events could not make room
    for i in range(3, 12):
        _put(box, i)
    stats = box.stats()
    assert stats["storage_fault"] and "held in memory" in stats["storage_fault"]
    assert stats["held"] == 5 and stats["expired_held"] == 4
    assert _ids(box) == ["e0", "e1", "e2", *[f"e{i}" for i in range(7, 12)]]  # oldest held dropped first
    fs.unfill()
    box.retry_storage(force=True)
    assert box.fault is None and box.stats()["held"] == 0
    assert _ids(Outbox(fs.path / "outbox", cfg)) == _ids(box)


def test_read_only_mid_backlog_never_crashes_and_resends_nothing_acked(fs: Tmpfs) -> None:
    cfg = OutboxConfig(reserve_bytes=0)
    box = Outbox(fs.path / "outbox", cfg)
    for i in range(10):
        _put(box, i)
    fs.read_only()
    for i in range(10, 15):
        _put(box, i)  # held in memory
    assert box.fault and box.stats()["held"] == 5
    for i in (0, 1, 2, 10, 11):  # acks for stored and for held events
        assert box.ack(f"e{i}")
    assert _ids(box) == [f"e{i}" for i in (3, 4, 5, 6, 7, 8, 9, 12, 13, 14)]
    box.retry_storage(force=True)
    assert box.fault  # still read-only
    fs.read_write()
    box.retry_storage(force=True)
    assert box.fault is None
    again = Outbox(fs.path / "outbox", cfg)  # a restart after recovery: exactly what was not acked
    assert _ids(again) == _ids(box)
    assert again.stats()["acked"] == 5


def test_starting_on_a_read_only_or_full_state_dir_works(fs: Tmpfs) -> None:
    cfg = OutboxConfig(reserve_bytes=0)
    box = Outbox(fs.path / "outbox", cfg)
    for i in range(4):
        _put(box, i)
    (fs.path / "outbox" / ".000000000009.evt.x.tmp").write_bytes(b"half")
    fs.read_only()
    ro = Outbox(fs.path / "outbox", cfg)
    assert _ids(ro) == ["e0", "e1", "e2", "e3"]
    assert ro.ack("e0")
    fs.read_write()
    fs.fill()
    full = Outbox(fs.path / "outbox", cfg)
    assert _ids(full) == ["e0", "e1", "e2", "e3"]  # the ack was lost with the process: sent again
    assert all(full.ack(f"e{i}") for i in range(4)) and len(full) == 0  # it drains


def test_entries_that_are_not_records_are_reported_skipped_and_left_alone(tmp_path: Path, caplog) -> None:
    box = Outbox(tmp_path, OutboxConfig())
    _put(box, 0)
    (tmp_path / "x.evt").mkdir()
    (tmp_path / "000000000007.evt").mkdir()
    (tmp_path / "notes.evt").write_text("someone's file")
    again = Outbox(tmp_path, OutboxConfig())
    assert _ids(again) == ["e0"] and again.stats()["foreign_entries"] == 3
    assert "x.evt is not an outbox record" in caplog.text
    rec = _put(again, 1)
    assert rec.seq == 8  # never the number of a foreign entry
    assert (tmp_path / "x.evt").is_dir() and (tmp_path / "notes.evt").is_file()
    assert _ids(Outbox(tmp_path, OutboxConfig())) == ["e0", "e1"]


@pytest.fixture(scope="module")
def shared_fs(tmp_path_factory) -> Iterator[Tmpfs]:
    require_mount()
    with tmpfs(tmp_path_factory.mktemp("prop") / "state", "192k") as mounted:
        yield mounted


OPS = st.lists(
    st.tuples(
        st.sampled_from(["put", "put", "ack", "ro", "rw", "fill", "unfill", "retry", "reopen"]),
        st.integers(0, 40),
    ),
    max_size=40,
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(OPS)
def test_every_event_is_accounted_for_on_any_storage_day(shared_fs: Tmpfs, ops) -> None:  # noqa: C901 - model-based test: one branch per storage operation
    fs = shared_fs
    fs.read_write()
    fs.unfill()
    d = fs.path / "outbox"
    if d.exists():
        for p in d.iterdir():
            p.unlink()
    cfg = OutboxConfig(max_events=30, reserve_bytes=16 * 1024, max_held_events=6)
    box = Outbox(d, cfg)
    n = acked = 0
    for op, k in ops:
        if op == "put":
            _put(box, n, size=k * 100)
            n += 1
        elif op == "ack":
            acked += box.ack(f"e{k}")
        elif op == "ro":
            fs.read_only()
        elif op == "rw":
            fs.read_write()
        elif op == "fill":
            fs.read_write()
            fs.fill(leave_bytes=4096)
        elif op == "unfill":
            fs.read_write()
            fs.unfill()
        elif op == "retry":
            box.retry_storage(force=True)
        elif op == "reopen":
            box.retry_storage(force=True)
            if box.fault is None:  # a restart after recovery: nothing was only in memory
                before = _ids(box)
                box = Outbox(d, cfg)
                assert _ids(box) == before
        stats = box.stats()
        assert stats["held"] <= cfg.max_held_events and stats["depth"] <= cfg.max_events
        assert stats["depth"] + acked + stats["expired"] == n
    fs.read_write()
    fs.unfill()
    box.retry_storage(force=True)
    assert box.fault is None and box.stats()["held"] == 0
    assert _ids(Outbox(d, cfg)) == _ids(box)  # after recovery the disk holds exactly the queue
