"""The running config and the remote changes applied to it (`config.set`, `config/desired`).

The effective config is: the TOML file, then `faceonly run` flags, then the remote overrides that
were accepted (persisted atomically in the state dir so they survive a restart). A change is
validated as a whole before anything is replaced; an invalid one is refused with its reasons and
the running config stays. Keys that could cut the terminal off from its operators (identity, broker
connection, state location) are not settable remotely.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from device.atomicfile import write_atomic
from device.config import Config, ConfigError, deep_merge, merge, redact

log = logging.getLogger(__name__)

OVERRIDES_FILE = "config-overrides.json"
# Keys only the terminal's own config file may set: changing them remotely could cut the terminal off,
# or let whoever can publish on the broker weaken its privacy (turn sealing off, swap the backend key,
# change where keys live). The file on the terminal stays the authority for them.
LOCKED = ("terminal_id", "mqtt", "service.state_dir", "service.models_dir", "privacy")
LOCKED_REASON = {
    "privacy": "privacy settings are set only in the terminal's config file",
}
# Keys the loop applies without a restart; every other change takes effect after `restart`.
LIVE = ("service.health_interval_s", "outbox")


class RuntimeConfig:
    def __init__(self, base: Config) -> None:
        self.base = base
        self.path = Path(base.service.state_dir) / OVERRIDES_FILE
        self.overrides: dict[str, Any] = {}
        self.version: int | None = None
        self.current = base
        self._load()

    def _load(self) -> None:
        try:
            stored = json.loads(self.path.read_text(encoding="utf-8"))
            overrides, version = stored["overrides"], stored.get("version")
            self.current = merge(self.base, overrides)
            self.overrides, self.version = overrides, version
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # Includes ConfigError: an override that the current file makes invalid is not applied.
            log.error("stored remote config %s not applied: %s", self.path, exc)

    def rebase(self, base: Config) -> list[str]:
        """A new file/flag config (SIGHUP): stored overrides are applied over it again."""
        self.base = base
        self.current = merge(base, self.overrides) if self.overrides else base
        return self.restart_keys(base)

    def apply(self, changes: dict[str, Any], version: int | None = None) -> dict[str, Any]:
        """Validate and apply `changes` (nested dict). Raises ConfigError; nothing changes then."""
        if not isinstance(changes, dict):
            raise ConfigError(["config: must be a table/object"])
        locked = [key for key in _flatten(changes) if _under(key, LOCKED)]
        if locked:
            raise ConfigError(
                [
                    f"{key}: not settable remotely ("
                    f"{LOCKED_REASON.get(key.split('.')[0], 'would cut the terminal off')})"
                    for key in locked
                ]
            )
        overrides = deep_merge(self.overrides, changes)
        candidate = merge(self.base, overrides)
        previous = self.current
        write_atomic(self.path, json.dumps({"version": version, "overrides": overrides}).encode("utf-8"))
        self.overrides, self.version, self.current = overrides, version, candidate
        return {
            "version": version,
            "restart_required": self.restart_keys(previous),
            "config": redact(candidate),
        }

    def restart_keys(self, previous: Config) -> list[str]:
        """Changed keys (vs `previous`) that only a restart applies."""
        old, new = _flatten(previous.model_dump(mode="json")), _flatten(self.current.model_dump(mode="json"))
        changed = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
        return [k for k in changed if not _under(k, LIVE)]

    def report(self) -> dict[str, Any]:
        return {"version": self.version, "config": redact(self.current)}


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(_flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def _under(key: str, roots: tuple[str, ...]) -> bool:
    return any(key == r or key.startswith(r + ".") for r in roots)
