"""A terminal with a gallery at a gate, for the gate tests and scripts/gate_photo_report.py: scikit-image's
astronaut enrolled (built with the terminal's own `gallery build`, installed through the terminal's own
Identity.apply_update), a recorded-pace replay in which her photo stands at the gate, the real Service in
this process (so gpio gates run on gpiozero's MockFactory), and `GateBench`: the terminal's decision path
(pipeline -> 1:N -> gate) without the transport, for counting what opens the gate."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from device.cli import main
from device.config import Config, load_config
from device.contracts import FaceObservation, Frame, ModelRef, Prompt
from device.identity.component import IdentityComponent, build_identity
from device.identity.gate import GpioGate
from device.identity.operator import read_update
from device.identity.runtime import Identity, MatchResult
from device.infra.modelstore import ModelStore
from device.privacy.signing import Signer, load_signer
from tests.terminal_keys import TerminalKeys

TID = "gate-01"
FPS = 10.0
SIZE = (640, 480)  # width, height


def astronaut() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[:, :, ::-1])  # BGR, 512x512, head and shoulders


def enrol_astronaut(tmp: Path) -> tuple[Path, Path]:
    """(signed gallery update file, gallery public key file) with subject `eileen` (display name Eileen C.)."""
    photos = tmp / "photos" / "eileen"
    photos.mkdir(parents=True)
    cv2.imwrite(str(photos / "astronaut.png"), astronaut())
    (photos / "display_name.txt").write_text("Eileen C.")
    return build_gallery(tmp, tmp / "photos")


def build_gallery(tmp: Path, photos: Path) -> tuple[Path, Path]:
    """`faceonly gallery keygen` + `gallery build` of a folder of subject folders."""
    key = tmp / "gallery.key"
    assert main(["gallery", "keygen", "--out", str(key)]) == 0
    fog = tmp / "v1.fog"
    assert main(["gallery", "build", "--photos", str(photos), "--key", str(key), "--out", str(fog)]) == 0
    return fog, tmp / "gallery.key.pub"


def standing_replay(folder: Path, lead_s: float, face_s: float, tail_s: float) -> Path:
    """Empty frames, then the astronaut's photo standing at the gate, then empty frames again (10 fps)."""
    folder.mkdir(parents=True)
    w, h = SIZE
    empty = np.full((h, w, 3), 110, np.uint8)
    face = empty.copy()
    face[40:440, 120:520] = cv2.resize(astronaut(), (400, 400))
    cv2.imwrite(str(folder / "empty.png"), empty)
    cv2.imwrite(str(folder / "face.png"), face)
    frames, t = [], 0.0
    for name, seconds in (("empty.png", lead_s), ("face.png", face_s), ("empty.png", tail_s)):
        for _ in range(round(seconds * FPS)):
            frames.append({"file": name, "t": round(t, 3)})
            t += 1 / FPS
    (folder / "replay.json").write_text(json.dumps({"format": 1, "frames": frames}))
    return folder


def terminal_config(tmp: Path, broker_url: str, replay: Path, pub: Path, gate: dict, policy: str) -> Config:
    return load_config(
        None,
        {
            "terminal_id": TID,
            "service": {"state_dir": str(tmp / "state"), "health_interval_s": 1.0},
            "mqtt": {"broker": broker_url, "reconnect_min_s": 0.2, "reconnect_max_s": 0.5},
            "vision": {
                "source": f"replay:{replay}",
                "replay_pace": "recorded",
                "liveness": {"policy": policy, "seed": 3},
            },
            "identity": {"gallery_public_key_file": str(pub)},
            "gate": gate,
        },
    )


def install_gallery(cfg: Config, fog: Path) -> Identity:
    """The update applied as the gallery.sync command would (verified, sealed into the state dir)."""
    store = ModelStore()
    entry = store.entry("embedder")
    identity = build_identity(cfg, ModelRef("embedder", entry.file, entry.sha256), entry.info)
    assert identity is not None
    update = read_update(fog)
    identity.apply_update(update.manifest, update.body)
    return identity


def terminal_signer(cfg: Config) -> Signer:
    signer, _ = load_signer(Path(cfg.service.state_dir) / "signing.key")
    return signer


class Terminal:
    """The real Service in a thread."""

    def __init__(self, cfg: Config) -> None:
        from device.runtime.compose import build
        from device.runtime.lifecycle import Lifecycle
        from device.runtime.runtime_config import RuntimeConfig
        from device.runtime.service import Service

        self.lifecycle = Lifecycle({})
        self.service = Service(RuntimeConfig(cfg), build(cfg), self.lifecycle, lambda: cfg)
        self.thread = threading.Thread(target=self.service.run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.lifecycle.request_stop()
        self.thread.join(60)
        assert not self.thread.is_alive()


class GateBench:
    """What a terminal with `policy` decides at the gate for a stream of frames: the real pipeline (with a
    prompt channel, so the challenge runs), the real 1:N on the installed gallery, a gpio gate on gpiozero's
    MockFactory. No transport: only the decision path."""

    def __init__(self, tmp: Path, fog: Path, pub: Path, policy: str, store: ModelStore) -> None:
        from gpiozero.pins.mock import MockFactory

        from device.vision.pipeline import build_pipeline

        cfg = load_config(
            None,
            {
                "service": {"state_dir": str(tmp / "state")},
                "identity": {"gallery_public_key_file": str(pub)},
                "vision": {"liveness": {"policy": policy, "seed": 3}},
                "gate": {"kind": "gpio", "pulse_s": 0.05},
            },
        )
        self.prompts: list[Prompt] = []
        self.gate = GpioGate(cfg.gate, pin_factory=MockFactory())
        self.component = IdentityComponent(
            install_gallery(cfg, fog),
            self.gate,
            self.prompts.append,
            lambda h, r: None,
            TerminalKeys(),  # type: ignore[arg-type]
            lambda s: 0,
        )
        self.pipeline = build_pipeline(cfg, store, prompt_sink=self)

    def publish(self, prompt: Prompt) -> None:  # the pipeline's prompt channel
        self.prompts.append(prompt)

    def run(self, frames: Iterable[Frame]) -> list[tuple[FaceObservation, MatchResult | None, bool]]:
        """(observation, its match, whether the gate opened for it), for every observation of the stream."""
        out = []
        for frame in frames:
            out += self._decide(self.pipeline.process(frame))
        return out + self._decide(self.pipeline.flush())

    def _decide(
        self, observations: list[FaceObservation]
    ) -> list[tuple[FaceObservation, MatchResult | None, bool]]:
        out = []
        for obs in observations:
            before = self.gate.opened
            (match,) = self.component.observe([obs])
            out.append((obs, match, self.gate.opened > before))
        return out

    def close(self) -> None:
        self.gate.close()
