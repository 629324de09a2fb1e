"""CI is honest about data: a test that needs ../shared/data skips on a developer's machine and
FAILS under CI=true when the data is absent (tests/conftest.py missing_data)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NEEDS_DATA = "tests/test_quality.py"  # a fast module with a test on ../shared/data


def _pytest(tmp_path: Path, ci: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CI": ci, "FACEONLY_SHARED_DATA": str(tmp_path / "absent")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider", NEEDS_DATA],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_missing_data_fails_in_ci_and_skips_locally(tmp_path: Path) -> None:
    ci = _pytest(tmp_path, "true")
    assert ci.returncode == 1 and "required in CI" in ci.stdout, ci.stdout[-2000:]
    local = _pytest(tmp_path, "")
    assert local.returncode == 0 and "skipped" in local.stdout, local.stdout[-2000:]


def test_every_data_test_goes_through_the_shared_data_fixture() -> None:
    # A test reading ../shared by its own path would bypass missing_data and skip silently in CI.
    for path in (ROOT / "tests").glob("test_*.py"):
        text = path.read_text(encoding="utf-8")
        assert '"shared"' not in text or "SHARED_DATA" in text, path.name
