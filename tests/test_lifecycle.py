"""device.runtime.lifecycle against a real AF_UNIX datagram receiver (path and abstract), and real signals."""

from __future__ import annotations

import os
import signal
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from device.runtime.lifecycle import Lifecycle, Notifier, watchdog_interval


class Receiver:
    """What systemd does with NOTIFY_SOCKET: bind a datagram socket and read KEY=value messages."""

    def __init__(self, sock: socket.socket, env_value: str) -> None:
        self.sock = sock
        self.env_value = env_value
        sock.settimeout(2.0)

    def recv(self) -> dict[str, str]:
        data = self.sock.recv(4096).decode()
        return dict(line.split("=", 1) for line in data.split("\n"))

    def pending(self) -> list[dict[str, str]]:
        out = []
        self.sock.setblocking(False)
        try:
            while True:
                try:
                    data = self.sock.recv(4096).decode()
                except BlockingIOError:
                    return out
                out.append(dict(line.split("=", 1) for line in data.split("\n")))
        finally:
            self.sock.settimeout(2.0)


@pytest.fixture(params=["path", "abstract"])
def receiver(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Receiver]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if request.param == "path":
        path = tmp_path / "notify.sock"
        sock.bind(str(path))
        env_value = str(path)
    else:
        name = f"faceonly-test-{uuid.uuid4().hex}"
        sock.bind(b"\0" + name.encode())
        env_value = "@" + name
    with sock:
        yield Receiver(sock, env_value)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_ready_status_stopping_reach_the_socket(receiver: Receiver) -> None:
    life = Lifecycle({"NOTIFY_SOCKET": receiver.env_value})
    life.ready("3 models verified, camera up")
    assert receiver.recv() == {"READY": "1", "STATUS": "3 models verified, camera up"}
    life.status("outbox: 2 queued")
    assert receiver.recv() == {"STATUS": "outbox: 2 queued"}
    life.stopping()
    assert receiver.recv()["STOPPING"] == "1"


def test_reloading_carries_the_monotonic_clock(receiver: Receiver) -> None:
    life = Lifecycle({"NOTIFY_SOCKET": receiver.env_value})
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    life.reloading()
    msg = receiver.recv()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert msg["RELOADING"] == "1"
    assert before <= int(msg["MONOTONIC_USEC"]) <= after


def test_watchdog_pets_at_most_every_half_period(receiver: Receiver) -> None:
    clock = Clock()
    env = {"NOTIFY_SOCKET": receiver.env_value, "WATCHDOG_USEC": "4000000", "WATCHDOG_PID": str(os.getpid())}
    life = Lifecycle(env, clock=clock)
    assert life.watchdog_interval == 2.0
    life.ready()
    receiver.recv()
    # 10 fps for 1.9 s: not yet due (the watchdog was armed at READY=1).
    for _ in range(19):
        clock.now += 0.1
        life.frame_processed()
    assert receiver.pending() == []
    clock.now += 0.1
    life.frame_processed()
    assert receiver.pending() == [{"WATCHDOG": "1"}]
    # Frames keep coming: one pet per 2 s, never more.
    for _ in range(40):
        clock.now += 0.1
        life.frame_processed()
    assert receiver.pending() == [{"WATCHDOG": "1"}, {"WATCHDOG": "1"}]


def test_no_pets_before_ready(receiver: Receiver) -> None:
    clock = Clock()
    life = Lifecycle({"NOTIFY_SOCKET": receiver.env_value, "WATCHDOG_USEC": "1000000"}, clock=clock)
    for _ in range(30):  # frames during start-up, before the service declared itself ready
        clock.now += 0.1
        life.frame_processed()
    assert receiver.pending() == []
    life.ready()
    assert receiver.recv()["READY"] == "1"


def test_no_frames_no_pets(receiver: Receiver) -> None:
    clock = Clock()
    life = Lifecycle({"NOTIFY_SOCKET": receiver.env_value, "WATCHDOG_USEC": "1000000"}, clock=clock)
    life.ready()
    receiver.recv()
    clock.now += 60  # a stalled source: the loop never reports a processed frame
    assert receiver.pending() == []
    life.frame_processed()  # the first frame after the stall pets at once
    assert receiver.pending() == [{"WATCHDOG": "1"}]


def test_watchdog_for_another_pid_is_not_ours(receiver: Receiver) -> None:
    env = {"NOTIFY_SOCKET": receiver.env_value, "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}
    life = Lifecycle(env)
    assert life.watchdog_interval is None
    life.ready()
    receiver.recv()
    life.frame_processed()
    assert receiver.pending() == []


@pytest.mark.parametrize("value", ["", "0", "-5", "soon"])
def test_bad_or_absent_watchdog_usec_disables_pets(value: str) -> None:
    assert watchdog_interval({"WATCHDOG_USEC": value}) is None


def test_without_notify_socket_everything_is_a_no_op() -> None:
    life = Lifecycle({})
    life.ready()
    life.frame_processed()
    life.reloading()
    life.stopping()
    assert not Notifier({}).enabled
    assert Notifier({}).send("READY=1") is False


def test_unsupported_address_disables_notifications() -> None:
    assert not Notifier({"NOTIFY_SOCKET": "vsock:2:1234"}).enabled


def test_a_vanished_socket_is_reported_not_raised(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert notifier.send("READY=1") is False
    assert notifier.send("WATCHDOG=1") is False
    warnings = [r for r in caplog.records if "sd_notify" in r.getMessage()]
    assert len(warnings) == 1  # reported once, not once per frame


@given(st.text(max_size=200))
def test_status_is_always_one_field(text: str) -> None:
    name = f"faceonly-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        Lifecycle({"NOTIFY_SOCKET": "@" + name}).status(text)
        lines = sock.recv(65536).decode().split("\n")
    assert len(lines) == 1
    assert lines[0].startswith("STATUS=")


@pytest.fixture
def restore_signals() -> Iterator[None]:
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.mark.usefixtures("restore_signals")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_term_and_int_request_a_stop(sig: signal.Signals) -> None:
    life = Lifecycle({})
    life.install_signal_handlers()
    assert not life.stop_requested
    os.kill(os.getpid(), sig)
    assert life.stop_requested
    assert not life.take_reload()


@pytest.mark.usefixtures("restore_signals")
def test_hup_requests_one_reload() -> None:
    life = Lifecycle({})
    life.install_signal_handlers()
    assert not life.take_reload()
    os.kill(os.getpid(), signal.SIGHUP)
    assert life.take_reload()
    assert not life.take_reload()  # consumed
    assert not life.stop_requested
