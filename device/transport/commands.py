"""The command plane: parse a request, check who sent it, run its handler, build exactly one reply.

A request arrives on `.../cmd/req/<name>`. Its reply address is the MQTT 5 ResponseTopic (with
CorrelationData) or, for MQTT 3.1.1, `reply_to` / `correlation_id` in the JSON payload; without
one the reply goes to `.../cmd/res`. A reply address outside the reply namespace (ReplyPolicy) is
refused and counted, the refusal going to `.../cmd/res`. Anything wrong with a request (bad JSON,
wrong types, unknown command, too large, expired, retained, unsigned, replayed) produces an error
reply and changes nothing.

Handlers are plain functions `args dict -> result dict` registered by name; they raise
CommandError(code, message) to refuse. Whoever registers a handler declares there whether it is
read-only (`register(..., read_only=True)`): only those may come unsigned; every other one must carry
a valid signature by the command key (device.transport.auth), checked after parsing and before the
handler runs. Other parts of the terminal register theirs (enroll, gallery.*, subject.purge); until
they do, those names answer `not_available`.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeVar

from pydantic import BaseModel

from device.transport.topics import COMMAND_NAME_PATTERN, valid_publish_topic
from device.wire.base import problems as validation_problems
from device.wire.base import validate
from device.wire.bounded import PayloadError, loads_bounded
from device.wire.command import MAX_CORRELATION, MAX_ID, CommandRequest, ErrorCode, error_body, ok_body

if TYPE_CHECKING:
    from device.transport.auth import Authenticator
    from device.transport.replies import ReplyPolicy

log = logging.getLogger(__name__)

ModelT = TypeVar("ModelT", bound=BaseModel)

# Error codes (the `code` of an error reply). Documented in device/api/schemas/command-reply.json.
BAD_JSON: Final = "bad_json"
BAD_REQUEST: Final = "bad_request"
UNKNOWN_COMMAND: Final = "unknown_command"
TOO_LARGE: Final = "too_large"
EXPIRED: Final = "expired"
NOT_AVAILABLE: Final = "not_available"
INVALID_CONFIG: Final = "invalid_config"
FAILED: Final = "failed"
INTERNAL: Final = "internal_error"
UNAUTHENTICATED: Final = "unauthenticated"
REPLAYED: Final = "replayed"
RETAINED: Final = "retained"
BAD_REPLY_TOPIC: Final = "bad_reply_topic"
BUSY: Final = "busy"

# Reserved for other parts of the terminal; answered with NOT_AVAILABLE until registered.
RESERVED = ("enroll", "subject.purge")
RESERVED_PREFIXES = ("gallery.",)


class CommandError(Exception):
    def __init__(self, code: ErrorCode, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details


@dataclass(frozen=True)
class Request:
    name: str
    args: dict[str, Any]
    request_id: str | None
    reply_to: str | None
    correlation: bytes | None  # echoed as MQTT 5 CorrelationData and as `correlation_id` text


@dataclass(frozen=True)
class Reply:
    topic: str
    body: dict[str, Any]  # goes into an envelope of type command.reply
    correlation: bytes | None
    correlation_id: str | None
    deferred: bool = False  # the handler answers later (enroll): publish `completed(...)` then, not this


class Deferred:
    """What a handler returns to answer later, exactly once, with `completed(reply, outcome)`."""


Handler = Callable[[dict[str, Any]], "dict[str, Any] | Deferred"]


def completed(reply: Reply, outcome: dict[str, Any] | CommandError) -> Reply:
    """The one reply of a deferred request: its result, or the error that ended it."""
    command, request_id = reply.body.get("command"), reply.body.get("request_id")
    if isinstance(outcome, CommandError):
        body = error_body(command, request_id, outcome.code, outcome.message, outcome.details)
    else:
        body = ok_body(command, request_id, outcome)
    return Reply(reply.topic, body, reply.correlation, reply.correlation_id)


def correlation_text(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.hex()


class CommandPlane:
    """`auth` None: every state-changing command is refused. `replies` None: replies go only to the
    default reply topic. `max_age_s`: a request whose `sent_at` is older is refused as expired."""

    def __init__(
        self,
        default_reply_topic: str,
        max_bytes: int,
        clock: Callable[[], float] = time.time,
        *,
        auth: Authenticator | None = None,
        replies: ReplyPolicy | None = None,
        max_age_s: float | None = None,
    ) -> None:
        self.default_reply_topic = default_reply_topic
        self.max_bytes = max_bytes
        self.clock = clock
        self.auth = auth
        self.replies = replies
        self.max_age_s = max_age_s
        self.handlers: dict[str, Handler] = {}
        self.read_only: set[str] = set()  # may run unsigned: they change nothing
        self.replay_safe: set[str] = set()  # signed; their nonces are not recorded
        self.counts = {"ok": 0, "error": 0, "reply_refused": 0, "retained": 0, "unauthenticated": 0}

    def register(
        self, name: str, handler: Handler, *, read_only: bool = False, replay_safe: bool = False
    ) -> None:
        """`read_only`: the handler changes nothing on the terminal, so anyone who may publish the request
        may run it unsigned (it must also be cheap: unsigned requests can come in floods).

        `replay_safe`: signed, but running the same request again changes nothing more (it names all it
        changes, and each of its effects is checked against state signed elsewhere, as a gallery chunk
        against its manifest), so its nonce is not recorded: no durable write per request, and no slot of
        the replay cache per request (a 100,000-subject gallery is ~1,600 chunks)."""
        if not re.match(COMMAND_NAME_PATTERN, name):
            raise ValueError(f"bad command name {name!r}")
        if read_only and replay_safe:
            raise ValueError(f"{name}: a read-only command is not signed at all")
        self.handlers[name] = handler
        for flag, names in ((read_only, self.read_only), (replay_safe, self.replay_safe)):
            if flag:
                names.add(name)
            else:
                names.discard(name)

    def handle(
        self,
        name: str,
        payload: bytes,
        response_topic: str | None,
        correlation: bytes | None,
        retained: bool = False,
    ) -> Reply:
        """Exactly one reply for one request, whatever it contains."""
        refusal = self.reply_refusal(response_topic) if response_topic is not None else None
        reply_to = response_topic if refusal is None else None
        request_id: str | None = None
        try:
            req, data = self._parse(name, payload, reply_to, correlation, refusal)
            reply_to, correlation, request_id = req.reply_to, req.correlation, req.request_id
            handler = self._handler(req.name)
            if retained:
                # A retained request is replayed by the broker to every new subscriber, forever.
                self.counts["retained"] += 1
                raise CommandError(RETAINED, "retained command requests are never executed")
            if req.name not in self.read_only:
                self.authorize(req.name, data)
            result = handler(req.args)
            if isinstance(result, Deferred):
                pending: dict[str, Any] = {"command": name_or_none(name), "request_id": request_id}
                return Reply(
                    reply_to or self.default_reply_topic,
                    pending,
                    correlation,
                    correlation_text(correlation),
                    True,
                )
            if not isinstance(result, dict):
                raise CommandError(INTERNAL, f"handler for {req.name} returned {type(result).__name__}")
            body = ok_body(name_or_none(name), request_id, result)
            self.counts["ok"] += 1
        except CommandError as exc:
            if isinstance(exc, _ParsedError):
                reply_to = exc.reply_to or reply_to
                correlation = exc.correlation if exc.correlation is not None else correlation
                request_id = exc.request_id
            body = error_body(name_or_none(name), request_id, exc.code, exc.message, exc.details)
            self.counts["error"] += 1
        except Exception as exc:  # a handler bug must still produce its one reply
            log.exception("command %s failed", name_or_none(name))
            message = f"{type(exc).__name__} while running the command"
            body = error_body(name_or_none(name), request_id, INTERNAL, message)
            self.counts["error"] += 1
        return Reply(reply_to or self.default_reply_topic, body, correlation, correlation_text(correlation))

    def describe_auth(self) -> dict[str, Any]:
        """Who may command this terminal (for status and privacy.report)."""
        if self.auth is None:
            out: dict[str, Any] = {
                "signed_commands": False,
                "unsigned_allowed": False,
                "note": "state-changing commands are refused",
            }
        else:
            out = self.auth.describe()
        out["read_only_commands"] = sorted(self.read_only)
        return out

    def reply_refusal(self, topic: str) -> str | None:
        """Why a reply must not go to `topic` (None: it may)."""
        if self.replies is None:
            return None if topic == self.default_reply_topic else "no reply namespace is configured"
        return self.replies.refusal(topic)

    def authorize(self, name: str, data: dict[str, Any]) -> None:
        """Check a state-changing request's signature and record its nonce (unless it is replay-safe);
        CommandError refuses it."""
        try:
            if self.auth is None:
                raise CommandError(UNAUTHENTICATED, f"{name} changes the terminal; no command key is set up")
            grant = self.auth.check(name, data)
            if name not in self.replay_safe:
                self.auth.commit(grant)
        except CommandError as exc:
            if exc.code == UNAUTHENTICATED:
                self.counts["unauthenticated"] += 1
            raise

    def _handler(self, name: str) -> Handler:
        handler = self.handlers.get(name)
        if handler is not None:
            return handler
        if name in RESERVED or name.startswith(RESERVED_PREFIXES):
            raise CommandError(NOT_AVAILABLE, f"{name} is not available on this terminal yet")
        raise CommandError(UNKNOWN_COMMAND, f"unknown command {name!r}; known: {sorted(self.handlers)}")

    def _parse(  # noqa: C901 - the checks in the order the reply address is recovered
        self,
        name: str,
        payload: bytes,
        reply_to: str | None,
        correlation: bytes | None,
        refusal: str | None,
    ) -> tuple[Request, dict[str, Any]]:
        # The reply address is recovered as early as possible so even a bad request gets its reply.
        def fail(code: ErrorCode, message: str, details: Any = None, rid: str | None = None) -> _ParsedError:
            return _ParsedError(code, message, details, reply_to, correlation, rid)

        if len(payload) > self.max_bytes:
            raise fail(TOO_LARGE, f"request is {len(payload)} bytes; the limit is {self.max_bytes}")
        if not re.match(COMMAND_NAME_PATTERN, name) or len(name) > 64:
            raise fail(UNKNOWN_COMMAND, "command name is not a valid command name")
        if payload.strip() == b"":
            data: Any = {}
        else:
            try:
                data = loads_bounded(payload, self.max_bytes)
            except PayloadError as exc:  # too deep, not UTF-8, not JSON (the size is checked above)
                raise fail(BAD_JSON, f"request refused ({exc.code}): {exc}") from None
        if not isinstance(data, dict):
            raise fail(BAD_REQUEST, f"request must be a JSON object, got {type(data).__name__}")
        if correlation is None and isinstance(data.get("correlation_id"), str):
            correlation = data["correlation_id"].encode("utf-8")[:MAX_CORRELATION]
        rid = data.get("id") if isinstance(data.get("id"), str) and len(data["id"]) <= MAX_ID else None
        # 3.1.1 has no properties: the reply address travels in the payload (v5 properties take precedence).
        asked = data.get("reply_to")
        if refusal is None and reply_to is None and asked is not None and valid_publish_topic(asked):
            refusal = self.reply_refusal(asked)
            reply_to = asked if refusal is None else None
        if refusal is not None:
            self.counts["reply_refused"] += 1
            raise fail(BAD_REPLY_TOPIC, refusal, None, rid)
        request, problems = validate(CommandRequest, data)
        if problems:
            raise fail(BAD_REQUEST, "; ".join(problems), problems, rid)
        now = self.clock()
        if request.expires_at is not None and request.expires_at <= now:
            raise fail(EXPIRED, f"request expired at {request.expires_at}", None, rid)
        sent_at = request.sent_at
        if sent_at is not None and self.max_age_s is not None and sent_at < now - self.max_age_s:
            raise fail(EXPIRED, f"request sent at {sent_at}, older than {self.max_age_s:g} s", None, rid)
        return Request(name, request.args or {}, rid, reply_to, correlation), data


class _ParsedError(CommandError):
    def __init__(
        self,
        code: ErrorCode,
        message: str,
        details: Any,
        reply_to: str | None,
        correlation: bytes | None,
        request_id: str | None,
    ) -> None:
        super().__init__(code, message, details)
        self.reply_to = reply_to
        self.correlation = correlation
        self.request_id = request_id


def name_or_none(name: str) -> str | None:
    return name if re.match(COMMAND_NAME_PATTERN, name) and len(name) <= 64 else None


def parse_args(model: type[ModelT], args: dict[str, Any]) -> ModelT:
    """Validate a command's args with a pydantic model; wrong types become a bad_request error."""
    from pydantic import ValidationError

    try:
        return model.model_validate(args)
    except ValidationError as exc:
        problems = validation_problems(exc, "args.")
        raise CommandError(BAD_REQUEST, "; ".join(problems), problems) from None
