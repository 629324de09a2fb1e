"""`faceonly run` as systemd sees it: a subprocess with a fake NOTIFY_SOCKET receiver (real AF_UNIX datagrams),
a real mosquitto (tests/broker.py), real models and a replay of a real face (scikit-image's astronaut).

The service runs under the kernel's W^X switch (PR_SET_MDWE) where the kernel has it, so every test here
also checks that MemoryDenyWriteExecute=true in systemd/faceonly.service holds for the whole service.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import paho.mqtt.client as mqtt
import pytest
from skimage import data as skdata

from device.config.mqtt import OutboxConfig
from device.infra.paths import models_dir
from device.transport.envelope import encode, envelope
from device.transport.outbox import Outbox
from device.transport.topics import Topics
from tests.broker import Broker

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "faceonly.service"
TERMINAL = "life-1"
TOPICS = Topics("faceonly", TERMINAL)
FPS = 15.0
WATCHDOG_USEC = 1_000_000  # pets every 0.5 s; a real unit uses WatchdogSec=30s

pytestmark = pytest.mark.skipif(
    not (models_dir() / "manifest.json").is_file(), reason="models/manifest.json is not built yet"
)


def _unit_seconds(key: str) -> float:
    match = re.search(rf"^{key}=(\d+)s?$", UNIT.read_text(), re.M)
    assert match, f"{key} missing from {UNIT}"
    return float(match.group(1))


STOP_TIMEOUT_S = _unit_seconds("TimeoutStopSec")


# ---- a fake systemd notify socket ---------------------------------------------------------------


class NotifyReceiver:
    """Binds an abstract AF_UNIX datagram socket (as systemd does) and records every message with its time."""

    def __init__(self) -> None:
        self.name = f"faceonly-test-{uuid.uuid4().hex}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(b"\0" + self.name.encode())
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, dict[str, str]]] = []
        self._lock = threading.Lock()
        self._stop = False
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    @property
    def env_value(self) -> str:
        return "@" + self.name

    def _loop(self) -> None:
        while not self._stop:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            msg = dict(line.split("=", 1) for line in data.decode().split("\n") if "=" in line)
            with self._lock:
                self.messages.append((time.monotonic(), msg))

    def snapshot(self) -> list[tuple[float, dict[str, str]]]:
        with self._lock:
            return list(self.messages)

    def times(self, key: str, value: str = "1") -> list[float]:
        return [t for t, m in self.snapshot() if m.get(key) == value]

    def wait_for(self, key: str, value: str = "1", timeout: float = 60.0, after: float = 0.0) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hits = [t for t in self.times(key, value) if t >= after]
            if hits:
                return hits[0]
            time.sleep(0.05)
        raise AssertionError(f"no {key}={value} within {timeout}s; got {[m for _, m in self.snapshot()]}")

    def close(self) -> None:
        self._stop = True
        self._thread.join(2)
        self.sock.close()


# ---- a backend that listens ---------------------------------------------------------------------


@dataclass
class Listener:
    """A paho subscriber on the terminal's namespace: what a backend would see."""

    broker: Broker
    events: list[dict] = field(default_factory=list)
    statuses: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"backend-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
        )
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *_: c.subscribe(f"{TOPICS.base}/#", qos=1)
        self.client.connect(self.broker.host, self.broker.port)
        self.client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        body = json.loads(msg.payload)
        with self._lock:
            if msg.topic == TOPICS.event_face:
                self.events.append(body)
            elif msg.topic == TOPICS.status:
                self.statuses.append(body)

    def event_ids(self) -> set[str]:
        with self._lock:
            return {e["id"] for e in self.events}

    def wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def retained_status(broker: Broker) -> dict:
    """What a backend that connects now is told about the terminal's availability."""
    got: list[dict] = []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"probe-{uuid.uuid4().hex[:8]}")
    client.on_message = lambda c, u, m: got.append(json.loads(m.payload)) if m.retain else None
    client.on_connect = lambda c, *_: c.subscribe(TOPICS.status, qos=1)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        client.loop_stop()
        client.disconnect()
    assert got, "no retained status on the broker"
    return got[-1]


# ---- replays --------------------------------------------------------------------------------------


def _frames(folder: Path) -> tuple[str, str]:
    """A face frame (the astronaut, a real face) and an empty frame, both 640x480."""
    folder.mkdir(parents=True, exist_ok=True)
    canvas = np.full((480, 640, 3), 96, np.uint8)
    face = cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR)
    face_frame = canvas.copy()
    face_frame[:, 64:576] = cv2.resize(face, (512, 480))
    cv2.imwrite(str(folder / "face.png"), face_frame)
    cv2.imwrite(str(folder / "empty.png"), canvas)
    return "face.png", "empty.png"


