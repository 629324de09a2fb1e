"""Health numbers that do not belong to one stage: CPU temperature, uptime."""

from __future__ import annotations

from pathlib import Path

THERMAL_ROOT = Path("/sys/class/thermal")


def cpu_temperature_c(root: Path = THERMAL_ROOT) -> float | None:
    """The CPU (first readable thermal zone, `cpu`/`soc` preferred) in °C; None where there is none."""
    zones = sorted(root.glob("thermal_zone*"))
    preferred = [z for z in zones if _zone_type(z) in {"cpu-thermal", "soc-thermal", "x86_pkg_temp", "cpu"}]
    for zone in preferred + zones:
        try:
            return round(int((zone / "temp").read_text().strip()) / 1000.0, 1)
        except (OSError, ValueError):
            continue
    return None


def _zone_type(zone: Path) -> str:
    try:
        return (zone / "type").read_text().strip()
    except OSError:
        return ""
