"""Control-plane settings: who may command the terminal, how fresh a command must be, where replies go.

The command key is named only here, in the terminal's own file: nothing on the broker can change
who is trusted (the whole `[control]` section is not settable remotely).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator, model_validator

from device.config.base import Section
from device.config.privacy import read_public_key_file


class ControlConfig(Section):
    command_public_key_file: Path | None = Field(
        None,
        title="Command public key",
        description="The backend's Ed25519 command key (base64 of the raw 32 bytes, as written by "
        "`faceonly keys generate`); every state-changing command and config/desired must be signed by it. "
        "None: state-changing commands are refused (unless allow_unsigned).",
    )
    allow_unsigned: bool = Field(
        False,
        title="LAB ONLY: unsigned commands",
        description="LAB ONLY, never on a real terminal: accept state-changing commands without a signature. "
        "Anyone who can publish on the broker then commands the terminal; status and privacy.report say so.",
    )
    window_s: float = Field(
        300.0,
        ge=5,
        le=86400,
        description="Freshness window: a signed command is valid at most this long after issued_at; "
        "its nonce is remembered (persisted) for as long.",
    )
    clock_skew_s: float = Field(
        30.0, ge=0, le=600, description="Tolerated clock difference between the backend and the terminal."
    )
    reply_namespaces: tuple[str, ...] | None = Field(
        None,
        max_length=16,
        description="MQTT topic filters replies may go to, besides the terminal's own cmd/res/#; "
        "default <prefix>/v1/backend/#. Never $-topics, never a bare wildcard.",
    )
    inbox_size: int = Field(
        64, ge=8, le=10_000, description="Command requests waiting for the loop; beyond it: busy."
    )
    inbox_bytes: int = Field(
        4 * 1024 * 1024,
        ge=64 * 1024,
        le=256 * 1024 * 1024,
        description="Bytes of command requests waiting for the loop; beyond it: busy.",
    )
    reply_queue: int = Field(
        256,
        ge=8,
        le=10_000,
        description="Replies handed to the broker connection and not yet acknowledged; while it is full, "
        "requests wait in the command queue.",
    )

    @field_validator("reply_namespaces")
    @classmethod
    def _namespaces(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        for ns in value or ():
            levels = ns.split("/")
            if not ns or ns.startswith("$") or levels[0] in ("", "+", "#") or "\x00" in ns:
                raise ValueError(f"{ns!r}: must start with a plain topic level (no $, no wildcard)")
            if any(("+" in lv or "#" in lv) and lv not in ("+", "#") for lv in levels) or (
                "#" in levels[:-1]
            ):
                raise ValueError(f"{ns!r}: not a valid MQTT topic filter")
        return value

    @model_validator(mode="after")
    def _window_above_skew(self) -> ControlConfig:
        if self.clock_skew_s >= self.window_s:
            raise ValueError("clock_skew_s must be below window_s")
        return self

    def read_public_key(self) -> bytes | None:
        """The command key's 32 raw bytes, or None when none is named. ValueError names a bad file."""
        path = self.command_public_key_file
        if path is None:
            return None
        try:
            return read_public_key_file(path)
        except ValueError as exc:
            raise ValueError(f"control.command_public_key_file {path}: {exc}") from None
