"""Health alarms (device/runtime/alarms.py): each rule raises and clears, with one log line per change."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from device.config.mqtt import OutboxConfig
from device.runtime.alarms import Alarms
from device.transport.outbox import Outbox
from tests.api_schemas import validator


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


RUNNING = {"ended": False, "error": None}
ROOMY = {"storage_fault": None, "free_bytes": 10**12, "reserve_bytes": 10, "max_bytes": 100, "bytes": 0}


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _alarms(clock: Clock) -> Alarms:
    return Alarms(stall_s=10.0, duplicate_hold_s=60.0, clock=clock, wall=lambda: 1.7e9)


def test_all_clear_matches_the_health_schema_shape(clock: Clock) -> None:
    snap = _alarms(clock).snapshot(RUNNING, ROOMY)
    assert snap == {n: {"active": False, "reason": None, "since": None} for n in snap}
    schema = validator("health.json").schema
    alarms = {"type": "object", "properties": schema["properties"]["alarms"]["properties"]}
    assert set(snap) == set(alarms["properties"])


def test_camera_stall_raises_after_the_limit_and_clears_on_the_next_frame(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    alarms = _alarms(clock)
    clock.t += 9.9
    assert not alarms.snapshot(RUNNING, ROOMY)["camera_stall"]["active"]  # grace period from start
    clock.t += 0.2
    with caplog.at_level(logging.INFO, "device.runtime.alarms"):
        for _ in range(5):  # five health ticks while stalled: one log line
            stalled = alarms.snapshot(RUNNING, ROOMY)["camera_stall"]
            clock.t += 1
        alarms.frame()
        assert not alarms.snapshot(RUNNING, ROOMY)["camera_stall"]["active"]
    assert stalled["active"] and "no frame for" in stalled["reason"] and stalled["since"] == 1.7e9
    assert [r.getMessage().split(":")[0] for r in caplog.records] == ["alarm raised", "alarm cleared"]
    assert caplog.records[0].FACEONLY_ALARM == "camera_stall"  # a journal field


def test_a_source_error_is_a_stall_and_a_finished_replay_is_not(clock: Clock) -> None:
    alarms = _alarms(clock)
    clock.t += 100
    assert not alarms.snapshot({"ended": True, "error": None}, ROOMY)["camera_stall"]["active"]
    broken = alarms.snapshot({"ended": True, "error": "CameraError: unplugged"}, ROOMY)["camera_stall"]
    assert broken["active"] and "CameraError: unplugged" in broken["reason"]


def test_auth_failure_holds_until_a_successful_connect(clock: Clock) -> None:
    alarms = _alarms(clock)
    alarms.auth_refused("broker mqtt://b:1883 refused the connection: Not authorized")
    assert alarms.snapshot(RUNNING, ROOMY)["auth_failure"]["active"]
    assert alarms.active == ["auth_failure"]
    alarms.connected()
    assert not alarms.snapshot(RUNNING, ROOMY)["auth_failure"]["active"]


def test_duplicate_id_holds_for_the_hold_time(clock: Clock) -> None:
    alarms = _alarms(clock)
    alarms.taken_over("an instance started at 1.000 published online status at 2.000")
    assert alarms.snapshot(RUNNING, ROOMY)["duplicate_id"]["active"]
    clock.t += 59
    assert alarms.snapshot(RUNNING, ROOMY)["duplicate_id"]["active"]
    clock.t += 2
    assert not alarms.snapshot(RUNNING, ROOMY)["duplicate_id"]["active"]


def test_disk_alarm_from_a_real_outbox(tmp_path: Path, clock: Clock) -> None:
    alarms = _alarms(clock)
    roomy = Outbox(tmp_path / "ok", OutboxConfig(max_bytes=1024 * 1024, reserve_bytes=1024))
    assert not alarms.snapshot(RUNNING, roomy.stats())["disk"]["active"]
    # A reserve larger than any disk: the outbox can no longer grow to its bound.
    tight = Outbox(tmp_path / "tight", OutboxConfig(reserve_bytes=2**62))
    disk = alarms.snapshot(RUNNING, tight.stats())["disk"]
    assert disk["active"] and disk["reason"].startswith("low space on the state filesystem")
    faulty = {**roomy.stats(), "storage_fault": "state storage failing (Read-only file system)"}
    assert alarms.snapshot(RUNNING, faulty)["disk"]["reason"] == faulty["storage_fault"]