def make_replay(folder: Path, visits: int, stall_after_s: float | None = None) -> Path:
    """`visits` times: the face for 1 s, then an empty scene for 1 s (the track ends: one event per visit).

    With `stall_after_s`, one more frame comes an hour after that point: a source that hangs.
    """
    face, empty = _frames(folder)
    entries, t = [], 0.0
    for _ in range(visits):
        for name in [face] * int(FPS) + [empty] * int(FPS):
            entries.append({"file": name, "t": round(t, 4)})
            t += 1 / FPS
    if stall_after_s is not None:
        entries = [e for e in entries if e["t"] <= stall_after_s]
        entries.append({"file": empty, "t": entries[-1]["t"] + 3600})
    (folder / "replay.json").write_text(json.dumps({"format": 1, "frames": entries}))
    return folder


# ---- the service under test ---------------------------------------------------------------------

# Sets the kernel's memory-deny-write-execute flag (inherited across exec), then becomes `faceonly run`.
MDWE_LAUNCHER = (
    "import ctypes, os, sys\n"
    "ok = ctypes.CDLL(None, use_errno=True).prctl(65, 1, 0, 0, 0) == 0\n"
    "print('test launcher: MDWE', 'on' if ok else 'unavailable', file=sys.stderr, flush=True)\n"
    "os.execv(sys.executable, [sys.executable, '-m', 'device', *sys.argv[1:]])\n"
)


@dataclass
class Running:
    proc: subprocess.Popen[bytes]
    log_path: Path
    state_dir: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT_S) -> tuple[int, float]:
        start = time.monotonic()
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"no exit within {timeout}s of signal {sig}\n{self.log()[-3000:]}") from None
        return rc, time.monotonic() - start


@pytest.fixture
def notify() -> Iterator[NotifyReceiver]:
    receiver = NotifyReceiver()
    yield receiver
    receiver.close()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    with Broker(tmp_path / "mosq") as b:
        yield b


