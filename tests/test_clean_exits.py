"""Clean exits: a permanent fault is one log line, no traceback, and an exit status the unit does not
restart on; one service per state dir; a duplicate terminal id is named; shutdown always runs."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from device.cli.run import EXIT_LOCKED, EXIT_PERMANENT
from device.infra.paths import models_dir
from device.runtime import statedir
from tests.broker import Broker
from tests.test_service_lifecycle import make_replay, retained_status

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "faceonly.service"
TERMINAL = "life-1"  # the namespace retained_status() reads

pytestmark = pytest.mark.skipif(
    not (models_dir() / "manifest.json").is_file(), reason="models/manifest.json is not built yet"
)


def _config(tmp_path: Path, state_dir: Path, extra: str = "", broker: str = "mqtt://127.0.0.1:9") -> Path:
    conf = tmp_path / f"c-{uuid.uuid4().hex[:6]}.toml"
    conf.write_text(
        f'terminal_id = "{TERMINAL}"\n{extra}\n'
        f'[service]\nstate_dir = "{state_dir}"\nhealth_interval_s = 0.5\n'
        f'[mqtt]\nbroker = "{broker}"\nreconnect_min_s = 0.2\nreconnect_max_s = 1.0\n'
        '[vision]\nsource = "replay:demo"\n'
    )
    return conf


def _run(conf: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "device", "run", "--config", str(conf)],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _one_error_line(out: subprocess.CompletedProcess[str]) -> str:
    text = out.stdout + out.stderr
    assert "Traceback" not in text, text
    errors = [line for line in text.splitlines() if " ERROR " in line]
    assert len(errors) == 1, text
    return errors[0]


def _damaged_key(state: Path) -> None:
    state.mkdir()
    (state / "signing.key").write_bytes(b"FO1\n" + b"\x00" * 20)
    (state / "signing.key").chmod(0o600)


def _open_key(state: Path) -> None:
    state.mkdir()
    (state / "signing.key").write_bytes(b"")
    (state / "signing.key").chmod(0o644)


def _state_is_a_file(state: Path) -> None:
    state.write_text("not a directory")


@pytest.mark.parametrize(
    ("make", "expect"),
    [
        (_damaged_key, "key file is damaged"),
        (_open_key, "readable by others"),
        (_state_is_a_file, "is not a directory"),
    ],
)
def test_permanent_faults_exit_with_the_permanent_status_and_one_line(tmp_path: Path, make, expect) -> None:
    state = tmp_path / "state"
    make(state)
    out = _run(_config(tmp_path, state))
    assert out.returncode == EXIT_PERMANENT, out.stderr
    assert expect in _one_error_line(out)


def test_an_unsafe_setting_is_a_permanent_fault(tmp_path: Path) -> None:
    out = _run(_config(tmp_path, tmp_path / "state", "[privacy]\nunsafe_test_thumbnail_size = 400"))
    assert out.returncode == EXIT_PERMANENT, out.stderr
    assert "TEST-ONLY" in _one_error_line(out)


def test_models_failing_verification_are_a_permanent_fault(tmp_path: Path) -> None:
    models = tmp_path / "models"
    shutil.copytree(models_dir(), models)
    victim = next(p for p in models.glob("*.tflite"))
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    out = _run(_config(tmp_path, tmp_path / "state"), {"FACEONLY_MODELS_DIR": str(models)})
    assert out.returncode == EXIT_PERMANENT, out.stderr
    assert victim.name in _one_error_line(out)


def test_the_unit_does_not_restart_on_the_permanent_statuses() -> None:
    line = re.search(r"^RestartPreventExitStatus=(.*)$", UNIT.read_text(), re.M)
    assert line and {"2", str(EXIT_PERMANENT), str(EXIT_LOCKED)} <= set(line.group(1).split())


def test_a_second_instance_is_refused_and_a_duplicate_terminal_id_is_named(tmp_path: Path) -> None:
    replay = make_replay(tmp_path / "replay", visits=1, stall_after_s=1.0)  # then it waits for an hour
    with Broker(tmp_path / "mq") as broker:
        state = tmp_path / "state"
        conf = (
            _config(tmp_path, state, broker=broker.url).read_text().replace("replay:demo", f"replay:{replay}")
        )
        first_conf = tmp_path / "first.toml"
        first_conf.write_text(conf)
        log_path = tmp_path / "first.log"
        with log_path.open("wb") as log_file:
            first = subprocess.Popen(
                [sys.executable, "-m", "device", "run", "--config", str(first_conf)],
                cwd=ROOT,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        try:
            deadline = time.monotonic() + 90
            while "connected to" not in log_path.read_text() and time.monotonic() < deadline:
                assert first.poll() is None, log_path.read_text()
                time.sleep(0.2)

            second = _run(first_conf)
            assert second.returncode == EXIT_LOCKED, second.stderr
            line = _one_error_line(second)
            assert f"another faceonly instance (pid {first.pid})" in line and str(state) in line
            assert first.poll() is None  # the first one is untouched

            health: list[dict] = []
            watcher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="watcher", protocol=mqtt.MQTTv5)
            watcher.on_message = lambda c, u, m: health.append(json.loads(m.payload))
            watcher.connect(broker.host, broker.port)
            watcher.subscribe(f"faceonly/v1/dev/{TERMINAL}/health")
            watcher.loop_start()
            # A second terminal configured with the same id (its own state dir) connects as us.
            twin_conf = tmp_path / "twin.toml"
            twin_conf.write_text(conf.replace(str(state), str(tmp_path / "twin-state")))
            twin = subprocess.Popen(
                [sys.executable, "-m", "device", "run", "--config", str(twin_conf)],
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                deadline = time.monotonic() + 60
                while (
                    not any(h.get("session_taken_over", 0) >= 1 for h in health)
                    and time.monotonic() < deadline
                ):
                    time.sleep(0.2)
            finally:
                twin.terminate()
                twin.wait(30)
            watcher.loop_stop()
            watcher.disconnect()
            assert any(h.get("session_taken_over", 0) >= 1 for h in health), log_path.read_text()[-3000:]
            assert "session taken over: another client is connected as 'life-1'" in log_path.read_text()
        finally:
            first.terminate()
            rc = first.wait(30)
        assert rc == 0, log_path.read_text()[-3000:]
        assert retained_status(broker)["state"] == "offline"
        # The lock went with the process: the next start gets it.
        os.close(statedir.hold(state))


def test_a_foreign_birth_on_our_status_topic_is_a_duplicate_and_our_leftovers_are_not() -> None:
    from device.transport.link import TAKEN_OVER, Disconnected
    from device.transport.presence import foreign_birth

    def status(state: str, started: float, created: float) -> bytes:
        return json.dumps({"state": state, "started_at": started, "created_at": created}).encode()

    mine = 100.0
    assert foreign_birth(status("online", mine, 101.0), mine) is None  # our own birth
    assert foreign_birth(status("online", 80.0, 90.0), mine) is None  # retained from our earlier run
    assert foreign_birth(status("offline", 120.0, 121.0), mine) is None
    assert foreign_birth(b"\xff not json", mine) is None
    assert foreign_birth(status("online", 120.0, 121.0), mine)  # a twin started after us
    assert foreign_birth(status("online", 50.0, 130.0), mine)  # an older twin that reconnected
    assert Disconnected(TAKEN_OVER).taken_over and not Disconnected("Unspecified error").taken_over


class _BrokenPipeline:
    """The real pipeline's interface with a bug: the first frame raises."""

    policy = "challenge"

    def process(self, frame):
        raise RuntimeError("a bug in a stage")

    def flush(self):
        return []

    def stats(self):
        return {}

    def set_prompt_sink(self, sink) -> None:
        pass


