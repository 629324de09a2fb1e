"""The gate decision a terminal with `[gate] kind = "mqtt"` publishes for a relay elsewhere (`faceonly gate
listen`): which door to open for which subject, when it was decided, a nonce, and the terminal's signature.

Signed by the terminal's own Ed25519 key (device.privacy.signing: RFC 8785 canonical JSON of every other
field), so whoever can only publish on the broker cannot forge, alter or redirect one; `decided_at` and
`nonce` let the listener refuse a late or replayed one. No name, no biometric.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, ConfigDict, Field, StringConstraints

from device.wire.base import Nonce, Number, Wire

TERMINAL_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
DOOR = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
SUBJECT = r"^[A-Za-z0-9][A-Za-z0-9_.@:-]{0,127}$"  # device.identity.gallery.ID_PATTERN


def _same_type(expected: Any) -> BeforeValidator:
    """A Literal compares by ==, so `1` would pass for `true` and `true` for `1`: the JSON type must match."""

    def check(value: Any) -> Any:
        if type(value) is not type(expected):
            raise ValueError(f"must be {expected!r}")
        return value

    return BeforeValidator(check)


class TerminalSignature(Wire):
    alg: Literal["Ed25519"]
    key_id: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{16}$")] = Field(
        description="first 16 hex digits of the SHA-256 of the terminal's signing public key"
    )
    value: Annotated[str, StringConstraints(min_length=1, max_length=128)] = Field(
        description="base64 Ed25519 signature over RFC 8785 canonical JSON of every other field"
    )


class GateDecision(Wire):
    """A local gate decision (`[gate] kind = "mqtt"`, topic .../gate): open `door` for a live match, QoS 0,
    never retained, never queued across an outage. Act on it only if the signature verifies against the
    terminal's pinned key, `terminal_id` and `door` are yours, `decided_at` is within a second or two of
    your clock, and its nonce is new (`faceonly gate listen` does all of it)."""

    model_config = ConfigDict(strict=True)

    schema_: Annotated[Literal[1], _same_type(1)] = Field(
        alias="schema", description="payload schema version"
    )
    id: Annotated[str, StringConstraints(min_length=1, max_length=64)] = Field(description="payload id")
    type: Literal["gate.decision"]
    terminal_id: Annotated[str, StringConstraints(pattern=TERMINAL_ID)]
    created_at: Number = Field(description="unix seconds (terminal clock)")
    expires_at: Number = Field(description="unix seconds; mirrored by MQTT 5 MessageExpiryInterval")
    open: Annotated[Literal[True], _same_type(True)]
    door: Annotated[str, StringConstraints(pattern=DOOR)] = Field(description="[gate] door of the terminal")
    subject: Annotated[str, StringConstraints(pattern=SUBJECT)] = Field(description="the matched subject id")
    score: Number | None = Field(description="cosine similarity of the match (null: no face factor)")
    decided_at: Number = Field(description="unix seconds (terminal clock) when the match was decided")
    nonce: Nonce = Field(description="random, new for every decision")
    mode: Literal["face", "credential+face", "credential", "face|credential"] | None = Field(
        None, description="the door policy's mode that decided (absent: no door policy, a live match)"
    )
    factors: list[Literal["face", "pin", "badge", "qr", "pass"]] | None = Field(
        None, max_length=2, description="the factors that passed (with mode)"
    )
    signature: TerminalSignature
