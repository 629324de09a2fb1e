"""`faceonly doctor` as a subprocess, with a replay source and real mosquitto brokers (open, password +
ACL, TLS, stopped): each check prints its verdict, a failure names its cause and fix and exits 1."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from device.infra.modelstore import ModelError, ModelStore
from tests.asyncapi_contract import channels, violations
from tests.broker import Broker
from tests.conftest import missing_data
from tests.replay_faces import make_replay

ROOT = Path(__file__).resolve().parent.parent
TID = "t1"


@pytest.fixture(scope="module")
def replay(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        ModelStore()
    except ModelError as exc:
        missing_data(f"models are not built in this checkout: {exc}")
    return make_replay(tmp_path_factory.mktemp("replay"), 2)


def doctor(tmp: Path, replay: Path, broker: str, conf: str = "") -> tuple[int, dict[str, list[str]], str]:
    cfg = tmp / "doctor.toml"
    cfg.write_text(f'terminal_id = "{TID}"\n[vision]\nreplay_pace = "fast"\n' + conf)
    cmd = [sys.executable, "-m", "device", "doctor", "--config", str(cfg), "--broker", broker]
    cmd += ["--source", f"replay:{replay}", "--state-dir", str(tmp / "state"), "--seconds", "1"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    lines: dict[str, list[str]] = {}
    for line in out.stdout.splitlines()[:-1]:
        verdict, name = line.split()[:2]
        lines.setdefault(name, []).append(verdict)
    return out.returncode, lines, out.stdout + out.stderr


def test_open_broker_every_check_has_a_verdict_and_the_open_acl_is_a_warning(
    tmp_path: Path, replay: Path
) -> None:
    with Broker(tmp_path / "mosq") as broker:
        seen: list[tuple[str, dict]] = []
        ready = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="watch", protocol=mqtt.MQTTv5)
        c.on_connect = lambda cl, u, f, rc, p: cl.subscribe("faceonly/#", qos=1)
        c.on_subscribe = lambda *a: ready.set()
        c.on_message = lambda cl, u, m: seen.append((m.topic, json.loads(m.payload)))
        c.connect(broker.host, broker.port)
        c.loop_start()
        assert ready.wait(5)
        rc, lines, text = doctor(tmp_path, replay, broker.url)
        c.disconnect()
        c.loop_stop()
    assert set(lines) == {"camera", "models", "keys", "broker", "login", "acl", "clock", "disk", "unit"}, text
    assert lines["keys"] == ["OK"] and "created on first start" in text
    assert lines["camera"] == ["OK"] and "fps" in text
    assert lines["models"] == ["OK"] and lines["broker"] == ["OK"] and lines["login"] == ["OK"]
    assert lines["acl"] == ["OK", "WARN"] and "the ACL is open" in text and "fix:" in text
    assert all(v in ("OK", "WARN") for vs in lines.values() for v in vs)
    assert rc == 0, text
    # The probe is the only thing the doctor published, and it follows the AsyncAPI document.
    assert [t for t, _ in seen] == ["faceonly/v1/dev/t1/doctor", "faceonly/v1/dev/doctor-acl-probe/doctor"]
    assert all(violations(t, p, channels()) == [] for t, p in seen)


def test_password_and_acl_broker_ok_and_a_wrong_password_fails(tmp_path: Path, replay: Path) -> None:
    acl = Broker.terminal_acl()
    with Broker(tmp_path / "mosq", users={TID: "right"}, acl=acl) as broker:
        (tmp_path / "pw").write_text("right\n")
        conf = f'[mqtt]\nusername = "{TID}"\npassword_file = "{tmp_path / "pw"}"\n'
        rc, lines, text = doctor(tmp_path, replay, broker.url, conf)
        assert lines["acl"] == ["OK", "OK"] and "cannot read other terminals' topics" in text, text
        assert rc == 0 and "hass" not in lines, text
        # With Home Assistant on, this ACL (own namespace only) refuses the discovery prefix.
        rc, lines, text = doctor(tmp_path, replay, broker.url, conf + "[homeassistant]\nenabled = true\n")
        assert rc == 1 and lines["hass"] == ["FAIL"] and "fix: grant the terminal `pattern write" in text, (
            text
        )
        (tmp_path / "pw").write_text("wrong\n")
        rc, lines, text = doctor(tmp_path, replay, broker.url, conf)
    assert rc == 1 and lines["login"] == ["FAIL"], text
    assert "Not authorized" in text or "Bad user name or password" in text
    assert "fix: check mqtt.username" in text
    with Broker(
        tmp_path / "mosq2", users={TID: "right"}, acl=acl + "pattern write homeassistant/+/%u/#\n"
    ) as broker:
        (tmp_path / "pw").write_text("right\n")
        rc, lines, _ = doctor(tmp_path, replay, broker.url, conf + "[homeassistant]\nenabled = true\n")
    assert rc == 0 and lines["hass"] == ["OK"]


def test_tls_chain_is_verified_and_a_wrong_ca_fails(tmp_path: Path, replay: Path) -> None:
    from tests.broker import make_ca

    with Broker(tmp_path / "mosq", tls=True, require_certificate=False) as broker:
        conf = f'[mqtt]\ntls_ca = "{broker.ca_cert}"\n'
        rc, lines, text = doctor(tmp_path, replay, broker.url, conf)
        assert lines["tls"] == ["OK"] and "chain verified" in text and rc == 0, text
        rogue, _ = make_ca(tmp_path / "rogue")
        rc, lines, text = doctor(tmp_path, replay, broker.url, f'[mqtt]\ntls_ca = "{rogue}"\n')
    assert rc == 1 and lines["tls"] == ["FAIL"] and "CERTIFICATE_VERIFY_FAILED" in text, text


def test_stopped_broker_is_named_with_a_fix_and_exits_non_zero(tmp_path: Path, replay: Path) -> None:
    with Broker(tmp_path / "mosq") as broker:
        url = broker.url
        broker.stop()
        rc, lines, text = doctor(tmp_path, replay, url)
    assert rc == 1
    assert lines["broker"] == ["FAIL"] and f"cannot reach {url}: Connection refused" in text
    assert "fix: start the broker" in text
    assert lines["login"] == ["SKIP"] and lines["camera"] == ["OK"]


def test_a_missing_source_fails_with_a_fix(tmp_path: Path, replay: Path) -> None:
    rc, lines, text = doctor(tmp_path, tmp_path / "nothing-here", "mqtt://127.0.0.1:1")
    assert rc == 1 and lines["camera"] == ["FAIL"] and "fix: check the replay path" in text, text


def test_disk_verdicts_follow_the_outbox_bounds(tmp_path: Path) -> None:
    from device.config import Config
    from device.doctor import local

    state = {"state_dir": str(tmp_path / "state")}
    assert local.disk(Config(service=state)).verdict == "ok"
    warn = local.disk(Config(service=state, outbox={"max_bytes": 2**60}))
    assert warn.verdict == "warn" and warn.fix
    fail = local.disk(Config(service=state, outbox={"reserve_bytes": 2**61}))
    assert fail.verdict == "fail" and "reserve" in fail.fix


def test_without_systemd_tools_clock_and_unit_say_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from device.doctor import local

    monkeypatch.setenv("PATH", str(tmp_path))  # an empty PATH: no timedatectl, no systemctl
    clock, unit = local.clock(), local.unit()
    assert clock.verdict == "warn" and "timedatectl is not installed" in clock.detail
    assert unit.verdict == "warn" and "not installed" in unit.detail and unit.fix


def test_keys_name_the_signing_key_id_the_backend_pins(tmp_path: Path, replay: Path) -> None:
    """The key id `backend terminals add --confirm` asks for: the doctor prints it, and so does the service's
    log at start (the same id as its privacy.report); a damaged key is a failure naming the setting."""
    from device.config import load_config
    from device.doctor.local import keys
    from device.privacy.signing import load_signer

    state = tmp_path / "state"
    signer, _ = load_signer(state / "signing.key")
    cfg = load_config(None, {"service": {"state_dir": str(state)}})
    check = keys(cfg)
    assert check.verdict == "ok" and f"signing key id {signer.key_id}" in check.detail
    run = subprocess.run(
        [sys.executable, "-m", "device", "run", "--no-mqtt", "--source", f"replay:{replay}", "--state-dir", str(state)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0 and f"signing key id {signer.key_id}" in run.stderr, run.stderr[-2000:]
    (state / "signing.key").write_bytes((state / "signing.key").read_bytes()[:-3])
    broken = keys(cfg)
    assert broken.verdict == "fail" and "privacy.signing_key_file" in broken.detail and broken.fix