def test_service_run_shuts_down_even_when_the_loop_raises(tmp_path: Path) -> None:
    from device.config import load_config
    from device.infra.modelstore import ModelStore
    from device.privacy.protector import build_protector
    from device.runtime.compose import build
    from device.runtime.lifecycle import Lifecycle
    from device.runtime.runtime_config import RuntimeConfig
    from device.runtime.service import Service
    from device.vision.sources import open_source

    replay = make_replay(tmp_path / "replay", visits=1)
    with Broker(tmp_path / "mq") as broker:
        cfg = load_config(
            None,
            {
                "terminal_id": TERMINAL,
                "service": {"state_dir": str(tmp_path / "state")},
                "mqtt": {"broker": broker.url},
                "vision": {"source": f"replay:{replay}"},
            },
        )
        source = open_source(cfg.vision.source, cfg.vision)
        protector = build_protector(cfg, tmp_path / "state")
        terminal = build(cfg, stages=(ModelStore(), source, _BrokenPipeline(), protector))
        service = Service(RuntimeConfig(cfg), terminal, Lifecycle({}), lambda: cfg)
        with pytest.raises(RuntimeError, match="a bug in a stage"):
            service.run()
        assert retained_status(broker)["state"] == "offline"  # the shutdown path published it
        assert not service.link.connected
        time.sleep(0.2)
        assert source._closed  # and the capture thread closed the source
