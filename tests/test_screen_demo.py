"""The README's demo at the door: `faceonly run` prints the door screen's URL next to the backend page's, the
screen (in headless Chromium, from the start) shows both passes as a person at the door would see them (the
photo asked to blink or turn and not let through, then welcomed by name), and nothing on the broker (`#`)
names the enrolled person; `faceonly audit` with the screen and the name passes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from device.privacy.personal import personal_text, usable_names
from faceonly_backend.demo import DISPLAY_NAME
from tests.api_schemas import errors
from tests.screen_rig import PAGE_STATE, artefacts, chromium

BROKER = re.compile(r"embedded demo broker at (mqtt://127\.0\.0\.1:(\d+))")
PAGE = re.compile(r"backend page: (http://127\.0\.0\.1:\d+/)")
SCREEN = re.compile(r"door screen: (http://127\.0\.0\.1:\d+/)")


def _wait_for(
    pattern: re.Pattern[str], log: Path, proc: subprocess.Popen, timeout: float = 90
) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        found = pattern.search(log.read_text())
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"no {pattern.pattern!r} in {log.read_text()[-3000:]}")


class Everything:
    """Subscribed to `#` on the demo broker: every payload, retained ones included."""

    def __init__(self, port: int) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, bytes(m.payload)))
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe("#", qos=1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("door-demo")
    from device.vision.demo import make_demo

    replay = make_demo(tmp / "replay")
    log = tmp / "run.log"
    names = tmp / "names.txt"
    names.write_text(DISPLAY_NAME + "\n")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log.open("w") as fh:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "device",
                "run",
                "--source",
                f"replay:{replay}",
                "--state-dir",
                str(tmp / "state"),
            ],
            cwd=tmp,
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=env,
        )
    browser = audit = wire = None
    try:
        broker_url, port = _wait_for(BROKER, log, proc).groups()
        wire = Everything(int(port))
        screen = _wait_for(SCREEN, log, proc).group(1)
        page = _wait_for(PAGE, log, proc).group(1)
        audit = subprocess.Popen(
            [sys.executable, "-m", "device", "audit", "--broker", broker_url, "--id", "demo-terminal", "--count", "2",
             "--timeout", "120", "--screen", screen, "--names", str(names), "--json", str(tmp / "audit.json")],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        )  # fmt: skip
        browser = chromium(800, 480)
        browser.get(screen)
        deadline = time.monotonic() + 150
        events: list[dict] = []
        while time.monotonic() < deadline and len(events) < 2:
            assert proc.poll() is None, log.read_text()[-3000:]
            with urllib.request.urlopen(page + "api/events", timeout=5) as r:
                events = json.loads(r.read())
            time.sleep(0.5)
        assert len(events) == 2, log.read_text()[-3000:]
        # The welcome is held on the screen for a few seconds: read the page while it shows it.
        for _ in range(100):
            state = browser.execute_script(PAGE_STATE)
            if any(h["view"].get("outcome") == "result.welcome" for h in state["history"]):
                break
            time.sleep(0.1)
        browser.save_screenshot(str(artefacts() / "demo-800x480-last.png"))
        audit_out, _ = audit.communicate(timeout=150)
        yield {"log": log.read_text(), "screen": screen, "page": page, "state": state, "wire": wire.messages,
               "audit": (audit.returncode, audit_out, json.loads((tmp / "audit.json").read_text()))}  # fmt: skip
    finally:
        if browser is not None:
            browser.quit()
        if audit is not None and audit.poll() is None:
            audit.kill()
        if wire is not None:
            wire.stop()
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(60)
    assert rc == 0, log.read_text()[-3000:]


def test_run_prints_the_door_screen_next_to_the_backend_page(demo) -> None:
    lines = [
        line for line in demo["log"].splitlines() if line.startswith(("backend page: ", "door screen: "))
    ]
    assert lines == [f"backend page: {demo['page']}", f"door screen: {demo['screen']}"]


def test_the_screen_shows_both_passes_as_the_person_sees_them(demo) -> None:
    history = demo["state"]["history"]
    said = [h["words"]["headline"] for h in history]
    # Pass 1: the photo is asked to blink or turn, and is not let through, with the reason in plain words.
    # (a retry's "Let's try again" view carries no step until its fresh step comes)
    steps = [h["view"]["step"] for h in history if h["view"]["screen"] == "challenge" and "step" in h["view"]]
    assert steps and set(steps) <= {"blink", "turn_left", "turn_right"}
    rejected = [h for h in history if h["view"].get("outcome") == "result.rejected"]
    assert rejected and rejected[0]["view"]["reason"] in (
        "liveness.no_blink",
        "liveness.no_turn",
        "liveness.planar",
    )
    assert rejected[0]["words"]["headline"].startswith("Not let through: ")
    # Pass 2: identified on the terminal and greeted by name (the name comes from the gallery, locally).
    assert f"Welcome, {DISPLAY_NAME}" in said, said
    assert said.index(rejected[0]["words"]["headline"]) < said.index(f"Welcome, {DISPLAY_NAME}")


def test_nothing_on_the_broker_names_the_enrolled_person(demo) -> None:
    wire = demo["wire"]
    assert any(t.endswith("/prompt") for t, _ in wire) and any(t.endswith("/event/face") for t, _ in wire)
    assert not [t for t, p in wire if DISPLAY_NAME.encode() in p or b"Eileen" in p]
    names = usable_names([DISPLAY_NAME])
    sent = [(t, p) for t, p in wire if "/dev/demo-terminal/" in t and "/cmd/req/" not in t]
    for topic, payload in sent:  # everything the terminal sent, base64 blobs opened too
        assert personal_text(json.loads(payload), payload, names) == [], topic
    prompts = [json.loads(p) for t, p in wire if t.endswith("/prompt")]
    assert all("text" not in p and "subject" not in p["params"] and p["code"] for p in prompts)
    assert [errors(p) for p in prompts] == [[] for _ in prompts]  # device/api/schemas/prompt.json


def test_audit_of_the_demo_passes_with_the_name_and_the_screen(demo) -> None:
    rc, out, result = demo["audit"]
    verdicts = {v["rule"]: v["passed"] for v in result["verdicts"]}
    assert rc == 0, out
    assert verdicts["personal_text"] is True and verdicts["prompts_coded"] is True
    assert verdicts["screen_no_images"] is True, out
    screen = result["screen_messages"]
    assert len(screen) >= 3 and {m["event"] for m in screen} <= {"view", "guide"}
