"""What the broker link puts on its inbox: one frozen value per thing that happened (device/transport/link.py
makes them on paho's thread; the service loop reads them)."""

from __future__ import annotations

from dataclasses import dataclass

# CONNACK reasons that retrying cannot fix: the operator must change credentials or ACLs.
NOT_AUTHORIZED = "Not authorized"  # also the PUBACK reason of a publish the broker's ACL refuses
AUTH_FAILURES = {"Bad user name or password", NOT_AUTHORIZED, "Client identifier not valid", "Banned"}


@dataclass(frozen=True)
class Connected:
    session_present: bool


@dataclass(frozen=True)
class ConnectFailed:
    reason: str
    auth: bool  # credentials/permissions (report, keep retrying slowly) vs temporary (retry)


# MQTT 5 DISCONNECT reason 0x8E: another client connected with our client id (a duplicate terminal id).
TAKEN_OVER = "Session taken over"


@dataclass(frozen=True)
class Disconnected:
    reason: str

    @property
    def taken_over(self) -> bool:
        return self.reason == TAKEN_OVER


@dataclass(frozen=True)
class Acked:
    mid: int
    ok: bool
    reason: str


@dataclass(frozen=True)
class Inbound:
    topic: str
    payload: bytes
    response_topic: str | None  # MQTT 5 ResponseTopic
    correlation: bytes | None  # MQTT 5 CorrelationData
    retain: bool


@dataclass(frozen=True)
class Overflow:
    """A command request that found the command queue full: only what a `busy` reply needs."""

    topic: str
    response_topic: str | None
    correlation: bytes | None


@dataclass(frozen=True)
class CommandsWaiting:
    """Wakes the loop: the command queue has requests (at most one of these is on `inbox` at a time)."""


LinkEvent = Connected | ConnectFailed | Disconnected | Acked | Inbound | CommandsWaiting
