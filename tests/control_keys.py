"""Command keys for tests: a key pair on disk, the terminal's [control] config for it, signed requests.

key = CommandKey.generate(tmp_path)
Terminal(..., conf_extra=key.toml())                  # the terminal trusts key.public_file
payload = key.request("restart", {"reason": "test"})  # bytes of a signed request for terminal t1
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey

from device.transport.auth import public_path, read_signing_key, sign_command, write_keypair
from device.transport.desired import signed_desired

TID = "t1"


@dataclass(frozen=True)
class CommandKey:
    private_file: Path
    public_file: Path
    key: SigningKey

    @classmethod
    def generate(cls, directory: Path) -> CommandKey:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "command.key"
        write_keypair(path)
        return cls(path, public_path(path), read_signing_key(path))

    @property
    def public_key(self) -> bytes:
        return bytes(self.key.verify_key)

    def toml(self, **extra: Any) -> str:
        """The terminal's [control] section naming this key (plus any other [control] settings)."""
        lines = ["[control]", f'command_public_key_file = "{self.public_file}"']
        lines += [f"{k} = {json.dumps(v)}" for k, v in extra.items()]
        return "\n".join(lines) + "\n"

    def fields(
        self,
        name: str,
        args: dict[str, Any] | None = None,
        *,
        terminal: str = TID,
        ttl_s: float = 60.0,
        now: float | None = None,
    ) -> dict[str, Any]:
        return sign_command(self.key, terminal, name, args or {}, ttl_s=ttl_s, now=now)

    def request(self, name: str, args: dict[str, Any] | None = None, **kwargs: Any) -> bytes:
        """A complete signed request (JSON bytes) for `name(args)`."""
        now = kwargs.get("now")
        body = {"schema": 1, "type": "command.request", "sent_at": now if now is not None else time.time()}
        body.update(self.fields(name, args, **kwargs))
        return json.dumps(body).encode()

    def desired(
        self, config: dict[str, Any], version: int, *, terminal: str = TID, ttl_s: float = 60.0
    ) -> bytes:
        return json.dumps(signed_desired(self.key, terminal, config, version, ttl_s=ttl_s)).encode()
