"""A terminal at a door, end to end, for the door-mode tests: the real Service in this process with its door
screen and a real mosquitto; a camera whose scene the test sets (nobody, a face, a QR code held up), the
keypad pressed through the screen's own POST /keypad, a badge reader's key events through the stand-in FIFO,
and everything the terminal publishes collected from the broker."""

from __future__ import annotations

import json
import os
import queue
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import paho.mqtt.client as mqtt

from device.access.badge import EVENT
from device.config import Config, load_config
from device.contracts import Frame
from device.screen import DoorScreen
from device.screen.state import KEYS

TID = "door-01"
SIZE = (640, 480)
FPS = 10.0


class Scene:
    """A live camera looking at whatever the test puts in front of it (the terminal's FrameSource)."""

    live = True

    def __init__(self) -> None:
        w, h = SIZE
        self.empty = np.full((h, w, 3), 110, np.uint8)
        self._image = self.empty
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self.read = 0

    def show(self, image: np.ndarray | None) -> None:
        with self._lock:
            self._image = self.empty if image is None else image

    def frames(self) -> Iterator[Frame]:
        index = 0
        while not self._closed.is_set():
            with self._lock:
                image = self._image.copy()
            index += 1
            self.read += 1
            yield Frame(index=index, timestamp=time.time(), monotonic=time.monotonic(), image=image)
            time.sleep(1 / FPS)

    def release(self, frame: Frame) -> None:
        frame.image.fill(0)

    def stats(self) -> dict[str, Any]:
        return {"read": self.read}

    def close(self) -> None:
        self._closed.set()


def framed(face: np.ndarray) -> np.ndarray:
    """A face photo standing in front of the camera."""
    w, h = SIZE
    image = np.full((h, w, 3), 110, np.uint8)
    image[40:440, 120:520] = cv2.resize(face, (400, 400))
    return image


def qr_shown(text: str, module_px: int = 3) -> np.ndarray:
    """A phone showing a QR code at arm's length: `module_px` camera pixels per module."""
    code = cv2.QRCodeEncoder.create().encode(text)
    code = cv2.resize(code, None, fx=module_px, fy=module_px, interpolation=cv2.INTER_NEAREST)
    w, h = SIZE
    image = np.full((h, w, 3), 110, np.uint8)
    y, x = (h - code.shape[0]) // 2, (w - code.shape[1]) // 2
    image[y : y + code.shape[0], x : x + code.shape[1]] = code[:, :, None]
    return image


def door_config(tmp: Path, broker_url: str, pub: Path, door: str, credential_key: Path) -> Config:
    return load_config(
        None,
        {
            "terminal_id": TID,
            "service": {"state_dir": str(tmp / "state"), "health_interval_s": 1.0},
            "mqtt": {"broker": broker_url, "reconnect_min_s": 0.2, "reconnect_max_s": 0.5},
            # The photos cannot blink: these tests are about the door's modes, the challenge has its own.
            "vision": {"liveness": {"policy": "passive", "seed": 3}},
            "identity": {"gallery_public_key_file": str(pub)},
            "gate": {"kind": "mqtt", "door": door},
            "screen": {"enabled": True, "listen": "127.0.0.1:0", "alternative": "reception"},
            "access": {
                "enabled": True,
                "credential_key_file": str(credential_key),
                "badge_reader": f"stand-in:{tmp / 'badge.fifo'}",
                "qr_scan_hz": 5.0,
            },
        },
    )


