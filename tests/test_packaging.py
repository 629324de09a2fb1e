"""A normal install (not editable: the locked terminal set, then the package, as scripts/install.sh does)
into a fresh venv finds its models, and puts the demo replay in the user's cache rather than beside
site-packages.

Installed from a copy of the source tree in a temporary folder, and run from another folder, so nothing can
fall back on this checkout's models/ or var/.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOT_SOURCE = shutil.ignore_patterns(".venv", ".cache", "var", ".git", "__pycache__", "*.egg-info", "build")


@pytest.mark.slow
def test_a_non_editable_install_finds_its_models(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=NOT_SOURCE)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    # As scripts/install.sh does on a terminal: the locked terminal set, hashes checked, then the package.
    for args in (
        ["--require-hashes", "--no-deps", "-r", str(src / "requirements" / "terminal.txt")],
        ["--no-deps", "--no-build-isolation", str(src)],
    ):
        pip = subprocess.run(
            [python, "-m", "pip", "install", "-q", *args], capture_output=True, text=True, timeout=900
        )
        assert pip.returncode == 0, pip.stderr[-2000:]
    shutil.rmtree(src)  # the installed package must not need its source tree
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACEONLY_")}
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"))
    faceonly = str(venv / "bin" / "faceonly")

    def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [faceonly, *args], cwd=home, env=env, capture_output=True, text=True, timeout=timeout
        )

    verify = run("models", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    shipped = len(json.loads((ROOT / "models" / "manifest.json").read_text())["models"])  # every one
    assert f"{shipped}/{shipped} models OK in {venv / 'share' / 'faceonly' / 'models'}" in verify.stdout
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "from device.infra.paths import demo_dir; print(demo_dir())"],
        cwd=home,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert where.stdout.strip() == str(home / ".cache" / "faceonly" / "demo-replay")
