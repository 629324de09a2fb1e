"""Parsing `config/desired` (retained, from the backend): `{"schema": 1, "version": N, "config": {...}}`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

_ALLOWED = {"schema", "id", "type", "created_at", "expires_at", "version", "config"}


@dataclass(frozen=True)
class Desired:
    version: int | None
    config: dict[str, Any] = field(default_factory=dict)
    problems: tuple[str, ...] = ()
    empty: bool = False  # a cleared retained message: nothing to do


def parse_desired(raw: bytes) -> Desired:
    if not raw.strip():
        return Desired(None, empty=True)
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        return Desired(None, problems=(f"not JSON: {str(exc)[:120]}",))
    if not isinstance(data, dict):
        return Desired(None, problems=("must be a JSON object",))
    problems = [f"{k}: unknown field" for k in data if k not in _ALLOWED]
    version = data.get("version")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 0):
        problems.append("version: must be a non-negative integer")
        version = None
    if data.get("schema", 1) != 1:
        problems.append("schema: must be 1")
    if data.get("type", "config.desired") != "config.desired":
        problems.append("type: must be 'config.desired'")
    config = data.get("config")
    if not isinstance(config, dict):
        problems.append("config: must be an object")
        config = {}
    return Desired(version, config, tuple(problems))
