"""`config/desired` (retained, from the backend): the config it wants this terminal to run.

Signed like a state-changing command (device.transport.auth) as the command `config.desired` with args
{config, version}; the signature fields travel beside them. Only keys settable remotely are applied
(device.runtime.runtime_config); this model checks the message's shape, not the keys' values.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from device.wire.base import Nonce, Number, Wire
from device.wire.command import Signature


class ConfigDesired(Wire):
    """Desired config (backend, retained), signed by the command key: RFC 8785 canonical JSON of {terminal,
    name: 'config.desired', args: {config, version}, issued_at, expires_at, nonce}."""

    schema_: Literal[1] | None = Field(None, alias="schema")
    id: str | None = None
    type: Literal["config.desired"] | None = None
    created_at: Number | None = None
    version: int | None = Field(None, ge=0, strict=True)
    config: dict[str, Any] = Field(description="nested keys as in the TOML file")
    terminal: str | None = Field(None, description="the terminal id the config is for (signed)")
    issued_at: Number | None = Field(None, description="unix seconds (signed)")
    expires_at: Number | None = Field(None, description="unix seconds (signed)")
    nonce: Nonce | None = Field(None, description="unique per message (signed)")
    signature: Signature | None = None
