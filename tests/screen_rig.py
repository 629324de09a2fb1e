"""A door screen in front of real browsers: the real pipeline, identity and door screen in-process, fed one
frame at a time, and headless Chromium (Debian's, through its chromium-driver) showing the page at the two
display sizes a terminal has. The test is the clock: after each frame it waits until every browser shows the
screen's latest view, then reads the page and saves a screenshot (artefacts in var/artefacts/door-screen, or
$FACEONLY_ARTEFACTS/door-screen)."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from device.config.gate import GateConfig
from device.config.screen import ScreenConfig
from device.config.vision import LivenessConfig, QualityConfig, VisionConfig
from device.contracts import FaceObservation, Frame, ModelRef
from device.identity import gallery as gal
from device.identity import operator as op
from device.identity.component import IdentityComponent
from device.identity.gate import build_gate
from device.identity.runtime import Identity, load_curves
from device.privacy.signing import Signer
from device.runtime.prompts import PromptChannel
from device.screen import DoorScreen
from device.vision.pipeline import VisionPipeline, build_pipeline
from tests.conftest import missing_data
from tests.terminal_keys import TerminalKeys

ROOT = Path(__file__).resolve().parent.parent
SIZES = ((800, 480), (1920, 1080))
ALTERNATIVE = "your badge, or ring the bell"
WAIT_S = 20.0


def artefacts() -> Path:
    base = Path(os.environ.get("FACEONLY_ARTEFACTS", ROOT / "var" / "artefacts"))
    out = base / "door-screen"
    out.mkdir(parents=True, exist_ok=True)
    return out


def chromium(width: int, height: int) -> Any:
    """Headless Chromium whose page is exactly width x height CSS pixels at scale 1."""
    exe, driver = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")
    if exe is None or driver is None:
        missing_data("Chromium or chromium-driver is missing (apt-get install chromium chromium-driver)")
    os.environ.setdefault("SE_OFFLINE", "true")  # never let selenium fetch a browser or a driver
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = exe
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"):
        options.add_argument(arg)
    options.add_argument(f"--window-size={width},{height + 200}")
    browser = webdriver.Chrome(options=options, service=Service(driver))
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
    )
    return browser


PAGE_STATE = """
const text = (id) => document.getElementById(id).textContent;
const b = document.body;
const visible = [...document.querySelectorAll('#top span, #banner, #words p, #words h1, #idle-clock p')]
  .filter(e => e.textContent.trim() && !e.hidden && e.getClientRects().length && getComputedStyle(e).visibility !== 'hidden');
