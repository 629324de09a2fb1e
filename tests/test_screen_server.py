"""The door screen's channel: served on loopback only, the current view first and every change after, views
and guides as their schemas say, never an image; a slow or absent page never holds the frame loop."""

from __future__ import annotations

import base64
import http.client
import json
import queue
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from jsonschema import Draft202012Validator

from device.config import ConfigError, load_config
from device.config.screen import ScreenConfig
from device.contracts import FaceGuide, Prompt
from device.privacy.screen_audit import inspect_screen_message, screen_verdict
from device.screen import DoorScreen
from device.screen.server import Hub, Subscription

SCHEMAS = Path(__file__).resolve().parent.parent / "device" / "api" / "screen"


def _validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(json.loads((SCHEMAS / name).read_text()))


class Events:
    """A page's view of GET /events: (event, data) in order."""

    def __init__(self, port: int, host: str | None = None) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        self.conn.request("GET", "/events", headers={"Host": host or f"127.0.0.1:{port}"})
        self.response = self.conn.getresponse()

    def next(self) -> tuple[str, dict]:
        event, data = "message", ""
        while True:
            line = self.response.fp.readline().decode().rstrip("\n")
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data = line[5:].strip()
            elif not line and data:
                return event, json.loads(data)

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def screen():
    door = DoorScreen(ScreenConfig(enabled=True, listen="127.0.0.1:0", language="en"))
    door.start()
    yield door
    door.stop()


def _port(door: DoorScreen) -> int:
    return int(door.url.rsplit(":", 1)[1].strip("/"))


def test_current_view_first_then_every_change_as_the_schemas_say(screen: DoorScreen) -> None:
    views, guides = _validator("view.json"), _validator("guide.json")
    page = Events(_port(screen))
    try:
        assert page.response.status == 200
        assert page.response.getheader("Content-Type").startswith("text/event-stream")
        event, first = page.next()
        assert event == "view" and first["screen"] == "idle" and not list(views.iter_errors(first))
        points = tuple((0.4 + i / 100, 0.3 + i / 200) for i in range(49))
        screen.sink.guide(FaceGuide(4, 0.0, (0.3, 0.2, 0.6, 0.7), points, ("quality.too_small",), 16 / 9))
        event, view = page.next()
        assert event == "view" and view["screen"] == "positioning" and view["track"] == 4
        event, guide = page.next()
        assert (
            event == "guide"
            and len(guide["points"]) == 49
            and guide["aspect"] == pytest.approx(1.778, abs=1e-3)
        )
        assert not list(guides.iter_errors(guide))
        screen.sink.publish(Prompt(4, "prompt", "blink", 1, 2, 3.0, "challenge.blink", 0.0))
        event, view = page.next()
        assert (event, view["screen"], view["step"]) == ("view", "challenge", "blink")
        assert view["issued_ms"] == pytest.approx(time.time() * 1000, abs=5000)
        screen.sink.set_names(lambda subject: {"ann": "Ann Example"}.get(subject))
        screen.sink.publish(Prompt(4, "feedback", None, 0, 0, 0.0, "result.welcome", 0.0, {"subject": "ann"}))
        event, view = page.next()
        assert view["name"] == "Ann Example" and not list(views.iter_errors(view))
    finally:
        page.close()
    # A page that connects later starts from the current view.
    late = Events(_port(screen))
    try:
        assert late.next()[1]["name"] == "Ann Example"
    finally:
        late.close()


def test_settings_page_and_headers(screen: DoorScreen) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", _port(screen), timeout=10)
    conn.request("GET", "/")
    page = conn.getresponse()
    body = page.read().decode()
    assert page.status == 200 and "screen.js" in body
    csp = page.getheader("Content-Security-Policy")
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp and "img-src 'none'" in csp
    conn.request("GET", "/messages.json")
    settings = json.loads(conn.getresponse().read())
    assert not list(_validator("settings.json").iter_errors(settings))
    assert settings["texts"]["challenge.blink"] == "Please blink"
    conn.request("GET", "/../../etc/passwd")
    assert conn.getresponse().status == 404
    conn.close()


def test_only_loopback_host_names_are_answered(screen: DoorScreen) -> None:
    """A page elsewhere that rebinds its DNS name to 127.0.0.1 still sends its own Host: refused."""
    page = Events(_port(screen), host=f"evil.example:{_port(screen)}")
    assert page.response.status == 421
    page.close()
    ok = Events(_port(screen), host=f"localhost:{_port(screen)}")
    assert ok.response.status == 200
    ok.close()


def test_listen_is_loopback_only() -> None:
    for bad in ("0.0.0.0:8470", "192.168.1.20:8470", "door.example:80", "8470", "127.0.0.1:99999"):
        with pytest.raises(ConfigError):
            load_config(None, {"screen": {"listen": bad}})
    assert load_config(None, {"screen": {"listen": "[::1]:0"}}).screen.host == "::1"
    assert load_config(None, {"screen": {"listen": "localhost:8470"}}).screen.host == "127.0.0.1"


def test_a_slow_page_is_dropped_and_too_many_pages_are_refused() -> None:
    sub = Subscription(limit=2)
    for _ in range(3):
        sub.push(b"x")
    assert sub.closed and sub.take(0.0) is None
    hub = Hub(max_clients=2, queue_size=2)
    a, b = hub.connect(), hub.connect()
    assert a is not None and b is not None and hub.connect() is None
    for i in range(3):
        hub.publish("view", {"seq": i}, current=True)
    assert hub.dropped_clients == 2 and hub.clients == 0
    late = hub.connect()
    assert late is not None and late.take(0.0) == [b'event: view\ndata: {"seq":2}\n\n']


def test_the_frame_loop_never_waits_on_the_screen() -> None:
    """No screen thread running (the worst case): the sink only counts what it cannot hand over."""
    door = DoorScreen(ScreenConfig(enabled=True, listen="127.0.0.1:0"))
    try:
        started = time.perf_counter()
        for i in range(2000):
            door.sink.publish(Prompt(1, "prompt", "blink", 1, 1, 3.0, "challenge.blink", float(i)))
        assert time.perf_counter() - started < 2.0
        assert door.sink.dropped == 2000 - door._inbox.maxsize
    finally:
        door.stop()
    with pytest.raises(queue.Full):
        door._inbox.put_nowait(None)  # type: ignore[arg-type]


def test_screen_audit_passes_codes_and_points_and_fails_any_image() -> None:
    ok = [
        inspect_screen_message("view", json.dumps({"screen": "result", "name": "Ann Example", "seq": 3})),
        inspect_screen_message("guide", json.dumps({"track": 1, "points": [[0.1, 0.2]] * 49})),
    ]
    passed, detail = screen_verdict(ok)
    assert passed and "2 screen message(s)" in detail
    frame = np.random.default_rng(0).integers(0, 255, (240, 320, 3), np.uint8)
    jpeg = base64.b64encode(cv2.imencode(".jpg", frame)[1].tobytes()).decode()
    leaked = inspect_screen_message("view", json.dumps({"screen": "positioning", "preview": jpeg}))
    assert leaked.images and screen_verdict([*ok, leaked])[0] is False
    blob = inspect_screen_message("guide", json.dumps({"mesh": base64.b64encode(bytes(2000)).decode()}))
    assert blob.blobs == ("mesh",) and screen_verdict([blob])[0] is False
    assert screen_verdict([])[0] is False  # nothing read proves nothing
