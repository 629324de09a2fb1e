"""The door screen's cost and speed: prompt-to-screen latency in a real browser, and the frame loop with and
without a connected screen.

The replay runs through the terminal's pipeline at its recorded pace (as a camera delivers frames), with the
door screen as prompt and guide sink, three times:

1. no screen: prompts go to a sink that only counts them (the floor);
2. the door screen running, no page connected;
3. the door screen with headless Chromium (Debian's, through chromium-driver) showing the page at 800x480.

Printed per mode (medians over --rounds, interleaved): the frame loop's time per frame (pipeline + prompt
and guide hand-over; p50/p95, ms) and its ratio to run 1, the time spent handing prompts and guides over, and
the terminal process's CPU time per frame (all its threads: the screen thread and the page server count;
the browser, a process of its own, does not); for run 3 the latency of every view from the moment the terminal issued the prompt or guide
behind it to the moment the browser had painted it (p50/p95/max, ms). The machine's load (uptime) first.

    python scripts/benchmark_screen.py [--replay PATH] [--language en]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from device.config.screen import ScreenConfig
from device.config.vision import LivenessConfig, VisionConfig
from device.contracts import Frame
from device.identity.feedback import outcome_prompt
from device.infra.modelstore import ModelStore
from device.runtime.prompts import PromptChannel
from device.screen import DoorScreen
from device.vision.pipeline import build_pipeline
from device.vision.replay import ReplaySource


class Timed:
    """The prompt channel as the loop sees it, with the time spent handing things over."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.seconds = inner, 0.0

    def publish(self, prompt: Any) -> None:
        started = time.perf_counter()
        self.inner.publish(prompt)
        self.seconds += time.perf_counter() - started

    def guide(self, guide: Any) -> None:
        started = time.perf_counter()
        self.inner.guide(guide)
        self.seconds += time.perf_counter() - started

    def listening(self) -> bool:
        return True


class Counting:
    def __init__(self) -> None:
        self.prompts = 0

    def publish(self, prompt: Any) -> None:
        self.prompts += 1

    def listening(self) -> bool:
        return True


def _frames(replay: Path) -> Iterator[Frame]:
    source = ReplaySource(replay, pace="recorded")
    for frame in source.frames():
        try:
            yield frame
        finally:
            source.release(frame)


def _browser(url: str) -> Any:
    os.environ.setdefault("SE_OFFLINE", "true")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser") or "chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=800,680"):
        options.add_argument(arg)
    browser = webdriver.Chrome(
        options=options, service=Service(shutil.which("chromedriver") or "chromedriver")
    )
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 800, "height": 480, "deviceScaleFactor": 1, "mobile": False},
    )
    browser.get(url)
    deadline = time.monotonic() + 20
    while not browser.execute_script("return window.doorScreen && window.doorScreen.connected"):
        if time.monotonic() > deadline:
            raise RuntimeError("the page did not connect")
        time.sleep(0.05)
    return browser


def run(replay: Path, store: ModelStore, mode: str, language: str) -> dict[str, Any]:
    pipeline = build_pipeline(VisionConfig(liveness=LivenessConfig(replay_risk_action="flag")), store)
    door = browser = None
    sink = Timed(Counting())
    if mode != "none":
        door = DoorScreen(ScreenConfig(enabled=True, listen="127.0.0.1:0", language=language))
        url = door.start()
        sink = Timed(PromptChannel({"screen": door.sink}, (door.sink,)))
        pipeline.set_guide_sink(sink)
        if mode == "browser":
            browser = _browser(url)
    pipeline.set_prompt_sink(sink)
    loop_ms = []
    cpu_started = time.process_time()
    try:
        for frame in _frames(replay):
            started = time.perf_counter()
            for obs in pipeline.process(frame):
                sink.publish(outcome_prompt(obs, None, identifies=False))
            loop_ms.append((time.perf_counter() - started) * 1000)
        for obs in pipeline.flush():
            sink.publish(outcome_prompt(obs, None, identifies=False))
        if door is not None:
            door.settle(10)
        cpu_ms = (time.process_time() - cpu_started) * 1000
        latencies: list[float] = []
        if door is not None and browser is not None:
            door.settle(10)
            time.sleep(0.5)
            views = browser.execute_script(
                "return window.doorScreen.views.map(v => [v.view.screen, v.view.issued_ms, v.painted_ms || null])"
            )
            # Views a prompt made (positioning views follow the face guides, collected at guide_rate_hz).
            latencies = [p - i for screen, i, p in views if i and p and screen != "positioning"]
    finally:
        if browser is not None:
            browser.quit()
        if door is not None:
            door.stop()
    loop = np.asarray(loop_ms)
    return {
        "frames": len(loop),
        "p50": float(np.percentile(loop, 50)),
        "p95": float(np.percentile(loop, 95)),
        "handover_us": sink.seconds / max(len(loop), 1) * 1e6,
        "cpu_ms": cpu_ms / max(len(loop), 1),
        "latencies": latencies,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--replay", type=Path, default=None, help="replay folder or video (default: the demo)"
    )
    parser.add_argument("--language", default="en")
    parser.add_argument("--rounds", type=int, default=3, help="each mode this often, interleaved (medians)")
    args = parser.parse_args()
    from device.infra.paths import demo_dir

    replay = args.replay or demo_dir()
    print("load:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    print(f"replay: {replay} (recorded pace)")
    store = ModelStore()
    modes = {"none": "no screen", "screen": "screen, no page", "browser": "screen + Chromium"}
    results: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
    for _ in range(args.rounds):
        for mode in modes:
            results[mode].append(run(replay, store, mode, args.language))
    floor = {k: float(np.median([r[k] for r in results["none"]])) for k in ("p50", "p95")}
    for mode, label in modes.items():
        p50, p95 = (float(np.median([r[k] for r in results[mode]])) for k in ("p50", "p95"))
        handover = float(np.median([r["handover_us"] for r in results[mode]]))
        cpu = float(np.median([r["cpu_ms"] for r in results[mode]]))
        print(
            f"{label:18s} frame loop p50 {p50:6.1f} ms  p95 {p95:6.1f} ms  (x{p50 / floor['p50']:.2f} / "
            f"x{p95 / floor['p95']:.2f} of no screen); hand-over {handover:.0f} us/frame; terminal process "
            f"CPU {cpu:.1f} ms/frame ({results[mode][0]['frames']} frames x {args.rounds})"
        )
    lat = np.asarray([x for r in results["browser"] for x in r["latencies"]])
    if lat.size:
        print(
            f"prompt -> painted in Chromium: p50 {np.percentile(lat, 50):.1f} ms  "
            f"p95 {np.percentile(lat, 95):.1f} ms  max {lat.max():.1f} ms ({lat.size} views)"
        )
    print("load:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