const rects = visible.map(e => e.getBoundingClientRect());
return {
  seq: Number(b.dataset.seq), screen: b.dataset.screen, icon: b.dataset.icon || null,
  message: text('message'), before: text('before'), detail: text('detail'),
  banner: document.getElementById('banner').hidden ? '' : text('banner'),
  step: text('step'), countdown: text('countdown'), site: text('site'),
  min_font_px: Math.min(...visible.map(e => parseFloat(getComputedStyle(e).fontSize))),
  overflow: rects.some(r => r.right > innerWidth + 1 || r.bottom > innerHeight + 1 || r.left < -1 || r.top < -1),
  colours: visible.map(e => getComputedStyle(e).color + ' on ' + getComputedStyle(e).backgroundColor),
  face_points: [...document.querySelectorAll('#face-points circle')].filter(c => c.getAttribute('r') !== '0').length,
  viewport: [innerWidth, innerHeight],
  history: window.doorScreen.views.map(v => ({seq: v.seq, view: v.view, words: v.words,
    latency_ms: (v.view.issued_ms > 0 && v.painted_ms) ? v.painted_ms - v.view.issued_ms : null})),
  guides: window.doorScreen.guides,
};
"""


@dataclass
class Shot:
    size: tuple[int, int]
    seq: int
    page: dict[str, Any]
    png: Path


@dataclass
class Enrolled:
    subject: str
    name: str
    embedding: np.ndarray


@dataclass
class DoorRig:
    scenario: str
    store: Any
    tmp: Path
    gallery: list[Enrolled] = field(default_factory=list)
    # A recording cannot answer the prompts: seed 2 asks the turn the clip makes (to its right, at 3.3 s)
    # before the blink, so the live clip passes; the photo's replay fails whichever order is asked.
    liveness: LivenessConfig = field(
        default_factory=lambda: LivenessConfig(seed=2, replay_risk_action="flag")
    )
    language: str = "en"
    min_face_px: int = 80  # the quality gate's least face size (a site sets it for its camera and distance)
    shots: list[Shot] = field(default_factory=list)
    prompts: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.t = 0.0
        cfg = ScreenConfig(
            enabled=True, listen="127.0.0.1:0", language=self.language, alternative=ALTERNATIVE
        )
        self.door = DoorScreen(cfg, clock=lambda: self.t)
        channel = PromptChannel({"screen": self.door.sink}, (self.door.sink,))
        self.channel = channel
        vision = VisionConfig(liveness=self.liveness, quality=QualityConfig(min_face_px=self.min_face_px))
        self.pipeline: VisionPipeline = build_pipeline(vision, self.store)
        self.pipeline.set_prompt_sink(self)
        self.pipeline.set_guide_sink(self)
        self.identity = self._identity() if self.gallery else None
        if self.identity is not None:
            self.door.sink.set_names(self.identity.display_name)
        self.browsers: list[tuple[tuple[int, int], Any]] = []

    # the prompt channel as the service has it; the screen is looked at after everything it is sent
    def publish(self, prompt: Any) -> None:
        self.prompts.append(prompt)
        self.channel.publish(prompt)
        self._settle()

    def guide(self, guide: Any) -> None:
        self.channel.guide(guide)
        self._settle()

    def listening(self) -> bool:
        return True

    def _identity(self) -> IdentityComponent:
        entry = self.store.entry("embedder")
        ref = ModelRef("embedder", entry.file, entry.sha256)
        signer = _signer()
        identity = Identity(
            ref, load_curves(entry.info), signer.public_key, self.tmp / "g.sealed", self.tmp / "g.key", 1e-3
        )
        subjects = [gal.check_subject(e.subject, e.name, e.embedding[None, :]) for e in self.gallery]
        snap = op.snapshot(signer, sorted(subjects, key=lambda s: s.id), 1, ref)
        identity.apply_update(snap.manifest, snap.body)
        return IdentityComponent(
            identity,
            build_gate(GateConfig()),
            self.publish,
            lambda handle, outcome: None,
            TerminalKeys(),  # type: ignore[arg-type]
            lambda subject: 0,
        )

    # ---- running ---------------------------------------------------------------------------------------
    def __enter__(self) -> DoorRig:
        for old in artefacts().glob(f"{self.scenario}-*.png"):
            old.unlink()
        url = self.door.start()
        for size in SIZES:
            browser = chromium(*size)
            browser.get(url)
            self.browsers.append((size, browser))
        self._settle()
        return self

    def __exit__(self, *exc: object) -> None:
        for _, browser in self.browsers:
            browser.quit()
        self.door.stop()

    def _decide(self, observations: list[FaceObservation]) -> None:
        from device.identity.feedback import outcome_prompt

        if self.identity is not None:
            self.identity.observe(observations)
        else:
            for obs in observations:
                self.publish(outcome_prompt(obs, None, identifies=False))

    def run(self, frames: Iterable[tuple[float, np.ndarray]], tail_s: float = 1.0) -> None:
        """Every frame through the pipeline, a settled look at the screen after each change; then the
        stream ends, the outcome is held and the screen falls back to idle."""
        last = -1.0
        for index, (t, image) in enumerate(frames):
            self.t = last = t
            self._decide(self.pipeline.process(Frame(index=index, timestamp=t, monotonic=t, image=image)))
        self._decide(self.pipeline.flush())
        self._settle(tick=True)
        self.t = last + self.door.cfg.result_hold_s + tail_s + 1.5
        self._settle(tick=True)

    def _settle(self, tick: bool = False) -> None:
        """Wait for the screen thread to handle everything (and tick under the new clock), then for every
        page to show the latest view; look at each page when the view is new."""
        deadline = time.monotonic() + WAIT_S
        assert self.door.settle(WAIT_S), "the screen thread did not keep up"
        if tick:
            time.sleep(0.25)
        seq = self.door.state.view.seq
        if self.shots and self.shots[-1].seq == seq:
            return
        for size, browser in self.browsers:
            while time.monotonic() < deadline:
                if browser.execute_script("return Number(document.body.dataset.seq)") >= seq:
                    break
                time.sleep(0.01)
            else:
                raise AssertionError(f"{size}: the page never showed view {seq}")
            time.sleep(0.05)  # let the page paint the guide and the countdown
            page = browser.execute_script(PAGE_STATE)
            png = (
                artefacts()
                / f"{self.scenario}-{size[0]}x{size[1]}-{len(self.shots) // 2:02d}-{page['screen']}.png"
            )
            browser.save_screenshot(str(png))
            self.shots.append(Shot(size, seq, page, png))

    # ---- what the person saw --------------------------------------------------------------------------
    def history(self, size: tuple[int, int]) -> list[dict[str, Any]]:
        """Every view the page at `size` rendered, in order, with its words and latency."""
        browser = dict(self.browsers)[size]
        return browser.execute_script(PAGE_STATE)["history"]


def _signer() -> Signer:
    from nacl.signing import SigningKey

    return Signer(SigningKey.generate())


def embedding_of(store: Any, frames: list[tuple[float, np.ndarray]]) -> np.ndarray:
    """The template the terminal makes of the person in these frames (liveness off: the best frame; flip-
    averaged, as templates are)."""
    pipeline = build_pipeline(VisionConfig(liveness=LivenessConfig(policy="off")), store)
    out = []
    for i, (t, image) in enumerate(frames):
        out += pipeline.process(Frame(index=i, timestamp=t, monotonic=t, image=image))
    out += pipeline.flush()
    accepted = [o for o in out if o.embedding is not None]
    assert accepted, "no face to enrol"
    return np.asarray(accepted[0].with_flip().embedding, np.float32)
