"""systemd/faceonly.service: verify + security through scripts/check_unit.sh (the CI step), the unit's
lifecycle settings against the service config, and the W^X claim behind MemoryDenyWriteExecute=."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from device.config.service import ServiceConfig
from device.infra.paths import models_dir
from tests.conftest import missing_data

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "faceonly.service"
CHECK = ROOT / "scripts" / "check_unit.sh"
MAX_EXPOSURE = 2.5

needs_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is absent"
)


def _settings(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith(("#", "[")):
            key, value = line.split("=", 1)
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def _check(unit: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(CHECK), str(unit)], capture_output=True, text=True, timeout=120)


@needs_analyze
def test_unit_verifies_and_exposure_is_at_most_2_5() -> None:
    result = _check(UNIT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "verify: clean" in result.stdout
    score = float(re.search(r"exposure: ([0-9.]+)", result.stdout).group(1))
    assert score <= MAX_EXPOSURE


@needs_analyze
def test_check_fails_on_a_unit_verify_complains_about(tmp_path: Path) -> None:
    broken = tmp_path / "faceonly.service"
    broken.write_text(UNIT.read_text().replace("UMask=0077", "UMask=0077\nProtectSystm=strict"))
    result = _check(broken)
    assert result.returncode != 0
    assert "ProtectSystm" in result.stdout + result.stderr


@needs_analyze
def test_check_fails_when_hardening_is_dropped(tmp_path: Path) -> None:
    kept = ("[", "Description", "ExecStart", "Type", "User", "Group", "Restart", "WantedBy")
    weak = tmp_path / "faceonly.service"
    weak.write_text("\n".join(line for line in UNIT.read_text().splitlines() if line.startswith(kept)) + "\n")
    result = _check(weak)
    assert result.returncode != 0
    assert "above 2.5" in result.stderr


def test_lifecycle_settings_match_the_service() -> None:
    s = _settings(UNIT.read_text())
    assert s["Type"] == ["notify"] and s["NotifyAccess"] == ["main"]
    assert s["Restart"] == ["on-failure"]
    assert s["ExecStart"] == ["/opt/faceonly/venv/bin/faceonly run --config /etc/faceonly/config.toml"]
    assert s["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    # The graceful stop (outbox flush for stop_flush_s, then offline + disconnect) fits the stop timeout.
    stop_s = int(s["TimeoutStopSec"][0].removesuffix("s"))
    assert stop_s >= ServiceConfig().stop_flush_s + 10
    assert int(s["WatchdogSec"][0].removesuffix("s")) > 0
    assert s["StateDirectory"] == ["faceonly"] and s["StateDirectoryMode"] == ["0700"]
    assert s["ConfigurationDirectory"] == ["faceonly"]


def test_camera_devices_and_nothing_else() -> None:
    s = _settings(UNIT.read_text())
    assert s["DevicePolicy"] == ["closed"]
    assert sorted(a.split()[0] for a in s["DeviceAllow"]) == [
        "char-dma_heap",
        "char-media",
        "char-vchiq",
        "char-video4linux",
    ]
    assert s["CapabilityBoundingSet"] == [""] and s["AmbientCapabilities"] == [""]
    assert s["LimitCORE"] == ["0"] and s["MemorySwapMax"] == ["0"]
    assert "video" in s["SupplementaryGroups"][0].split()


MDWE_PROBE = r"""
import ctypes, mmap, sys
import numpy as np
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN (Linux >= 6.3)
    print("NO-MDWE"); sys.exit(0)
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    sys.exit("W+X mapping was allowed: MDWE is not in force")
except PermissionError:
    pass
from device.infra.modelstore import ModelStore
store = ModelStore()
rng = np.random.default_rng(0)
ran = []
for name, entry in store.entries.items():
    if entry.kind != "tflite":
        continue
    interp = store.interpreter(name, num_threads=2)
    for d in interp.get_input_details():
        dtype = np.dtype(d["dtype"])
        x = rng.random(d["shape"]) if dtype.kind == "f" else rng.integers(0, 127, d["shape"])
        interp.set_tensor(d["index"], x.astype(dtype))
    interp.invoke()
    ran.append(name)
print("RAN", " ".join(ran))
"""


def test_models_run_without_writable_executable_memory() -> None:
    """MemoryDenyWriteExecute=true holds only if LiteRT/XNNPACK never map W+X: run every shipped model
    under the kernel's own W^X switch (PR_SET_MDWE, what systemd uses where the kernel has it)."""
    if not (models_dir() / "manifest.json").is_file():
        missing_data("models/manifest.json is not built yet")
    result = subprocess.run(
        [sys.executable, "-c", MDWE_PROBE], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    if result.stdout.strip() == "NO-MDWE":
        pytest.skip("this kernel has no PR_SET_MDWE (Linux < 6.3)")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("RAN ") and len(result.stdout.split()) > 1, result.stdout
