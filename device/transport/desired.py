"""Parsing `config/desired` (retained, from the backend): `{"schema": 1, "version": N, "config": {...}}`.

Like a state-changing command it is signed (device.transport.auth) as the command `config.desired`
with args `{"version": N, "config": {...}}`; the signature fields travel next to them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nacl.signing import SigningKey

from device.transport.auth import AUTH_FIELDS, sign_command
from device.wire.base import validate
from device.wire.bounded import PayloadError, loads_bounded
from device.wire.desired import ConfigDesired

DESIRED_COMMAND = "config.desired"


@dataclass(frozen=True)
class Desired:
    version: int | None
    config: dict[str, Any] = field(default_factory=dict)
    problems: tuple[str, ...] = ()
    empty: bool = False  # a cleared retained message: nothing to do
    auth: dict[str, Any] = field(default_factory=dict)  # the signature fields, for Authenticator.check
    args: dict[str, Any] = field(default_factory=dict)  # what the signature covers, as sent (valid or not)
    unreadable: str | None = None  # why there is nothing to authenticate (a payload code, or "malformed")

    def signed_request(self) -> dict[str, Any]:
        """What the signature covers, in the shape of a command request."""
        return {**self.auth, "args": self.args}


def parse_desired(raw: bytes, max_bytes: int) -> Desired:
    """The message bounded in size and depth, then read; its validity is judged only after its signature
    (config/reported answers only an authenticated sender)."""
    if not raw.strip():
        return Desired(None, empty=True)
    try:
        data = loads_bounded(raw, max_bytes)
    except PayloadError as exc:
        return Desired(None, problems=(str(exc),), unreadable=exc.code)
    if not isinstance(data, dict):
        return Desired(None, problems=("must be a JSON object",), unreadable="malformed")
    auth = {k: data[k] for k in AUTH_FIELDS if k in data}
    args: dict[str, Any] = {"config": data.get("config")}
    if data.get("version") is not None:
        args["version"] = data["version"]
    desired, problems = validate(ConfigDesired, data)
    if desired is None:
        # Still name the version it claimed, so config/reported says which desired state was refused.
        version = data.get("version")
        known = version if type(version) is int and version >= 0 else None
        return Desired(known, problems=tuple(problems), auth=auth, args=args)
    return Desired(desired.version, desired.config, auth=auth, args=args)


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
