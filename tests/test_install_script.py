"""scripts/install.sh and config.example.toml: they parse, lint clean, validate, and agree with the unit."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from device.config import load_config

ROOT = Path(__file__).resolve().parent.parent
INSTALL = ROOT / "scripts" / "install.sh"
CHECK_UNIT = ROOT / "scripts" / "check_unit.sh"
EXAMPLE = ROOT / "config.example.toml"
UNIT = ROOT / "systemd" / "faceonly.service"


def test_scripts_parse() -> None:
    for script in (INSTALL, CHECK_UNIT):
        result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr


@pytest.mark.skipif(
    shutil.which("shellcheck") is None, reason="shellcheck is absent (apt-get install shellcheck)"
)
def test_scripts_are_shellcheck_clean() -> None:
    result = subprocess.run(
        ["shellcheck", str(INSTALL), str(CHECK_UNIT), str(ROOT / "scripts" / "kiosk" / "faceonly-kiosk")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout


def test_config_example_validates_and_points_where_the_unit_puts_things() -> None:
    cfg = load_config(EXAMPLE)
    unit = UNIT.read_text()
    assert str(cfg.service.state_dir) == "/var/lib/faceonly"  # StateDirectory=faceonly
    assert "StateDirectory=faceonly" in unit
    assert cfg.service.models_dir is not None and str(cfg.service.models_dir) == "/opt/faceonly/models"
    assert cfg.mqtt.broker is not None  # a terminal never falls back to the embedded demo broker


def test_install_paths_match_the_unit() -> None:
    script = INSTALL.read_text()
    exec_start = re.search(r"^ExecStart=(\S+) run --config (\S+)$", UNIT.read_text(), re.M)
    assert exec_start, "ExecStart must be '<venv>/bin/faceonly run --config <file>'"
    venv = re.search(r"^VENV=\$PREFIX/(\S+)$", script, re.M)
    prefix = re.search(r"^PREFIX=(\S+)$", script, re.M)
    conf_dir = re.search(r"^CONF_DIR=(\S+)$", script, re.M)
    assert prefix and venv and conf_dir
    assert exec_start.group(1) == f"{prefix.group(1)}/{venv.group(1)}/bin/faceonly"
    assert exec_start.group(2) == f"{conf_dir.group(1)}/config.toml"
    assert re.search(r"^SVC_USER=faceonly$", script, re.M) and "User=faceonly" in UNIT.read_text()


def test_substituted_terminal_id_and_source_lines_exist() -> None:
    # install.sh rewrites these two lines of the example with sed; they must stay single-line keys.
    text = EXAMPLE.read_text()
    assert re.search(r'^terminal_id = ".*"$', text, re.M)
    assert len(re.findall(r"^source = .*$", text, re.M)) == 1


def test_kiosk_and_voice_options_install_the_kiosk_the_sound_devices_and_switch_the_screen_on() -> None:
    if os.geteuid() != 0:
        pytest.skip("the dry run checks for root like the real one")
    done = subprocess.run(
        ["bash", str(INSTALL), "--dry-run", "--kiosk", "--voice"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "faceonly-kiosk /usr/local/bin/faceonly-kiosk" in out
    assert "/etc/xdg/autostart/faceonly-kiosk.desktop" in out and "http://127.0.0.1:8470/" in out
    assert "systemd/faceonly.service.d/voice.conf /etc/systemd/system/faceonly.service.d/voice.conf" in out
    wanted = re.search(
        r"^== (?:installing apt packages: .*\(wanted: (.*)\)|apt packages present: (.*))$", out, re.M
    )
    assert wanted is not None
    assert {"chromium", "espeak-ng", "alsa-utils"} <= set((wanted.group(1) or wanted.group(2)).split())
    # The new config turns the screen and its voice on, in [screen] only (Home Assistant's `enabled` stays).
    changed = [
        line for line in out.splitlines() if line[:1] in "+-" and not line.startswith(("+++", "---", "+ "))
    ]
    assert sorted(changed) == sorted(
        ["-enabled = false", "+enabled = true", "-voice = false", "+voice = true"]
        + [c for c in changed if c.startswith(("-terminal_id", "+terminal_id", "-source", "+source"))]
    ), changed
    plain = subprocess.run(["bash", str(INSTALL), "--dry-run"], capture_output=True, text=True, timeout=120)
    assert "faceonly-kiosk" not in plain.stdout and "voice.conf" not in plain.stdout


def test_the_kiosk_launcher_and_autostart_entry() -> None:
    launcher, desktop = (
        ROOT / "scripts" / "kiosk" / "faceonly-kiosk",
        ROOT / "scripts" / "kiosk" / "faceonly-kiosk.desktop",
    )
    assert os.access(launcher, os.X_OK)
    assert subprocess.run(["sh", "-n", str(launcher)]).returncode == 0
    if shutil.which("shellcheck"):
        result = subprocess.run(["shellcheck", str(launcher)], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout
    text = launcher.read_text()
    assert "--kiosk" in text and "--incognito" in text and "http://127.0.0.1:8470/" in text
    entry = desktop.read_text()
    assert "Exec=/usr/local/bin/faceonly-kiosk @URL@" in entry and "Type=Application" in entry
    if shutil.which("desktop-file-validate"):
        assert subprocess.run(["desktop-file-validate", str(desktop)]).returncode == 0


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is absent")
def test_the_unit_with_the_voice_drop_in_still_verifies_and_scores(tmp_path: Path) -> None:
    drop_in = (ROOT / "systemd" / "faceonly.service.d" / "voice.conf").read_text()
    lines = [line for line in drop_in.splitlines() if line and not line.startswith(("#", "["))]
    assert lines == ["SupplementaryGroups=audio", "DeviceAllow=char-alsa rw"]
    merged = tmp_path / "faceonly.service"
    merged.write_text(UNIT.read_text().replace("\n[Install]", "\n" + "\n".join(lines) + "\n\n[Install]"))
    result = subprocess.run(
        ["bash", str(CHECK_UNIT), str(merged)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
