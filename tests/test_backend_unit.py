"""systemd/faceonly-backend.service: verify + security (exposure <= 2.5, the terminal's standard) through
scripts/check_unit.sh, and its restart policy against `faceonly backend`'s exit statuses."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from faceonly_backend.cli import backend as cli_backend
from tests.conftest import missing_data

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "faceonly-backend.service"


def test_backend_unit_verifies_with_the_terminals_hardening() -> None:
    if shutil.which("systemd-analyze") is None:
        missing_data("systemd-analyze is absent (apt-get install systemd; setup.sh --test does)")
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "check_unit.sh"), str(UNIT)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "verify: clean" in result.stdout
    assert float(re.search(r"exposure: ([0-9.]+)", result.stdout).group(1)) <= 2.5


def test_backend_unit_restarts_only_what_a_restart_can_fix() -> None:
    text = UNIT.read_text()
    prevented = {int(v) for v in re.search(r"^RestartPreventExitStatus=(.*)$", text, re.M).group(1).split()}
    assert prevented == {cli_backend.EXIT_CONFIG, cli_backend.EXIT_PERMANENT, cli_backend.EXIT_LOCKED}
    assert "Restart=on-failure" in text and "LimitCORE=0" in text and "MemorySwapMax=0" in text
    assert re.search(r"^ExecStart=/opt/faceonly/venv/bin/faceonly backend ", text, re.M)
