"""The durable outbox: order, PUBACK-only removal, bounds with counted expiry, torn records, purge."""

from __future__ import annotations

import json
import os
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from device.config.mqtt import OutboxConfig
from device.transport.outbox import Outbox


class Clock:
    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class Clocks:
    """The wall clock (stamps) and the monotonic clock (ages), advanced together unless a test steps one."""

    def __init__(self) -> None:
        self.wall, self.mono = Clock(), Clock(5_000.0)

    def advance(self, s: float) -> None:
        self.wall.t += s
        self.mono.t += s

    def outbox(self, d: Path, cfg: OutboxConfig) -> Outbox:
        return Outbox(d, cfg, clock=self.wall, monotonic=self.mono)


def _put(box: Outbox, i: int, size: int = 50, expires_at: float | None = None):
    payload = json.dumps({"id": f"e{i}", "pad": "x" * size}).encode()
    return box.put(f"e{i}", "faceonly/v1/dev/t/event/face", "event.face", payload, expires_at)


def test_survives_reopen_in_order_and_leaves_only_on_ack(tmp_path: Path) -> None:
    box = Outbox(tmp_path, OutboxConfig())
    for i in range(5):
        _put(box, i)
    assert box.ack("e1") and not box.ack("e1")
    again = Outbox(tmp_path, OutboxConfig())  # a restarted process
    assert [r.id for r in again.oldest(10)] == ["e0", "e2", "e3", "e4"]
    assert json.loads(again.oldest(1)[0].payload)["id"] == "e0"
    _put(again, 9)
    assert [r.id for r in again.oldest(10)][-1] == "e9"  # sequence continues after the restart


def test_count_bound_expires_oldest_and_counts(tmp_path: Path) -> None:
    box = Outbox(tmp_path, OutboxConfig(max_events=3))
    for i in range(10):
        _put(box, i)
    assert [r.id for r in box.oldest(10)] == ["e7", "e8", "e9"]
    assert box.stats()["expired_count"] == 7
    assert Outbox(tmp_path, OutboxConfig(max_events=3)).stats()["expired"] == 7  # counters persist


def test_bytes_and_age_bounds(tmp_path: Path) -> None:
    clocks = Clocks()
    box = clocks.outbox(tmp_path, OutboxConfig(max_bytes=2048, max_age_s=60))
    for i in range(20):
        _put(box, i, size=200)
        assert box.size_bytes <= 2048
    assert box.stats()["expired_bytes"] > 0
    left = len(box)
    clocks.advance(61)
    assert box.expire() == left
    assert len(box) == 0 and box.stats()["expired_age"] == left


def test_payload_expiry_shorter_than_age(tmp_path: Path) -> None:
    clocks = Clocks()
    box = clocks.outbox(tmp_path, OutboxConfig(max_age_s=3600))
    _put(box, 1, expires_at=clocks.wall.t + 10)
    _put(box, 2)
    clocks.advance(11)
    assert [r.id for r in box.oldest(10)] == ["e2"]
    assert box.stats()["expired_age"] == 1


def test_wall_clock_steps_expire_nothing_early_or_late(tmp_path: Path) -> None:
    """A Pi has no RTC: NTP steps its clock after boot, by an hour or by decades (from 1970). Within a run,
    ages and expiry run on the monotonic clock; the wall clock only stamps."""
    clocks = Clocks()
    box = clocks.outbox(tmp_path, OutboxConfig(max_age_s=600))
    _put(box, 1, expires_at=clocks.wall.t + 60)
    _put(box, 2)
    for step in (3600.0, -7200.0, 1_700_000_000.0):
        clocks.wall.t += step
        assert box.expire() == 0 and len(box) == 2
    clocks.mono.t += 30
    assert box.stats()["oldest_age_s"] == 30.0
    clocks.mono.t += 31  # 61 s on the monotonic clock: e1's own expiry has passed, e2's age bound not
    assert [r.id for r in box.oldest(10)] == ["e2"]
    clocks.mono.t += 540
    assert box.expire() == 1 and box.stats()["expired_age"] == 2


