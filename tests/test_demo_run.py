"""The README's run command: `faceonly run` with no broker starts the embedded demo broker and shows
what a backend receives (status, prompts, the face event), and `--no-mqtt` prints the decision."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def demo_replay(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from device.vision.demo import make_demo

    return make_demo(tmp_path_factory.mktemp("demo") / "replay")


def _faceonly(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "device", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def test_run_without_broker_shows_the_backend_view(demo_replay: Path, tmp_path: Path) -> None:
    proc = _faceonly(
        "run", "--source", f"replay:{demo_replay}", "--state-dir", str(tmp_path / "state"), cwd=tmp_path
    )
    lines: list[str] = []
    deadline = time.monotonic() + 90
    try:
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip())
            if line.startswith("[backend] event.face"):
                break
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=30)
        lines += rest.splitlines()
    finally:
        if proc.poll() is None:
            proc.kill()
    text = "\n".join(lines)
    assert proc.returncode == 0, text
    assert "embedded demo broker" in text
    assert "[backend] status online" in text
    assert "[backend] prompt" in text  # the challenge really runs: the terminal asks
    events = [ln for ln in lines if ln.startswith("[backend] event.face")]
    assert len(events) == 1, text
    # The demo is a photo walking up: the challenge rejects it and says why.
    assert "decision=rejected" in events[0] and "reasons: no " in events[0]
    assert "[backend] status offline" in text


def test_no_mqtt_prints_one_json_line_per_event_without_image_bytes(
    demo_replay: Path, tmp_path: Path
) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "device", "run", "--no-mqtt", "--source", f"replay:{demo_replay}",
         "--state-dir", str(tmp_path / "state")],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    events = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(events) == 1
    event = events[0]
    assert event["type"] == "event.face" and event["observation"]["decision"] == "rejected"
    assert all(len(v) < 300 for v in json.dumps(event).split('"'))  # long blobs are elided
    assert '"prompt"' in res.stderr  # prompts go to stderr, the challenge runs


def test_make_demo_returns_at_once_when_the_replay_is_complete(tmp_path) -> None:
    """`replay make-demo` (the README runs it after setup did) leaves a complete demo alone; a missing frame
    or --force writes it again."""
    import subprocess
    import sys

    out = tmp_path / "demo"

    def make(*extra: str) -> str:
        res = subprocess.run(
            [sys.executable, "-m", "device", "replay", "make-demo", str(out), *extra],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert res.returncode == 0, res.stderr
        return res.stdout

    assert "written" in make()
    first = (out / "00000.jpg").stat().st_mtime_ns
    assert "is complete" in make()
    assert (out / "00000.jpg").stat().st_mtime_ns == first
    (out / "00042.jpg").unlink()
    assert "written" in make() and (out / "00042.jpg").is_file()
    assert "written" in make("--force")
