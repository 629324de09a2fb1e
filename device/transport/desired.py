"""Parsing `config/desired` (retained, from the backend): `{"schema": 1, "version": N, "config": {...}}`.

Like a state-changing command it is signed (device.transport.auth) as the command `config.desired`
with args `{"version": N, "config": {...}}`; the signature fields travel next to them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from nacl.signing import SigningKey

from device.transport.auth import AUTH_FIELDS, sign_command
from device.wire.base import validate
from device.wire.desired import ConfigDesired

DESIRED_COMMAND = "config.desired"


@dataclass(frozen=True)
class Desired:
    version: int | None
    config: dict[str, Any] = field(default_factory=dict)
    problems: tuple[str, ...] = ()
    empty: bool = False  # a cleared retained message: nothing to do
    auth: dict[str, Any] = field(default_factory=dict)  # the signature fields, for Authenticator.check

    def signed_request(self) -> dict[str, Any]:
        """What the signature covers, in the shape of a command request."""
        args: dict[str, Any] = {"config": self.config}
        if self.version is not None:
            args["version"] = self.version
        return {**self.auth, "args": args}


def parse_desired(raw: bytes) -> Desired:
    if not raw.strip():
        return Desired(None, empty=True)
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        return Desired(None, problems=(f"not JSON: {str(exc)[:120]}",))
    if not isinstance(data, dict):
        return Desired(None, problems=("must be a JSON object",))
    desired, problems = validate(ConfigDesired, data)
    auth = {k: data[k] for k in AUTH_FIELDS if k in data}
    if desired is None:
        # Still name the version it claimed, so config/reported says which desired state was refused.
        version = data.get("version")
        known = version if type(version) is int and version >= 0 else None
        return Desired(known, problems=tuple(problems), auth=auth)
    return Desired(desired.version, desired.config, auth=auth)


def signed_desired(
    key: SigningKey,
    terminal: str,
    config: dict[str, Any],
    version: int | None,
    *,
    ttl_s: float,
    now: float | None = None,
) -> dict[str, Any]:
    """A `config/desired` payload signed by the command key (what `faceonly ctl desired` publishes)."""
    args: dict[str, Any] = {"config": config}
    if version is not None:
        args["version"] = version
    fields = sign_command(key, terminal, DESIRED_COMMAND, args, ttl_s=ttl_s, now=now)
    del fields["args"]
    return {"schema": 1, "type": "config.desired", **args, **fields}
