"""The README's run command shows the whole system: `faceonly run` with no broker starts the embedded
broker, the terminal on the demo replay and the backend with its page. The page, opened in headless
Chromium, shows the demo's two passes with their thumbnails and verdicts: the photo attack the challenge
rejects, and the identified pass (run with liveness off, which the page says plainly).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from device.privacy.containers import png_metadata
from device.privacy.thumbnail import outside_ellipse
from tests.conftest import missing_data

ROOT = Path(__file__).resolve().parent.parent
PAGE = re.compile(r"backend page: (http://127\.0\.0\.1:\d+/)")


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        missing_data("Chromium is not installed (apt-get install chromium; setup.sh --test does)")
    return found


def _chromium_run(exe: str, url: str, *what: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    # Headless as root needs --no-sandbox; the virtual time budget lets the page's fetches finish first.
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--user-data-dir={tmp}"]
    args += ["--window-size=1280,900", "--virtual-time-budget=8000", *what, url]
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory):
    """`faceonly run` (the README's command) until both passes are recorded; yields (page URL, events)."""
    tmp = tmp_path_factory.mktemp("demo-system")
    from device.vision.demo import make_demo

    replay = make_demo(tmp / "replay")
    log = tmp / "run.log"
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
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            deadline = time.monotonic() + 150
            events: list[dict] = []
            url = None
            while time.monotonic() < deadline and len(events) < 2:
                assert proc.poll() is None, log.read_text()[-3000:]
                found = PAGE.search(log.read_text())
                if found:
                    url = found.group(1)
                    with urllib.request.urlopen(url + "api/events", timeout=5) as r:
                        events = json.loads(r.read())
                time.sleep(0.5)
            assert url is not None and len(events) == 2, log.read_text()[-3000:]
            yield url, events, tmp
        finally:
            proc.send_signal(signal.SIGINT)
            rc = proc.wait(60)
    assert rc == 0, log.read_text()[-3000:]


def test_demo_records_the_photo_attack_and_the_identified_pass(demo_run) -> None:
    url, events, _ = demo_run
    newest, oldest = events
    assert oldest["decision"] == "rejected" and oldest["subject"] is None
    assert {r["code"] for r in oldest["reasons"]} & {
        "liveness.no_blink",
        "liveness.no_turn",
        "liveness.planar",
    }
    assert newest["decision"] == "accepted" and newest["subject"] == "astronaut"
    assert newest["match_source"] == "terminal" and newest["score"] > 0.9
    assert "liveness.off" in {r["code"] for r in newest["reasons"]}
    # The terminal cuts a thumbnail only of a face it accepted: the photo attack's card has none.
    assert newest["thumbnail"] and not oldest["thumbnail"]
    with urllib.request.urlopen(url + f"api/events/{newest['event_id']}/raw", timeout=5) as r:
        raw = json.loads(r.read())
    assert raw["id"] == newest["event_id"] and "signature" in raw
    with urllib.request.urlopen(url + f"api/events/{newest['event_id']}/thumbnail", timeout=5) as r:
        assert r.headers["Content-Type"] == "image/png"
        png = r.read()
    face = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    assert face is not None and not face[outside_ellipse(*face.shape[:2])].any() and png_metadata(png) == []
    with urllib.request.urlopen(url + "api/health", timeout=5) as r:
        assert (
            "liveness OFF, only because a photo can never pass a challenge" in json.loads(r.read())["notice"]
        )


def test_page_in_chromium_shows_thumbnails_and_verdicts(demo_run) -> None:
    exe = _chromium()
    url, events, tmp = demo_run
    dom = _chromium_run(exe, url, "--dump-dom", tmp=tmp / "chromium-dom").stdout
    assert 'data-ready="1"' in dom, dom[-2000:]
    for e in events:
        card = re.search(
            rf'<div class="event" data-event="{e["event_id"]}" data-decision="(\w+)" data-kind="\w+">(.*?)</div></div>',
            dom,
            re.S,
        )
        assert card is not None, f"no card for {e['event_id']}"
        assert card.group(1) == e["decision"]
        if e["thumbnail"]:
            assert 'data-loaded="1"' in card.group(2), "the thumbnail did not load"
        else:
            assert "no thumbnail sent" in card.group(2)
    assert "astronaut" in dom and "not let through" in dom and "liveness OFF" in dom
    # What the central matcher's setting means at this gallery size (one enrolled photo).
    assert "central matching: at this gallery size (1 template), expect about 1 false accept per 1,000" in dom
    shot = tmp / "page.png"
    _chromium_run(exe, url, f"--screenshot={shot}", tmp=tmp / "chromium-shot")
    image = cv2.imread(str(shot))
    assert image is not None and image.shape[:2] == (900, 1280)
    # Both verdict colours are on screen (green accepted, red rejected badges).
    green = ((image[:, :, 1] > 100) & (image[:, :, 2] < 60) & (image[:, :, 0] < 80)).sum()
    red = ((image[:, :, 2] > 150) & (image[:, :, 1] < 60) & (image[:, :, 0] < 60)).sum()
    assert green > 100 and red > 100, (green, red)
    keep = os.environ.get("FACEONLY_KEEP_SCREENSHOT")
    if keep:
        shutil.copy(shot, keep)