def test_a_restart_carries_ages_over_by_the_wall_clock_within_bounds(tmp_path: Path) -> None:
    clocks = Clocks()
    box = clocks.outbox(tmp_path, OutboxConfig(max_age_s=600))
    _put(box, 1)
    clocks.advance(100)
    # Restarted 100 s later on the wall clock (after a reboot the monotonic clock starts again).
    again = Outbox(tmp_path, OutboxConfig(max_age_s=600), clock=clocks.wall, monotonic=Clock(0.0))
    assert again.stats()["oldest_age_s"] == 100.0
    # Booted with the clock at 1970 (no RTC, no NTP yet): the record keeps at most its whole age bound.
    early = Outbox(tmp_path, OutboxConfig(max_age_s=600), clock=Clock(0.0), monotonic=Clock(0.0))
    assert len(early) == 1 and early.stats()["oldest_age_s"] == 0.0
    rec = early.oldest(1)[0]
    assert early.remaining_s(rec) == 600.0


def test_torn_records_are_reported_and_never_loaded(tmp_path: Path) -> None:
    box = Outbox(tmp_path, OutboxConfig())
    recs = [_put(box, i) for i in range(3)]
    victim = tmp_path / f"{recs[1].seq:012d}.evt"
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])  # a torn write
    (tmp_path / ".000000000009.evt.abc.tmp").write_bytes(b"half")  # interrupted before rename
    again = Outbox(tmp_path, OutboxConfig())
    assert [r.id for r in again.oldest(10)] == ["e0", "e2"]
    assert again.stats()["torn"] == 2
    assert not victim.exists() and not list(tmp_path.glob("*.tmp"))


def test_purge(tmp_path: Path) -> None:
    box = Outbox(tmp_path, OutboxConfig())
    for i in range(4):
        _put(box, i)
    assert box.purge() == 4
    assert len(box) == 0 and not list(tmp_path.glob("*.evt"))
    assert box.stats()["purged"] == 4
    assert os.stat(tmp_path).st_mode & 0o077 == 0


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["put", "ack", "reopen"]), st.integers(0, 30)), max_size=40))
def test_bounds_hold_under_any_sequence(tmp_path_factory, ops) -> None:
    d = tmp_path_factory.mktemp("ob")
    cfg = OutboxConfig(max_events=5, max_bytes=4096)
    box = Outbox(d, cfg)
    n = acked = 0
    for op, k in ops:
        if op == "put":
            _put(box, n, size=k * 20)
            n += 1
        elif op == "ack":
            acked += box.ack(f"e{k}")
        else:
            box = Outbox(d, cfg)
        assert len(box) <= 5 and box.size_bytes <= 4096
        assert box.size_bytes == sum(p.stat().st_size for p in d.glob("*.evt"))
    # Every event is accounted for: still queued, acknowledged, or counted as expired.
    assert box.stats()["depth"] + acked + box.stats()["expired"] == n


def test_purge_where_erases_only_the_events_a_subject_is_named_in(tmp_path):
    from device.identity.wiring import names_subject

    box = Outbox(tmp_path / "ob", OutboxConfig())
    for i, subject in enumerate(["ann", None, "bob", "ann"]):
        body = {"id": f"e{i}", "match": {"subject": subject}} if subject or i == 1 else {"id": f"e{i}"}
        box.put(f"e{i}", "t", "event.face", json.dumps(body).encode(), None)
    assert box.purge_where(lambda payload: names_subject(payload, "ann")) == 2
    assert len(box) == 2 and "e0" not in box and "e3" not in box and "e2" in box
    assert Outbox(tmp_path / "ob", OutboxConfig()).stats()["depth"] == 2  # gone from disk too