@pytest.fixture
def start_service(tmp_path: Path, notify: NotifyReceiver) -> Iterator[Callable[..., Running]]:
    procs: list[subprocess.Popen[bytes]] = []
    state_dir = tmp_path / "state"

    def start(source: str, broker_url: str, name: str = "run") -> Running:
        config = tmp_path / f"{name}.toml"
        config.write_text(
            f'terminal_id = "{TERMINAL}"\n'
            f'[service]\nstate_dir = "{state_dir}"\nstop_flush_s = 3.0\nhealth_interval_s = 1.0\n'
            f'[mqtt]\nbroker = "{broker_url}"\n'
            f'[vision]\nsource = "{source}"\nreplay_pace = "recorded"\n'
            # No liveness prompts: each visit of the face becomes one event after a few good frames.
            '[vision.liveness]\npolicy = "off"\n'
        )
        env = {**os.environ, "NOTIFY_SOCKET": notify.env_value, "WATCHDOG_USEC": str(WATCHDOG_USEC)}
        env.pop("WATCHDOG_PID", None)
        log_path = tmp_path / f"{name}.log"
        with open(log_path, "wb") as log_file:
            proc = subprocess.Popen(
                [sys.executable, "-c", MDWE_LAUNCHER, "run", "--config", str(config)],
                cwd=ROOT,
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        procs.append(proc)
        return Running(proc, log_path, state_dir)

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def queued_event_ids(log: str) -> set[str]:
    return set(re.findall(r"event ([0-9a-f-]{36}) queued", log))


# ---- tests ----------------------------------------------------------------------------------------


def test_ready_after_first_frame_watchdog_while_frames_flow_and_none_when_the_source_stalls(
    tmp_path: Path, notify: NotifyReceiver, broker: Broker, start_service: Callable[..., Running]
) -> None:
    replay = make_replay(tmp_path / "replay", visits=3, stall_after_s=4.0)
    svc = start_service(f"replay:{replay}", broker.url)
    ready_at = notify.wait_for("READY", timeout=120)
    first = notify.snapshot()[0][1]
    # READY=1 is the first thing systemd hears, and it says frames are being processed.
    assert first.get("READY") == "1" and first.get("STATUS") == "processing frames", first
    assert all(t >= ready_at for t in notify.times("WATCHDOG", "1")), "a watchdog pet before READY=1"

    # Frames flow for ~4 s: pets arrive, at most one per WATCHDOG_USEC/2.
    notify.wait_for("WATCHDOG", timeout=30, after=ready_at)
    deadline = time.monotonic() + 30
    while len(notify.times("WATCHDOG", "1")) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    pets = notify.times("WATCHDOG", "1")
    assert len(pets) >= 3, f"only {len(pets)} watchdog pets while frames were flowing\n{svc.log()[-2000:]}"
    gaps = np.diff(pets)
    assert gaps.min() >= WATCHDOG_USEC / 2e6 * 0.9, gaps

    # The source now hangs (next frame an hour away): the pets stop while the process lives on.
    quiet_needed = 3 * WATCHDOG_USEC / 1e6  # systemd would have fired after 1x
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        last = notify.times("WATCHDOG", "1")[-1]
        if time.monotonic() - last >= quiet_needed:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("watchdog pets never stopped although the source stalled")
    assert svc.proc.poll() is None, "the service exited instead of stalling"
    before = len(notify.times("WATCHDOG", "1"))
    time.sleep(1.0)
    assert len(notify.times("WATCHDOG", "1")) == before

    # What systemd does on a watchdog timeout (WatchdogSignal=SIGABRT): the process dies of it.
    svc.proc.send_signal(signal.SIGABRT)
    assert svc.proc.wait(10) == -signal.SIGABRT


def test_sighup_reloads_and_sigterm_mid_replay_stops_cleanly_offline_and_loses_nothing(
    tmp_path: Path, notify: NotifyReceiver, broker: Broker, start_service: Callable[..., Running]
) -> None:
    listener = Listener(broker)
    try:
        replay = make_replay(tmp_path / "replay", visits=20)  # 40 s: still playing when stopped
        svc = start_service(f"replay:{replay}", broker.url)
        ready_at = notify.wait_for("READY", timeout=120)

        svc.proc.send_signal(signal.SIGHUP)
        reload_at = notify.wait_for("RELOADING", after=ready_at, timeout=30)
        reloading = next(m for t, m in notify.snapshot() if t == reload_at)
        assert int(reloading["MONOTONIC_USEC"]) > 0
        again = notify.wait_for("READY", after=reload_at, timeout=30)
        assert again >= reload_at

        listener.wait(lambda: len(listener.event_ids()) >= 2, 60, "two face events")
        rc, took = svc.stop(signal.SIGTERM)
        assert rc == 0, svc.log()[-3000:]
        assert took < STOP_TIMEOUT_S
        assert notify.times("STOPPING", "1"), "no STOPPING=1 on SIGTERM"

        status = retained_status(broker)
        assert status["state"] == "offline", status
        assert status.get("reason") == "stopped", status

        queued = queued_event_ids(svc.log())
        assert queued, "the service logged no queued events"
        left = {rec.id for rec in Outbox(svc.state_dir / "outbox", OutboxConfig()).oldest(10_000)}
        assert queued <= listener.event_ids() | left, "an accepted event was neither delivered nor kept"
    finally:
        listener.close()


def test_events_queued_while_the_broker_is_down_survive_sigterm_and_are_delivered_later(
    tmp_path: Path, notify: NotifyReceiver, broker: Broker, start_service: Callable[..., Running]
) -> None:
    replay = make_replay(tmp_path / "replay", visits=20)
    svc = start_service(f"replay:{replay}", broker.url, name="first")
    notify.wait_for("READY", timeout=120)
    broker.kill()
    deadline = time.monotonic() + 60
    while len(queued_event_ids(svc.log())) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    rc, took = svc.stop(signal.SIGTERM)
    assert rc == 0, svc.log()[-3000:]
    assert took < STOP_TIMEOUT_S

    kept = {rec.id for rec in Outbox(svc.state_dir / "outbox", OutboxConfig()).oldest(10_000)}
    assert kept, f"nothing was waiting in the outbox\n{svc.log()[-3000:]}"

    broker.start()
    listener = Listener(broker)
    try:
        short = make_replay(tmp_path / "short", visits=1)
        again = start_service(f"replay:{short}", broker.url, name="second")
        listener.wait(lambda: kept <= listener.event_ids(), 60, "the kept events to be delivered")
        rc, _ = again.stop(signal.SIGTERM)
        assert rc == 0
    finally:
        listener.close()


def test_a_torn_outbox_record_is_reported_and_never_loaded(
    tmp_path: Path, notify: NotifyReceiver, broker: Broker, start_service: Callable[..., Running]
) -> None:
    outbox_dir = tmp_path / "state" / "outbox"
    outbox = Outbox(outbox_dir, OutboxConfig())
    ids = []
    for _ in range(2):
        payload = envelope("event.face", TERMINAL, {"decision": "accepted"}, ttl_s=3600)
        outbox.put(payload["id"], TOPICS.event_face, "event.face", encode(payload), payload["expires_at"])
        ids.append(payload["id"])
    whole_id, torn_id = ids
    torn_file = sorted(outbox_dir.glob("*.evt"))[-1]
    blob = torn_file.read_bytes()
    torn_file.write_bytes(blob[: len(blob) // 2])  # a power cut in the middle of the write

    listener = Listener(broker)
    try:
        replay = make_replay(tmp_path / "replay", visits=1)
        svc = start_service(f"replay:{replay}", broker.url)
        notify.wait_for("READY", timeout=120)  # it starts
        listener.wait(lambda: whole_id in listener.event_ids(), 60, "the whole record to be delivered")
        rc, _ = svc.stop(signal.SIGTERM)
        assert rc == 0
        log = svc.log()
        assert re.search(rf"torn record {torn_file.name}", log), log[-3000:]  # it reports the damage
        assert torn_id not in listener.event_ids()  # and never loads or sends the torn record
        counters = json.loads((outbox_dir / "counters.json").read_text())
        assert counters["torn"] == 1
    finally:
        listener.close()


def test_no_ready_without_frames_and_sigterm_still_stops(
    notify: NotifyReceiver, broker: Broker, start_service: Callable[..., Running]
) -> None:
    svc = start_service("v4l2:99", broker.url)  # no such camera: it retries, never delivers a frame
    time.sleep(8)
    assert svc.proc.poll() is None
    assert not notify.times("READY", "1"), "READY=1 without a single processed frame"
    rc, _ = svc.stop(signal.SIGTERM)
    assert rc == 0
