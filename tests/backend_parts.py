"""Real parts for the backend tests: terminals (`python -m device run` on a replay) and backends
(`python -m device backend`) as subprocesses, a signing key the test holds, and HTTP helpers."""

from __future__ import annotations

import base64
import json
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from device.privacy.signing import Signer, load_signer
from device.transport.envelope import envelope
from tests.broker import free_port

ROOT = Path(__file__).resolve().parent.parent
QUEUED = re.compile(r"event ([0-9a-f-]{36}) queued")


def public_key(signer: Signer) -> str:
    return base64.b64encode(signer.public_key).decode()


def terminal_key(state_dir: Path) -> str:
    """Make the terminal's signing key before it starts (as it would on first start); its public half."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    signer, _ = load_signer(state_dir / "signing.key")
    return public_key(signer)


def register(db: str, terminal: str, key: str) -> None:
    cmd = [sys.executable, "-m", "device", "backend", "terminals", "add", "--db", db]
    subprocess.run([*cmd, "--id", terminal, "--public-key", key], cwd=ROOT, check=True, capture_output=True)


class Proc:
    def __init__(self, log: Path, cmd: list[str]) -> None:
        self.log = log
        self.fh = log.open("ab")
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=self.fh, stderr=subprocess.STDOUT)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, pred, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred():
                return True
            assert self.proc.poll() is None, f"{self.log.name} died:\n{self.text()[-3000:]}"
            time.sleep(0.1)
        return False

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait(5)
        self.fh.close()
        return rc


class TerminalProc(Proc):
    def __init__(
        self,
        tmp: Path,
        broker_url: str,
        tid: str,
        replay: Path,
        pace: str = "fast",
        conf_extra: str = "",
        reconnect_s: tuple[float, float] = (0.2, 1.0),
    ) -> None:
        conf = tmp / f"{tid}.toml"
        conf.write_text(
            f'[vision]\nreplay_pace = "{pace}"\n[vision.liveness]\npolicy = "off"\n'
            "[service]\nhealth_interval_s = 1.0\nstop_flush_s = 3\n"
            f"[mqtt]\nreconnect_min_s = {reconnect_s[0]}\nreconnect_max_s = {reconnect_s[1]}\nwill_delay_s = 0\n"
            + conf_extra
        )
        cmd = [sys.executable, "-m", "device", "run", "--config", str(conf), "--broker", broker_url]
        cmd += ["--id", tid, "--source", f"replay:{replay}", "--state-dir", str(tmp / f"state-{tid}")]
        super().__init__(tmp / f"{tid}.log", cmd)

    def queued(self) -> list[str]:
        return QUEUED.findall(self.text())


def api_token(db: str, name: str, role: str = "admin", *config: str) -> str:
    """An API token for `name` made by the operator's command (`faceonly backend tokens add`)."""
    cmd = [
        sys.executable,
        "-m",
        "device",
        "backend",
        "tokens",
        "add",
        "--db",
        db,
        "--name",
        name,
        "--role",
        role,
    ]
    made = subprocess.run([*cmd, *config], cwd=ROOT, check=True, capture_output=True, text=True)
    return made.stdout.strip()


class BackendProc(Proc):
    def __init__(
        self, tmp: Path, broker_url: str, db: str, name: str, *extra: str, token: bool = True
    ) -> None:
        """`token`: call the API with an admin API token made for this backend (else no credentials: for
        a backend started with `--auth open`)."""
        self.port = free_port()
        at = extra.index("--config") if "--config" in extra else None
        config = list(extra[at : at + 2]) if at is not None else []
        self.token = api_token(db, f"tests-{name}", "admin", *config) if token else None
        cmd = [sys.executable, "-m", "device", "backend", "--broker", broker_url, "--db", db]
        cmd += ["--http", f"127.0.0.1:{self.port}", "--state-dir", str(tmp / f"backend-{name}"), *extra]
        super().__init__(tmp / f"backend-{name}.log", cmd)
        assert self.wait_for(lambda: "backend page:" in self.text(), 30), self.text()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def request(self, path: str, body: dict | None = None, method: str | None = None, timeout: float = 60):
        """(status, JSON reply) of a call to the API, with the token."""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body).encode()
        request = urllib.request.Request(self.url + path.lstrip("/"), data, headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def get(self, path: str) -> bytes:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        request = urllib.request.Request(self.url + path.lstrip("/"), headers=headers)
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.read()

    def json(self, path: str):
        return json.loads(self.get(path))


def face_event(terminal: str, signer: Signer | None, *, ttl_s: float = 600, now: float | None = None) -> dict:
    """A well-formed face event (accepted, no biometric), signed by `signer` (unsigned if None)."""
    body = {
        "observation": {
            "track_id": 1,
            "decision": "accepted",
            "time_source": "camera_utc",
            "first_seen": time.time(),
            "last_seen": time.time(),
            "best_frame_time": time.time(),
            "box": [1.0, 2.0, 30.0, 30.0],
            "quality": {},
            "liveness": {},
            "reasons": [],
            "alignment": "mesh",
        },
        "biometric": {"template_key_id": None},
    }
    payload = envelope("event.face", terminal, body, ttl_s=ttl_s, now=now)
    payload["id"] = str(uuid.uuid4())
    return signer.sign(payload) if signer is not None else payload