class Collector:
    """Everything the terminal publishes, in order, parsed."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("mqtt://").split(":")
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.seen: list[tuple[str, bytes]] = []  # everything, in order
        self.backlog: list[tuple[str, bytes]] = []  # not returned by next() yet
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        subscribed = threading.Event()
        self.client.on_connect = lambda c, *a: c.subscribe(f"faceonly/v1/dev/{TID}/#", qos=1)
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_message = lambda c, u, m: self.messages.put((m.topic, bytes(m.payload)))
        self.client.connect(host, int(port))
        self.client.loop_start()
        assert subscribed.wait(10)

    def next(self, kind: str, timeout: float = 30.0) -> dict[str, Any]:
        """The next payload on .../<kind> (event/access, gate, event/face, ...) not returned before, in the
        order published (messages of other kinds wait for their own call)."""
        deadline = time.monotonic() + timeout
        while True:
            for i, (topic, raw) in enumerate(self.backlog):
                if topic.endswith("/" + kind):
                    del self.backlog[i]
                    return json.loads(raw)
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"nothing on {kind} within {timeout:g} s")
            try:
                item = self.messages.get(timeout=left)
            except queue.Empty:
                continue
            self.seen.append(item)
            self.backlog.append(item)

    def drain(self, seconds: float) -> list[tuple[str, bytes]]:
        """Everything published within `seconds` from now (also left for next())."""
        out, deadline = [], time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                item = self.messages.get(timeout=left)
            except queue.Empty:
                break
            self.seen.append(item)
            self.backlog.append(item)
            out.append(item)
        return out

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class DoorTerminal:
    """The real Service with its door screen, on a Scene, in a thread."""

    def __init__(self, cfg: Config, policy_file: Path | None = None) -> None:
        from device.infra.modelstore import ModelStore
        from device.privacy.protector import build_protector
        from device.runtime.compose import build
        from device.runtime.lifecycle import Lifecycle
        from device.runtime.runtime_config import RuntimeConfig
        from device.runtime.service import Service
        from device.vision.pipeline import build_pipeline

        self.cfg = cfg
        self.scene = Scene()
        self.screen = DoorScreen(cfg.screen)
        self.url = self.screen.start()
        self.lifecycle = Lifecycle({})
        store = ModelStore(cfg.service.models_dir)
        pipeline, protector = build_pipeline(cfg, store), build_protector(cfg, Path(cfg.service.state_dir))
        terminal = build(cfg, self.screen, (store, self.scene, pipeline, protector))
        self.service = Service(RuntimeConfig(cfg), terminal, self.lifecycle, lambda: cfg)
        assert self.service.access is not None
        self.access = self.service.access
        self.thread = threading.Thread(target=self.service.run, daemon=True)
        self.thread.start()
        settings = json.loads(urllib.request.urlopen(self.url + "messages.json", timeout=5).read())
        self.token = settings["keypad_token"]

    def press(self, *keys: str) -> list[int]:
        """Keys on the door screen's keypad, as the page posts them; the HTTP status of each."""
        statuses = []
        for key in keys:
            assert key in KEYS or key in ("in", "out")
            request = urllib.request.Request(
                self.url + "keypad",
                data=json.dumps({"key": key}).encode(),
                headers={
                    "Content-Type": "application/json",
                    "Origin": self.url.rstrip("/"),
                    "X-Keypad-Token": self.token,
                },
                method="POST",
            )
            with urllib.request.urlopen(request, timeout=5) as reply:
                statuses.append(reply.status)
            time.sleep(0.05)  # a finger, not a burst: the screen thread takes each in turn
        return statuses

    def type_pin(self, number: str, pin: str) -> None:
        assert wait(lambda: self.screen.state.keypad_ok, 10), "the keypad never opened to this door"
        self.press("open", *number, "ok", *pin, "ok")

    def swipe(self, code: str) -> None:
        """A badge held to the reader: the key events a HID reader types, through the stand-in FIFO."""
        from evdev import ecodes

        fd = os.open(Path(self.cfg.service.state_dir).parent / "badge.fifo", os.O_WRONLY)
        try:
            now = time.time()
            for char in code + "\n":
                key = ecodes.KEY_ENTER if char == "\n" else ecodes.ecodes[f"KEY_{char.upper()}"]
                os.write(fd, EVENT.pack(int(now), 0, 1, key, 1) + EVENT.pack(int(now), 0, 1, key, 0))
        finally:
            os.close(fd)

    def stop(self) -> None:
        self.lifecycle.request_stop()
        self.thread.join(60)
        self.scene.close()
        self.screen.stop()
        assert not self.thread.is_alive()


def wait(predicate: Any, timeout_s: float, step_s: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step_s)
    return False


def install_policy(cfg: Config, update: Any) -> None:
    """The signed policy checked and sealed into the state dir, as access.update leaves it."""
    from device.access import document as doc
    from device.identity.operator import read_public_key
    from device.identity.store import open_box

    assert cfg.identity.gallery_public_key_file is not None
    state = Path(cfg.service.state_dir)
    manifest = doc.check_manifest(update.manifest, read_public_key(cfg.identity.gallery_public_key_file))
    doc.read_body(manifest, update.body)
    doc.PolicyStore(state / "access.sealed", open_box(state / "gallery.key")).save(manifest, update.body)
