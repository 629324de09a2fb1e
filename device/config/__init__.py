"""One typed config for the terminal: a TOML file on disk, overridable at run time by `config.set`.

Each concern has its own section model (one file each); this module composes them, loads TOML and
turns validation errors into messages that name the offending key.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator, model_validator

from device.config.access import AccessConfig
from device.config.base import Section
from device.config.control import ControlConfig
from device.config.gate import GateConfig
from device.config.homeassistant import HomeAssistantConfig
from device.config.identity import IdentityConfig
from device.config.mqtt import MqttConfig, OutboxConfig
from device.config.privacy import PrivacyConfig
from device.config.screen import ScreenConfig
from device.config.service import ServiceConfig
from device.config.vision import VisionConfig
from device.transport.topics import TERMINAL_ID_RULE, check_terminal_id


class ConfigError(ValueError):
    """Invalid configuration; `problems` lists one human-readable reason per offending key."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class Config(Section):
    terminal_id: str = Field(
        "demo-terminal",
        description="Unique id of this terminal; names its MQTT namespace and client id. "
        + TERMINAL_ID_RULE
        + ".",
    )
    service: ServiceConfig = ServiceConfig()
    mqtt: MqttConfig = MqttConfig()
    outbox: OutboxConfig = OutboxConfig()
    vision: VisionConfig = VisionConfig()
    privacy: PrivacyConfig = PrivacyConfig()
    identity: IdentityConfig = IdentityConfig()
    gate: GateConfig = GateConfig()
    control: ControlConfig = ControlConfig()
    homeassistant: HomeAssistantConfig = HomeAssistantConfig()
    screen: ScreenConfig = ScreenConfig()
    access: AccessConfig = AccessConfig()

    @model_validator(mode="after")
    def _access_has_a_policy_key(self) -> Config:
        if self.access.enabled and (
            self.access.policy_public_key_file is None and self.identity.gallery_public_key_file is None
        ):
            raise ValueError(
                "access.enabled needs the key that signs door policies: access.policy_public_key_file or "
                "identity.gallery_public_key_file"
            )
        return self

    @field_validator("terminal_id")
    @classmethod
    def _terminal_id(cls, value: str) -> str:
        return check_terminal_id(value)


# Dotted keys whose values are secrets: never reported, logged or sent (see `redact`).
SECRET_KEYS = frozenset({"mqtt.password"})
REDACTED = "**redacted**"


def _problems(exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(root)"
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        else:
            msg = err["msg"].removeprefix("Value error, ")
            if "input" in err and ".".join(str(p) for p in err["loc"]) not in SECRET_KEYS:
                msg += f" (got {_short(err['input'])})"
        out.append(f"{key}: {msg}")
    return out


def _short(value: Any) -> str:
    text = repr(value) if not isinstance(value, dict) else "a table"
    return text if len(text) <= 60 else text[:57] + "..."


def redact(config: Config) -> dict[str, Any]:
    """The config as JSON-ready data with every secret replaced: safe to report, log or publish."""
    data = config.model_dump(mode="json")
    for dotted in SECRET_KEYS:
        *path, leaf = dotted.split(".")
        node = data
        for part in path:
            node = node.get(part, {})
        if node.get(leaf) is not None:
            node[leaf] = REDACTED
    return data


def parse_config(data: dict[str, Any]) -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_problems(exc)) from None


def read_toml(path: Path | None) -> dict[str, Any]:
    """A config file's tables ({} without a file); ConfigError when it is missing or not TOML."""
    if path is None:
        return {}
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError([f"config file not found: {path}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None


def load_config(path: Path | None, overrides: dict[str, Any] | None = None) -> Config:
    """The file's config with `overrides` (e.g. command-line flags) applied, validated once so that
    every problem in either is reported together."""
    return parse_config(deep_merge(read_toml(path), overrides or {}))


def merge(base: Config, overrides: dict[str, Any]) -> Config:
    """A new validated config: `overrides` (nested dict) applied over `base`; `base` is never changed."""
    merged = deep_merge(base.model_dump(mode="json"), overrides)
    return parse_config(merged)


def deep_merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out
