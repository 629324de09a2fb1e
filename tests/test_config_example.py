"""config.example.toml shows the real defaults: every value in it equals the pydantic default, except
the install values it marks as such (install.sh writes them for a real terminal)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from device.config import Config, load_config

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "config.example.toml"
INSTALL_VALUES = {"terminal_id", "service.state_dir", "service.models_dir", "mqtt.broker", "vision.source"}


def _leaves(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, dict):
            out.update(_leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _default(dump: dict[str, Any], dotted: str) -> Any:
    value: Any = dump
    for part in dotted.split("."):
        value = value[part]
    return value


def test_example_values_are_the_defaults_except_the_marked_install_values() -> None:
    example = _leaves(tomllib.loads(EXAMPLE.read_text(encoding="utf-8")))
    defaults = Config().model_dump(mode="json")
    differ = {key for key, value in example.items() if _default(defaults, key) != value}
    assert differ == INSTALL_VALUES, {k: (example[k], _default(defaults, k)) for k in differ ^ INSTALL_VALUES}
    text = EXAMPLE.read_text(encoding="utf-8")
    assert text.count("install value") >= len(INSTALL_VALUES)


def test_example_loads() -> None:
    assert load_config(EXAMPLE, {}).terminal_id == "terminal-01"


def test_run_takes_the_models_dir_from_the_command_line(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    res = subprocess.run(
        [sys.executable, "-m", "device", "run", "--config", str(EXAMPLE), "--models-dir", str(ROOT / "models"),
         "--state-dir", str(tmp_path / "st"), "--validate-config"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    service = json.loads(res.stdout)["service"]
    assert service["models_dir"] == str(ROOT / "models") and service["state_dir"] == str(tmp_path / "st")
