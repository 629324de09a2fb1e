"""Config: errors name the key, secrets are redacted, password from a file/credential, --validate-config."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from device.config import ConfigError, load_config, parse_config, redact
from device.config.mqtt import MqttConfig

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"mqtt": {"broker": "http://h:1"}}, "mqtt.broker"),
        ({"mqtt": {"broker": "mqtt://h:99999"}}, "mqtt.broker"),
        ({"mqtt": {"keepalive_s": "x"}}, "mqtt.keepalive_s"),
        ({"mqtt": {"tls_cert": "/c"}}, "mqtt"),
        ({"outbox": {"max_events": 0}}, "outbox.max_events"),
        ({"terminal_id": "a/b"}, "terminal_id"),
        ({"mqtt": {"surprise": 1}}, "mqtt.surprise"),
    ],
)
def test_errors_name_the_key(data: dict, key: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(data)
    assert any(p.startswith(f"{key}:") for p in exc.value.problems), exc.value.problems


def test_secret_never_in_reports_or_errors() -> None:
    cfg = parse_config({"mqtt": {"password": "hunter2", "username": "t1"}})
    assert "hunter2" not in json.dumps(redact(cfg))
    assert cfg.mqtt.read_password() == "hunter2"
    with pytest.raises(ConfigError) as exc:
        parse_config({"mqtt": {"password": "hunter2" * 200}})
    assert "hunter2" not in str(exc.value)


def test_password_file_and_systemd_credential(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pw").write_text("s3cret\n")
    assert MqttConfig(password_file=tmp_path / "pw").read_password() == "s3cret"
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    (tmp_path / "mqtt_password").write_text("fromcred")
    assert MqttConfig().read_password() == "fromcred"


def test_toml_loading(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('terminal_id = "gate-7"\n[mqtt]\nbroker = "mqtts://b.example:8883"\n')
    cfg = load_config(path)
    assert (cfg.terminal_id, cfg.mqtt.address.host, cfg.mqtt.address.port, cfg.mqtt.address.tls) == (
        "gate-7",
        "b.example",
        8883,
        True,
    )
    path.write_text("[mqtt\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)


def test_validate_config_cli(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('[mqtt]\npassword = "pw"\n')
    run = [sys.executable, "-m", "device", "run", "--validate-config", "--config"]
    ok = subprocess.run([*run, str(good), "--id", "t9"], cwd=ROOT, capture_output=True, text=True)
    assert (
        ok.returncode == 0
        and json.loads(ok.stdout)["terminal_id"] == "t9"
        and "pw" not in ok.stdout.replace("password", "")
    )
    bad = tmp_path / "bad.toml"
    bad.write_text("[outbox]\nmax_events = -3\n")
    res = subprocess.run([*run, str(bad), "--broker", "ftp://x"], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 2
    assert "outbox.max_events" in res.stderr and "mqtt.broker" in res.stderr


def test_validate_config_checks_every_file_the_config_names(tmp_path: Path) -> None:
    """A missing, world-readable or wrong-kind key file is a config error naming the setting, before `run`
    would fail on a bare errno; validation and start say the same (exit 2 and 3: systemd retries neither)."""
    from device.infra.atomicfile import write_checksummed

    state = tmp_path / "state"
    state.mkdir()
    secret = tmp_path / "gallery.key"  # a terminal's gallery-at-rest key: a checksummed binary secret
    write_checksummed(secret, bytes(range(32)), 0o600)
    loose = state / "signing.key"
    write_checksummed(loose, bytes(32), 0o644)
    cases = {
        f'[control]\ncommand_public_key_file = "{tmp_path / "absent.pub"}"\n': (
            "control.command_public_key_file",
            "No such file",
        ),
        f'[control]\ncommand_public_key_file = "{secret}"\n': (
            "control.command_public_key_file",
            "is a faceonly secret key file",
        ),
        f'[service]\nstate_dir = "{state}"\n': ("privacy.signing_key_file", "readable by others"),
    }
    for i, (text, (setting, what)) in enumerate(cases.items()):
        conf = tmp_path / f"c{i}.toml"
        conf.write_text(text)
        for extra in (["--validate-config"], ["--no-mqtt", "--source", "replay:/nonexistent"]):
            res = subprocess.run(
                [sys.executable, "-m", "device", "run", "--config", str(conf), *extra],
                cwd=ROOT, capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            # 2: an invalid config (validation); 3: a permanent start fault. systemd retries neither.
            assert res.returncode == (2 if extra == ["--validate-config"] else 3), (extra, res.stderr)
            line = next(ln for ln in res.stderr.splitlines() if "config error" in ln or "cannot start" in ln)
            assert setting in line and what in line, line
            assert "Traceback" not in res.stderr and "codec" not in res.stderr


def test_terminal_and_backend_reach_the_broker_through_one_connection_model(tmp_path, monkeypatch):
    """The same [mqtt] connection keys give the terminal and the backend the same client options."""
    from faceonly_backend.config import MqttSection

    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    (tmp_path / "pw").write_text("s3cret\n")
    for name in ("ca.pem", "c.pem", "k.pem"):
        (tmp_path / name).write_text("-")
    connection = {
        "broker": ["mqtts://a.example:8883", "mqtts://b.example"],
        "protocol": "3.1.1",
        "subscription_qos": 0,
        "username": "site-1",
        "password_file": tmp_path / "pw",
        "tls_ca": tmp_path / "ca.pem",
        "tls_cert": tmp_path / "c.pem",
        "tls_key": tmp_path / "k.pem",
    }
    terminal, backend = MqttConfig(**connection), MqttSection(**connection)
    assert terminal.client_options() == backend.client_options()
    assert [o.broker.port for o in backend.client_options()] == [8883, 8883]
    assert backend.client_options()[0].password == "s3cret"
    for bad in ({"broker": ["mqtt://a", "mqtts://b"]}, {"broker": []}, {"tls_cert": tmp_path / "c.pem"}):
        for model in (MqttConfig, MqttSection):
            with pytest.raises(ValueError):
                model(**bad)
    assert MqttConfig().address.host == "127.0.0.1"  # a terminal without a broker: the demo broker
    with pytest.raises(ValueError, match="no broker"):
        _ = MqttSection().brokers


@pytest.mark.parametrize(
    ("lores", "says"),
    [
        ((640, 0), "both be 0 or both be set"),
        ((1920, 360), "not be larger than the main stream"),
        ((641, 360), "must be even"),
    ],
)
def test_a_lores_stream_the_camera_cannot_deliver_is_refused(lores: tuple[int, int], says: str) -> None:
    camera = {"width": 1280, "height": 720, "lores_width": lores[0], "lores_height": lores[1]}
    with pytest.raises(ConfigError, match=says):
        parse_config({"vision": {"camera": camera}})
