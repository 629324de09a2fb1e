"""The whole system for `faceonly run` without a broker: the embedded broker, the terminal on the demo
replay, and this backend with its page (loopback only), in one process.

The backend enrols the demo person from a photo (scikit-image's astronaut, the face the replay is made
of), signs the gallery and pushes it to the terminal when it comes online. The terminal then sees the
replay twice:

1. with the liveness challenge (turn the head, blink): the replay is a photo, so it is rejected, as any
   photo attack is;
2. with liveness off, only because a photo can never pass a challenge: this pass shows identification
   (the terminal matches the face against the pushed gallery and the backend records it under the
   subject). With a real camera a live person passes the challenge and is identified in one pass.

Everything (keys, gallery, the SQLite file) lives in `<state_dir>/demo-backend`, so a second run reuses
the enrolment. Thumbnails are sent for every face here (`identity.send_thumbnail = "always"`) so the page
can show them; the backend keeps them in memory only.
"""

from __future__ import annotations

import base64
import logging
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from device.config import Config, merge
from faceonly_backend.audit import Actor

if TYPE_CHECKING:
    from device.runtime.lifecycle import Lifecycle
    from faceonly_backend.service import BackendService

log = logging.getLogger(__name__)
DEMO = Actor("demo", "admin")
SUBJECT, DISPLAY_NAME = "astronaut", "Eileen Collins (demo photo)"
PASS_TIMEOUT_S = 60.0
NOTICE = (
    "Demo: the same photo replay passes the terminal twice. First with the liveness challenge (turn your head, "
    "blink): a photo cannot turn its head or blink, so the challenge rejects it, as it rejects any photo "
    "attack. Then with liveness OFF, only because a photo can never pass a challenge: that pass shows "
    "identification (the terminal matched the face against the gallery this backend enrolled from a "
    "photo and pushed). With a real camera a live person passes the challenge and is identified in one pass."
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _enrolment_photos(folder: Path) -> Path:
    import cv2
    from skimage import data

    person = folder / SUBJECT
    person.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(person / "photo.png"), data.astronaut()[:, :, ::-1])
    (person / "display_name.txt").write_text(DISPLAY_NAME + "\n", encoding="utf-8")
    return folder


class DemoBackend:
    def __init__(self, terminal_cfg: Config, broker_url: str) -> None:
        from device.identity.operator import keygen
        from device.privacy.signing import load_signer
        from device.transport.auth import write_keypair
        from faceonly_backend.config import load_backend_config

        self.dir = Path(terminal_cfg.service.state_dir) / "demo-backend"
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        gallery_key, command_key = self.dir / "gallery.key", self.dir / "command.key"
        if not gallery_key.exists():
            keygen(gallery_key)
        if not command_key.exists():
            write_keypair(command_key)
        self.cfg = load_backend_config(
            None,
            {
                "state_dir": str(self.dir),
                "mqtt": {"broker": broker_url, "topic_prefix": terminal_cfg.mqtt.topic_prefix},
                # A lab on loopback: no logins, no consent asked (the demo person is a photo).
                "http": {"listen": f"127.0.0.1:{_free_port()}", "auth": "open"},
                "site": {"name": "faceonly demo", "profile": "none"},
                "identity": {
                    "gallery_key_file": str(gallery_key),
                    "command_key_file": str(command_key),
                    "models_dir": str(terminal_cfg.service.models_dir)
                    if terminal_cfg.service.models_dir
                    else None,
                },
            },
        )
        # The terminal's signing key, made now as it would be on its first start, is pinned here.
        signer, _ = load_signer(
            terminal_cfg.privacy.signing_key_file or Path(terminal_cfg.service.state_dir) / "signing.key"
        )
        self.terminal_id, self.terminal_key = terminal_cfg.terminal_id, signer.public_key
        self.service: BackendService | None = None
        self._thread: threading.Thread | None = None

    def terminal_config(self, cfg: Config) -> Config:
        """The terminal's demo config: the backend's gallery key and command key, thumbnails for every face."""
        return merge(
            cfg,
            {
                "identity": {
                    "gallery_public_key_file": str(self.dir / "gallery.key.pub"),
                    "send_thumbnail": "always",
                },
                "control": {"command_public_key_file": str(self.dir / "command.key.pub")},
            },
        )

    def start(self) -> str:
        """Enrol (first run only), register the terminal, start the backend; returns the page URL."""
        from faceonly_backend.service import BackendService

        service = BackendService(self.cfg)
        service.notice = NOTICE
        service.store.add_terminal(self.terminal_id, base64.b64encode(self.terminal_key).decode())
        if service.office.gallery.version is None:
            outcome = service.office.enrolment.from_photos(_enrolment_photos(self.dir / "photos"), DEMO)
            log.info(
                "demo backend: enrolled %s from a photo (gallery version %s)",
                SUBJECT,
                outcome.gallery_version,
            )
        service.start()
        self.service = service
        self._thread = threading.Thread(target=service.loop, name="demo-backend", daemon=True)
        self._thread.start()
        return service.page_url

    def _pass_done(self, after: float) -> bool:
        """The terminal's pass was recorded and it holds the backend's gallery."""
        assert self.service is not None
        store = self.service.store
        recorded = any(r.received_at >= after for r in store.events(10, terminal=self.terminal_id))
        held = {t.id: t.gallery_version for t in store.terminals()}.get(self.terminal_id)
        return recorded and held == self.service.office.gallery.version

    def run_passes(self, cfg: Config, run: Callable[[Config, Lifecycle], int | str]) -> int | str:
        """Pass 1 with the challenge, pass 2 with liveness off (see the module doc); Ctrl-C stops either."""
        from device.runtime.lifecycle import Lifecycle

        first = Lifecycle()
        started = time.time()

        def end_first_pass() -> None:
            deadline = time.monotonic() + PASS_TIMEOUT_S
            while time.monotonic() < deadline and not first.stop_requested and not self._pass_done(started):
                time.sleep(0.2)
            first.request_stop()

        watcher = threading.Thread(target=end_first_pass, name="demo-pass", daemon=True)
        watcher.start()
        status = run(cfg, first)
        if first.stopped_by_signal or status != 0:
            return status
        print(
            "[demo] pass 2: the same photo with liveness OFF, only because a photo cannot pass a challenge: "
            "it shows identification against the gallery the backend pushed",
            file=sys.stderr,
            flush=True,
        )
        return run(merge(cfg, {"vision": {"liveness": {"policy": "off"}}}), Lifecycle())

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop_requested.set()
            if self._thread is not None:
                self._thread.join(10)
            self.service.close()
