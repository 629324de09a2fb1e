"""The command line speaks plainly: --version, a top-level help for operators, every command in
`ctl cmd --help` with its arguments, `models info` as a table (and JSON for machines)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

from device.runtime.control import COMMANDS
from device.transport.commands import CommandPlane

ROOT = Path(__file__).resolve().parents[1]


def _faceonly(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "device", *args], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def test_version_and_plain_top_level_help() -> None:
    version = _faceonly("--version")
    assert version.returncode == 0 and version.stdout.startswith("faceonly ")
    text = _faceonly("--help").stdout
    assert "camera terminal" in text and "register(" not in text


def test_ctl_cmd_help_lists_every_registered_command_with_its_arguments() -> None:
    from device.runtime.control import register_all
    from tests.test_commands import State

    plane = CommandPlane("x/cmd/res", 1024)
    register_all(plane, State(SimpleNamespace(report=dict), None, None, None, plane))  # type: ignore[arg-type]  # never called
    assert set(plane.handlers) == set(COMMANDS)
    text = _faceonly("ctl", "--broker", "mqtt://x", "--id", "t", "cmd", "--help").stdout
    for name in COMMANDS:
        assert f"  {name} " in text, name
    assert "config: dict" in text and "reason?: str" in text and "not_available" in text


def test_models_info_is_a_table_and_json_for_machines() -> None:
    table = _faceonly("models", "info")
    assert table.returncode == 0
    header, *rows = table.stdout.splitlines()
    assert header.split()[:4] == ["model", "file", "size", "weights"]
    assert any(row.startswith("embedder ") for row in rows) and "None" not in table.stdout
    machine = json.loads(_faceonly("models", "info", "--json").stdout)
    assert "embedder" in machine and machine["embedder"]["sha256"]
