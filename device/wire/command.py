"""The command request (backend -> terminal, on cmd/req/<name>) and its one reply (on the reply topic).

A request's every field is optional, so `{}` asks a read-only command with no arguments; a state-changing
command must also carry the signature fields (SignedFields), checked by device.transport.auth. The reply is
`ok` with a `result`, or not `ok` with an `error` {code, message, details?}.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, Field, StringConstraints, model_validator
from pydantic.json_schema import SkipJsonSchema

from device.transport.topics import valid_publish_topic
from device.wire.base import Nonce, Number, Wire

MAX_ID = 128
MAX_CORRELATION = 1024
NULLABLE = frozenset({"expires_at", "correlation_id"})
ErrorCode = Literal[
    "bad_json",
    "bad_request",
    "unknown_command",
    "too_large",
    "expired",
    "not_available",
    "invalid_config",
    "failed",
    "internal_error",
    "unauthenticated",
    "replayed",
    "retained",
    "bad_reply_topic",
    "busy",
    "refused",
]
ERROR_CODES: tuple[str, ...] = get_args(ErrorCode)


def _topic(value: str) -> str:
    if not valid_publish_topic(value):
        raise ValueError("must be a topic without wildcards")
    return value


def _correlation(value: str) -> str:
    if len(value.encode("utf-8", "replace")) > MAX_CORRELATION:
        raise ValueError(f"must be at most {MAX_CORRELATION} bytes")
    return value


class Signature(Wire):
    alg: Literal["Ed25519"]
    key_id: str = Field(description="first 16 hex digits of the SHA-256 of the command public key")
    value: str = Field(description="base64 Ed25519 signature")


class CommandRequest(Wire):
    """Command request (backend -> terminal) on cmd/req/{name}.

    Read-only commands (status, config.get, models.info, models.verify, privacy.report, gallery.list) may be
    unsigned. Every other one carries terminal, issued_at, expires_at, nonce and signature: an Ed25519
    signature by the command key over RFC 8785 canonical JSON of {terminal, name (the command), args,
    issued_at, expires_at, nonce}. Valid at most control.window_s after issued_at; each nonce is accepted
    once. Never published retained."""

    # Absent is fine; an explicit null only where it means something (no expiry, no correlation).
    schema_: Literal[1] | SkipJsonSchema[None] = Field(None, alias="schema")
    id: Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID)] | SkipJsonSchema[None] = None
    type: Literal["command.request"] | SkipJsonSchema[None] = None
    sent_at: Number | SkipJsonSchema[None] = Field(None, description="unix seconds")
    expires_at: Number | None = Field(
        None, description="unix seconds; signed requests: within control.window_s after issued_at"
    )
    reply_to: Annotated[str, AfterValidator(_topic)] | SkipJsonSchema[None] = Field(
        None, description="MQTT 3.1.1: reply topic (MQTT 5: ResponseTopic property)"
    )
    correlation_id: Annotated[str, AfterValidator(_correlation)] | None = Field(
        None, description="MQTT 3.1.1: echoed in the reply (MQTT 5: CorrelationData)"
    )
    args: dict[str, Any] = Field(default_factory=dict)
    terminal: str | SkipJsonSchema[None] = Field(
        None, description="the terminal id the command is for (signed)"
    )
    issued_at: Number | SkipJsonSchema[None] = Field(None, description="unix seconds (signed)")
    nonce: Nonce | SkipJsonSchema[None] = Field(None, description="unique per request (signed)")
    signature: Signature | SkipJsonSchema[None] = None

    @model_validator(mode="before")
    @classmethod
    def _null_only_where_allowed(cls, data: Any) -> Any:
        if isinstance(data, dict):
            nulls = sorted(k for k, v in data.items() if v is None and k not in NULLABLE)
            if nulls:
                raise ValueError(f"{', '.join(nulls)}: must not be null (leave the field out)")
        return data


class SignedFields(Wire):
    """What a state-changing request must carry besides its own fields (extra fields are the request's)."""

    model_config = Wire.model_config | {"extra": "ignore"}

    terminal: str = Field(description="the terminal id the command is for")
    issued_at: Number
    expires_at: Number
    nonce: Nonce
    signature: Signature


class ErrorBody(Wire):
    code: ErrorCode = Field(
        description="unauthenticated: a state-changing command without a valid signature by the command key, "
        "or signed for another terminal; expired: outside its validity window (or sent_at older than it); "
        "replayed: its nonce was already seen; retained: a retained request (never executed); "
        "bad_reply_topic: the reply topic is outside the reply namespace (this refusal goes to cmd/res); "
        "busy: the command queue is full, or too many recent signed commands; refused: a gallery update "
        "that is unsigned, forged, not newer, on the wrong base, for another embedder or malformed "
        "(details.reason; the gallery is unchanged)"
    )
    message: str = Field(min_length=1)
    details: Any = None


class _ReplyBody(Wire):
    command: str | None
    request_id: str | None


class ReplyOk(_ReplyBody):
    ok: Literal[True]
    result: dict[str, Any]


class ReplyError(_ReplyBody):
    ok: Literal[False]
    error: ErrorBody


class _Envelope(Wire):
    """The envelope fields every published payload carries (device.transport.envelope)."""

    schema_: Literal[1] = Field(alias="schema", description="payload schema version")
    id: str = Field(description="unique payload id (consumers dedupe on it)")
    type: Literal["command.reply"]
    terminal_id: str
    created_at: Number = Field(description="unix seconds")
    expires_at: Number | None = Field(description="unix seconds; mirrored by MQTT 5 MessageExpiryInterval")
    correlation_id: str | None = Field(
        None, description="the request's correlation data (also MQTT 5 CorrelationData)"
    )


class CommandReplyOk(_Envelope, ReplyOk):
    pass


class CommandReplyError(_Envelope, ReplyError):
    pass


CommandReply = Annotated[CommandReplyOk | CommandReplyError, Field(discriminator="ok")]


def error_body(
    command: str | None, request_id: str | None, code: ErrorCode, message: str, details: Any = None
) -> dict[str, Any]:
    """The body of a refusal (without envelope); `details` only when there are some."""
    err = ErrorBody(code=code, message=message, details=details)
    body = ReplyError(command=command, request_id=request_id, ok=False, error=err).model_dump()
    if details is None:
        del body["error"]["details"]
    return body


def ok_body(command: str | None, request_id: str | None, result: dict[str, Any]) -> dict[str, Any]:
    return ReplyOk(command=command, request_id=request_id, ok=True, result=result).model_dump()
