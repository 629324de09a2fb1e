"""The running config and the remote changes applied to it (`config.set`, `config/desired`).

The effective config is: the TOML file, then `faceonly run` flags, then the remote overrides that
were accepted (persisted atomically in the state dir so they survive a restart). A remote change is
checked against an allow-list first: each config field declares (device.config.base.remote) whether
it may be set remotely, with which bounds, and whether it applies live; everything else, including
anything that could weaken liveness, recognition, durability or privacy or cut the terminal off,
only the terminal's own file sets. Then the change is validated as a whole before anything is
replaced; an invalid one is refused with its reasons and the running config stays. Stored overrides
go through the same check when they are loaded at start, and can be set aside when the terminal
cannot start with them (`set_aside`), so a remote change can never keep it from coming back.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from device.config import Config, ConfigError, deep_merge, merge, redact
from device.infra.atomicfile import write_atomic

log = logging.getLogger(__name__)
T = TypeVar("T")

OVERRIDES_FILE = "config-overrides.json"
REJECTED_FILE = "config-overrides.rejected.json"
# Why a key is not settable remotely, by its first part (the default: only the file sets it).
_REASON = {
    "terminal_id": "would cut the terminal off",
    "mqtt": "would cut the terminal off",
    "control": "only the terminal's config file says who may command it",
    "privacy": "privacy settings are set only in the terminal's config file",
    "vision": "could weaken liveness or recognition",
    "outbox": "could weaken durability",
}


@dataclass(frozen=True)
class Rule:
    remote: bool
    live: bool
    ge: float | None = None
    le: float | None = None


def field_rules(model: type[BaseModel] = Config, prefix: str = "") -> dict[str, Rule]:
    """Every leaf field of the config, dotted, with what its metadata allows."""
    rules: dict[str, Rule] = {}
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            rules.update(field_rules(annotation, f"{prefix}{name}."))
            continue
        meta = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        rules[prefix + name] = Rule(
            bool(meta.get("remote", False)),
            bool(meta.get("live", False)),
            meta.get("remote_ge"),  # type: ignore[arg-type]
            meta.get("remote_le"),  # type: ignore[arg-type]
        )
    return rules


RULES = field_rules()


def remote_problems(changes: dict[str, Any]) -> list[str]:
    """Why `changes` (nested dict) may not come from the broker; empty when every key is allowed."""
    problems = []
    for key, value in _flatten(changes).items():
        rule = RULES.get(key)
        if rule is None:
            problems.append(f"{key}: unknown key")
        elif not rule.remote:
            reason = _REASON.get(key.split(".")[0], "set only in the terminal's config file")
            problems.append(f"{key}: not settable remotely ({reason})")
        elif isinstance(value, int | float) and not isinstance(value, bool):
            if rule.ge is not None and value < rule.ge:
                problems.append(f"{key}: a remote value must be at least {rule.ge:g}")
            if rule.le is not None and value > rule.le:
                problems.append(f"{key}: a remote value must be at most {rule.le:g}")
    return problems


class RuntimeConfig:
    def __init__(self, base: Config) -> None:
        self.base = base
        self.path = Path(base.service.state_dir) / OVERRIDES_FILE
        self.overrides: dict[str, Any] = {}
        self.version: int | None = None
        self.current = base
        self.problem: str | None = None  # why stored overrides are not in effect (status, health)
        self._load()

    def _load(self) -> None:
        try:
            stored = json.loads(self.path.read_text(encoding="utf-8"))
            overrides, version = stored["overrides"], stored.get("version")
            problems = remote_problems(overrides)
            if problems:
                raise ConfigError(problems)
            self.current = merge(self.base, overrides)
            self.overrides, self.version = overrides, version
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            # Includes ConfigError: an override that the current file or the allow-list refuses.
            self.problem = f"stored remote config not applied: {exc}"
            log.error("%s (%s)", self.problem, self.path)

    def set_aside(self, reason: str) -> None:
        """Run on the file config alone: the terminal could not start with the stored overrides.
        The overrides file is kept (renamed) for the operator to inspect."""
        self.problem = f"stored remote config set aside: {reason}"
        log.error("%s; starting without it (kept as %s)", self.problem, REJECTED_FILE)
        try:
            os.replace(self.path, self.path.with_name(REJECTED_FILE))
        except OSError as exc:
            log.error("could not move %s aside: %s", self.path, exc)
        self.overrides, self.version, self.current = {}, None, self.base

    def start(self, build: Callable[[Config], T], errors: tuple[type[BaseException], ...]) -> T:
        """`build(current)`; if that fails while stored overrides are in effect, set them aside and build
        from the file alone (a remote change must never keep the terminal from coming back)."""
        try:
            return build(self.current)
        except errors as exc:
            if not self.overrides:
                raise
            self.set_aside(f"start failed with it: {exc}")
        return build(self.current)

    def rebase(self, base: Config) -> list[str]:
        """A new file/flag config (SIGHUP): stored overrides are applied over it again. Returns the changed
        keys (vs the running config) that only a restart applies."""
        previous = self.current
        self.base = base
        self.current = merge(base, self.overrides) if self.overrides else base
        return self.restart_keys(previous)

    def apply(self, changes: dict[str, Any], version: int | None = None) -> dict[str, Any]:
        """Validate and apply `changes` (nested dict). Raises ConfigError; nothing changes then."""
        if not isinstance(changes, dict):
            raise ConfigError(["config: must be a table/object"])
        problems = remote_problems(changes)
        if problems:
            raise ConfigError(problems)
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

    def changed_keys(self, previous: Config) -> list[str]:
        """Dotted keys whose value differs between `previous` and the current config (names only)."""
        old, new = _flatten(previous.model_dump(mode="json")), _flatten(self.current.model_dump(mode="json"))
        return [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]

    def restart_keys(self, previous: Config) -> list[str]:
        """Changed keys (vs `previous`) that only a restart applies."""
        return [k for k in self.changed_keys(previous) if not (k in RULES and RULES[k].live)]

    def report(self) -> dict[str, Any]:
        return {"version": self.version, "config": redact(self.current)}


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(_flatten(value, dotted + "."))
        elif not (isinstance(value, dict) and prefix + key in _SECTIONS):
            out[dotted] = value
    return out


# An empty table for a section ({"vision": {}}) changes nothing; it is not a key of its own.
_SECTIONS = frozenset(".".join(k.split(".")[:i]) for k in RULES for i in range(1, k.count(".") + 1))
