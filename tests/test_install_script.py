"""scripts/install.sh and config.example.toml: they parse, lint clean, validate, and agree with the unit."""

from __future__ import annotations

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
    result = subprocess.run(["shellcheck", str(INSTALL), str(CHECK_UNIT)], capture_output=True, text=True)
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
